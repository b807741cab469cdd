"""Time to a target accuracy: train with the normal loop until the test accuracy reaches it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nnbench.errors import invalid


@dataclass(frozen=True)
class TargetTask:
    """A classification task and the accuracy to reach on its test part.

    ``x_*`` float arrays (n, features), ``y_*`` int64 labels (n,). Each epoch trains on the
    training part in batches shuffled by ``numpy.random.default_rng(seed)`` (nnbench's
    order, which the references replay) and then scores the test part; the clock covers
    both, and stops at the first epoch whose test accuracy is >= ``accuracy``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    accuracy: float = 0.97
    max_epochs: int = 100

    def __post_init__(self):
        if not 0.0 < self.accuracy <= 1.0:
            raise invalid("target accuracy", self.accuracy, "must be in (0, 1]")

    def arrays(self, dtype=np.float32):
        """(x_train, y_train, x_test, y_test) as contiguous float ``dtype`` / int64."""
        return (
            np.ascontiguousarray(self.x_train, dtype=dtype),
            np.ascontiguousarray(self.y_train, dtype=np.int64),
            np.ascontiguousarray(self.x_test, dtype=dtype),
            np.ascontiguousarray(self.y_test, dtype=np.int64),
        )


def time_to_accuracy(
    model,
    loss_fn,
    optimizer,
    task: TargetTask,
    *,
    batch_size: int,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """Train ``model`` with `nnbench.train_epoch` and score it with `nnbench.evaluate` after
    every epoch. Returns ``time_to_target_s``, ``epochs_to_target`` (None if the target was
    not reached within ``task.max_epochs``; the time is then the whole run's) and
    ``target_acc`` (the last test accuracy)."""
    from nnbench.train import evaluate, train_epoch

    be = model.backend
    x, y, x_test, y_test = task.arrays(np.dtype(be.dtype_name))
    x, y = be.asarray(x), be.asarray(y, be.int_dtype)
    x_test, y_test = be.asarray(x_test), be.asarray(y_test, be.int_dtype)
    rng = np.random.default_rng(seed)
    be.synchronize()
    start, acc = clock(), 0.0
    for epoch in range(1, task.max_epochs + 1):
        train_epoch(model, loss_fn, optimizer, x, y, batch_size, rng)
        acc = evaluate(model, loss_fn, x_test, y_test)["acc"]
        if acc >= task.accuracy:
            return {
                "time_to_target_s": clock() - start,
                "epochs_to_target": epoch,
                "target_acc": acc,
            }
    return {"time_to_target_s": clock() - start, "epochs_to_target": None, "target_acc": acc}
