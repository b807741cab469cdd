"""`fit_stack`: `nnbench.fit` for every member of a stack at once, trained as one model.

Each epoch, every member still training draws its batch order from its own seed, and the
stack takes one step for all of them per batch. After the epoch each member's weights go
back into its model, which is scored exactly as `nnbench.fit` scores it (the same
functions), and its record goes to ``callback``. A member leaves the stack when it
diverges (at the step where `fit` would stop it), stops early or completes; the stack is
then rebuilt from the members left, so they stop paying for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from nnbench.epoch import EpochResult
from nnbench.stack.checks import check_lengths, check_members, check_rows
from nnbench.stack.data import StackData
from nnbench.stack.step import Stack
from nnbench.train import (
    FitResult,
    _check_batchnorm_batches,
    _check_positive,
    _checked_data,
    _epoch_record,
    _quiet_divergence,
)


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
    run = _Run(models, optimizers, loss_fn, StackData(models[0].backend, xs, ys, seeds))
    run.vals, run.patience, run.min_delta = vals, patience, min_delta
    run.callback, run.on_end = callback, on_end
    try:
        for epoch in range(1, epochs + 1):
            run.epoch(epoch, batch_size, last=epoch == epochs)
            if not run.active:
                break
    except BaseException:
        run.stack.write_back()
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


class _Run:
    """The bookkeeping of one `fit_stack`: who is still training, and each one's results."""

    def __init__(self, models, optimizers, loss_fn, data: StackData):
        self.models, self.optimizers, self.loss_fn, self.data = models, optimizers, loss_fn, data
        self.results = [FitResult(outcome="completed", epochs=0) for _ in models]
        self.best = [math.inf] * len(models)
        self.active = list(range(len(models)))
        self.stack = self._build()

    def _build(self) -> Stack:
        pick = self.active
        return Stack(
            [self.models[i] for i in pick], [self.optimizers[i] for i in pick], self.loss_fn
        )

    def epoch(self, epoch: int, batch_size: int, *, last: bool) -> None:
        start = time.perf_counter()
        with _quiet_divergence():
            totals, correct, seen = self._train(epoch, batch_size)
        self.stack.backend.synchronize()
        train_time = time.perf_counter() - start
        if not self.active:
            return
        self.stack.write_back()
        records = []
        for row, i in enumerate(self.active):
            count = None if correct is None else int(correct[row])
            stats = EpochResult(float(totals[row]) / seen, count, seen)
            records.append(_epoch_record(self.models[i], self.loss_fn, epoch, stats, self.vals[i]))
        elapsed = time.perf_counter() - start
        leaving = []
        for i, record in zip(list(self.active), records, strict=True):
            record["time/epoch_s"] = elapsed
            record["throughput/samples_per_s"] = seen / train_time
            if self._close_epoch(i, epoch, record) or last:
                leaving.append(i)
                if self.on_end is not None:
                    self.on_end(i, self.results[i])
        self._leave(leaving)

    def _close_epoch(self, i: int, epoch: int, record: dict) -> bool:
        """Member i's record kept and sent; whether patience stops it here (as in fit)."""
        result = self.results[i]
        result.history.append(record)
        result.epochs = epoch
        if self.callback is not None:
            self.callback(i, record)
        monitored = record.get("val/loss", record["train/loss"])
        if monitored < self.best[i] - self.min_delta:
            self.best[i], result.best_epoch = monitored, epoch
        elif self.patience is not None and epoch - (result.best_epoch or 0) >= self.patience:
            result.stopped_early = True
            return True
        return False

    def _train(self, epoch: int, batch_size: int):
        """One pass over every active member's training set; diverging members leave
        mid-epoch. Returns the remaining members' loss totals, correct counts, samples."""
        data = self.data
        orders = data.orders(self.active)
        totals = np.zeros(len(self.active))
        correct = (
            np.zeros(len(self.active), dtype=np.int64) if self.loss_fn.classification else None
        )
        seen, batchnorm = 0, self.models[0].batchnorm
        for step, begin in enumerate(range(0, data.rows, batch_size), start=1):
            end = min(begin + batch_size, data.rows)
            if end - begin == 1 and batchnorm:
                continue
            x, y = data.batch(orders, begin, end)
            losses = self.stack.forward_loss(x, y)
            bad = ~np.isfinite(losses)
            if bad.any():
                self._diverge(np.flatnonzero(bad), epoch, step)
            self.stack.backward_update()
            keep = ~bad
            totals = totals[keep] + losses[keep] * (end - begin)
            if correct is not None:
                correct = correct[keep] + self.stack.count_correct(y)[keep]
            seen += end - begin
            if bad.any():
                orders = orders[keep]
                self._leave([])
                if not self.active:
                    break
        return totals, correct, seen

    def _diverge(self, rows, epoch: int, step: int) -> None:
        """Members at stack ``rows`` diverged at (epoch, step): their weights (those of the
        last finite loss, the update not applied) go back; they leave after this step."""
        self.stack.write_back(rows)
        self._gone = [self.active[r] for r in rows]
        for i in self._gone:
            result = self.results[i]
            result.outcome, result.diverged_at = "diverged", (epoch, step)
            if self.on_end is not None:
                self.on_end(i, result)

    def _leave(self, finished) -> None:
        """Rebuild the stack without ``finished`` and any member that diverged."""
        gone = set(finished) | set(getattr(self, "_gone", ()))
        self._gone = []
        if not gone:
            return
        # the others' state back too (the diverged ones' is already there, pre-update)
        self.stack.write_back([r for r, i in enumerate(self.active) if i not in gone])
        self.active = [i for i in self.active if i not in gone]
        if self.active:
            self.stack = self._build()
