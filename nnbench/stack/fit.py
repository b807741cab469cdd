"""`fit_stack`: `nnbench.fit` for every member of a stack at once, trained as one model.

Each epoch, every member still training draws its batch order from its own seed, and the
stack takes one step for all of them per batch. After the epoch each member's weights go
back into its model, which is scored exactly as `nnbench.fit` scores it (the same
functions), and its record goes to ``callback``. A member leaves the stack when it
diverges (at the step where `fit` would stop it), stops early or completes; the stack is
then rebuilt from the members left, so they stop paying for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nnbench.backend.stacked import auto_threads, one_blas_thread
from nnbench.stack.checks import check_lengths, check_members, check_rows
from nnbench.stack.data import StackData
from nnbench.stack.run import StackRun
from nnbench.train import FitResult, _check_batchnorm_batches, _check_positive, _checked_data


def fit_stack(
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
    threads: int | None = None,
) -> list[FitResult]:
    """Train member i = (``models[i]``, ``optimizers[i]``) on ``trains[i] = (x, y)`` as
    ``nnbench.fit(..., seed=seeds[i], validation=validations[i])`` would, all members as one
    stacked model; the contract of `fit_stack_reference`.

    ``callback(i, record)`` gets member i's per-epoch record, members in order each epoch.
    Its ``time/epoch_s`` is the stack's epoch (training every member, then scoring every
    member), ``throughput/samples_per_s`` member i's samples over the stack's training
    time. ``on_end(i, result)`` is called as soon as member i has finished, its weights in
    ``models[i]``. Members must share every shape and kind (`Stack`) and their training
    sets the number of rows; ValueError otherwise, before any training. On an exception
    (KeyboardInterrupt included) the members still training get their current weights
    written back before it propagates.

    ``threads=2`` steps the stack as two halves side by side (NumPy; BLAS on one thread
    each): faster when a second core is free, a little slower when it is busy; the
    numbers are the same either way. The default (None) is
    `nnbench.backend.stacked.auto_threads`: two for 16 members or more on two cores.
    """
    members = len(models)
    check_members(models, optimizers, loss_fn)
    check_lengths(members, trains=trains, seeds=seeds, validations=validations)
    _check_positive("epochs", epochs)
    _check_positive("batch_size", batch_size)
    if patience is not None:
        _check_positive("patience", patience)
    xs, ys = _checked_sets(models, loss_fn, trains)
    vals = [None] * members
    if validations is not None:
        vals = [
            None if v is None else _checked_data(m, loss_fn, *v)
            for m, v in zip(models, validations, strict=True)
        ]
    check_rows([x.shape[0] for x in xs])
    if models[0].batchnorm:
        _check_batchnorm_batches(xs[0].shape[0], batch_size)
    be = models[0].backend
    threads = auto_threads(be, members) if threads is None else threads
    _check_positive("threads", threads)
    with one_blas_thread(active=threads > 1):
        run = StackRun(models, optimizers, loss_fn, StackData(be, xs, ys, seeds), vals, threads)
        run.stopping = (patience, min_delta)
        run.callback, run.on_end = callback, on_end
        try:
            for epoch in range(1, epochs + 1):
                run.epoch(epoch, batch_size, last=epoch == epochs)
                if not run.ids:
                    break
        except BaseException:
            run.write_back_unfinished()
            raise
    return run.results


def _checked_sets(models, loss_fn, trains):
    """Each member's (x, y) checked and on the device, once per distinct pair of arrays
    (members that share a training set share the checked arrays)."""
    done, xs, ys = {}, [], []
    for model, (x, y) in zip(models, trains, strict=True):
        key = (id(x), id(y))
        if key not in done:
            done[key] = _checked_data(model, loss_fn, x, y)
        xs.append(done[key][0])
        ys.append(done[key][1])
    return xs, ys
