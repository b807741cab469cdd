"""The bookkeeping of one `fit_stack`: which members are still in the stack, each one's
results, and the epoch loop over the stack's steps.

A member's epoch is `nnbench.fit`'s: the same batches (`StackData`), the same per-step
loss sum (``total += loss * rows`` in float64), the same divergence rule (the first
non-finite loss ends it, its update not applied) and the same record, made by `fit`'s own
functions on the member's model once its weights are written back.
"""

from __future__ import annotations

import math
import time

import numpy as np

from nnbench.epoch import EpochResult
from nnbench.stack.evaluate import StackValidation
from nnbench.stack.step import Stack
from nnbench.train import FitResult, _epoch_record, _quiet_divergence


class StackRun:
    """Members ``ids`` (indices into ``models``) train in ``stack``, in that row order;
    ``done`` holds those that have finished (their state is in their solo objects)."""

    def __init__(self, models, optimizers, loss_fn, data, validations, threads: int = 1):
        self.models, self.optimizers, self.loss_fn = models, optimizers, loss_fn
        self.data, self.validations = data, validations
        self.scoring = StackValidation(models[0].backend, validations)
        self.results = [FitResult(outcome="completed", epochs=0) for _ in models]
        self.best = [math.inf] * len(models)
        self.stopping = (None, 0.0)  # (patience, min_delta)
        self.callback = self.on_end = None
        self.done: set = set()
        self.threads = threads
        self.ids = list(range(len(models)))
        self.stack = self._build(self.ids)

    def _build(self, ids) -> Stack:
        models = [self.models[i] for i in ids]
        optimizers = [self.optimizers[i] for i in ids]
        return Stack(models, optimizers, self.loss_fn, threads=self.threads)

    def write_back_unfinished(self) -> None:
        """Every member still training gets its current state back (on an exception)."""
        self.stack.write_back([r for r, i in enumerate(self.ids) if i not in self.done])

    # ------------------------------------------------------------------ an epoch
    def epoch(self, epoch: int, batch_size: int, *, last: bool) -> None:
        start = time.perf_counter()
        with _quiet_divergence():
            totals, correct, seen = self._train(epoch, batch_size)
        self.stack.backend.synchronize()
        train_time = time.perf_counter() - start
        if not self.ids:
            return
        self.stack.write_back()
        scores = self.scoring.score(self.stack, self.ids) if self.scoring.usable else None
        records = []
        for row, i in enumerate(self.ids):
            count = None if correct is None else int(correct[row])
            stats = EpochResult(float(totals[row]) / seen, count, seen)
            validation = None if scores else self.validations[i]  # else scored alone
            record = _epoch_record(self.models[i], self.loss_fn, epoch, stats, validation)
            if scores:
                record.update({f"val/{key}": value for key, value in scores[row].items()})
            records.append(record)
        elapsed = time.perf_counter() - start
        for i, record in zip(list(self.ids), records, strict=True):
            record["time/epoch_s"] = elapsed
            record["throughput/samples_per_s"] = seen / train_time
            if self._close_epoch(i, epoch, record) or last:
                self._finish(i)
        self._leave()

    def _close_epoch(self, i: int, epoch: int, record: dict) -> bool:
        """Member i's record kept and sent; whether patience stops it here (as in fit)."""
        result, (patience, min_delta) = self.results[i], self.stopping
        result.history.append(record)
        result.epochs = epoch
        if self.callback is not None:
            self.callback(i, record)
        monitored = record.get("val/loss", record["train/loss"])
        if monitored < self.best[i] - min_delta:
            self.best[i], result.best_epoch = monitored, epoch
        elif patience is not None and epoch - (result.best_epoch or 0) >= patience:
            result.stopped_early = True
            return True
        return False

    def _train(self, epoch: int, batch_size: int):
        """One pass over every member's training set. Returns the loss totals, correct
        counts and samples of the members still in the stack at its end."""
        data, rows = self.data, self.data.rows
        orders = data.orders(self.ids)
        totals = np.zeros(len(self.ids))
        classify = self.loss_fn.classification
        correct = np.zeros(len(self.ids), dtype=np.int64) if classify else None
        seen, batchnorm = 0, self.models[0].batchnorm
        for step, begin in enumerate(range(0, rows, batch_size), start=1):
            end = min(begin + batch_size, rows)
            if end - begin == 1 and batchnorm:  # fit skips a lone last row with batch norm
                continue
            x, y = data.batch(orders, begin, end)
            losses = self.stack.train_step(x, y)  # a diverged member's state is back already
            keep = np.isfinite(losses)
            for row in np.flatnonzero(~keep):
                self._diverge(int(row), epoch, step)
            totals = totals[keep] + losses[keep] * (end - begin)
            if correct is not None:
                correct = correct[keep] + self.stack.count_correct(y)[keep]
            seen += end - begin
            if not keep.all():
                orders = orders[keep]
                self._leave()
                if not self.ids:
                    break
        return totals, correct, seen

    # ------------------------------------------------------------------ members leaving
    def _diverge(self, row: int, epoch: int, step: int) -> None:
        """The member at ``row`` diverged at (epoch, step): its state (before this step's
        update) is back in its solo objects (`Stack.train_step`); it leaves the stack."""
        i = self.ids[row]
        result = self.results[i]
        result.outcome, result.diverged_at = "diverged", (epoch, step)
        self._finish(i, written=True)

    def _finish(self, i: int, written: bool = False) -> None:
        """Member i has finished: its state into its solo objects, then on_end."""
        if not written:
            self.stack.write_back([self.ids.index(i)])
        self.done.add(i)
        if self.on_end is not None:
            self.on_end(i, self.results[i])

    def _leave(self) -> None:
        """Rebuild the stack from the members that have not finished."""
        ids = [i for i in self.ids if i not in self.done]
        if len(ids) == len(self.ids):
            return
        self.stack.write_back([r for r, i in enumerate(self.ids) if i not in self.done])
        stack = self._build(ids) if ids else self.stack
        self.stack, self.ids = stack, ids
