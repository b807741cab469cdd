"""`fit_stack`'s contract as one `nnbench.fit` per member, one after the other: what the
stacked implementation must reproduce member by member (its tests compare the two)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nnbench.train import FitResult, fit


def fit_stack_reference(
    models: Sequence,
    loss_fn,
    optimizers: Sequence,
    trains: Sequence,
    *,
    epochs: int,
    batch_size: int,
    seeds: Sequence[int],
    validations: Sequence | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    callback: Callable[[int, dict], None] | None = None,
    on_end: Callable[[int, FitResult], None] | None = None,
) -> list[FitResult]:
    """Train member i = (``models[i]``, ``optimizers[i]``) on ``trains[i] = (x, y)`` as
    ``nnbench.fit`` would with ``seed=seeds[i]`` and ``validation=validations[i]``.

    ``callback(i, record)`` receives member i's per-epoch record (`nnbench.fit`'s);
    ``on_end(i, result)`` is called once per member as soon as it has finished (completed,
    stopped early or diverged), its final weights in ``models[i]``. Returns the members'
    `FitResult`s in order.
    """
    results = []
    for i, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
        result = fit(
            model,
            loss_fn,
            optimizer,
            trains[i],
            epochs=epochs,
            batch_size=batch_size,
            validation=None if validations is None else validations[i],
            seed=seeds[i],
            patience=patience,
            min_delta=min_delta,
            callback=None if callback is None else _member(callback, i),
        )
        if on_end is not None:
            on_end(i, result)
        results.append(result)
    return results


def _member(callback, i):
    return lambda record: callback(i, record)
