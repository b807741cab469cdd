"""`Stack`: the stacked model and its optimizer, one training step of every member at once.

With ``threads=2`` the members are split into two halves, each its own `StackPart`, and
the halves step side by side: their matrix products (NumPy's matmul) and C kernels run
without the interpreter lock, so two cores share the arithmetic. Members are independent,
so the split changes no number.
"""

from __future__ import annotations

import concurrent.futures
import contextvars

import numpy as np

from nnbench.backend.stacked import thread_backends
from nnbench.stack.checks import check_members
from nnbench.stack.part import StackPart

_POOLS: dict = {}  # threads -> a ThreadPoolExecutor, shared by every stack


class Stack:
    """Members (``models[m]``, ``optimizers[m]``) of one architecture trained as one model.

    The members' current parameters, batch-norm statistics and optimizer state are
    gathered into stacked arrays; `write_back` puts them back into the solo objects.

        stack = Stack(models, optimizers, loss_fn)
        losses = stack.step(x, y)   # x (M, B, in), y (M, B) labels or (M, B, out)
        stack.write_back()

    ``threads``: how many parts step side by side (NumPy only; BLAS should then run on
    one thread each, see `nnbench.backend.stacked.one_blas_thread`).
    """

    def __init__(self, models, optimizers, loss_fn, *, threads: int = 1):
        check_members(models, optimizers, loss_fn)
        self.models, self.optimizers = list(models), list(optimizers)
        self.backend = models[0].backend
        count = max(1, min(int(threads), len(self.models)))
        backends = thread_backends(self.backend, count)
        self.bounds = _halves(len(self.models), len(backends))
        self.parts = [
            StackPart(self.models[lo:hi], self.optimizers[lo:hi], loss_fn, be)
            for (lo, hi), be in zip(self.bounds, backends, strict=True)
        ]

    @property
    def members(self) -> int:
        return len(self.models)

    def step(self, x, y):
        """One training step of every member on its batch x[m], y[m] (a leading 1 is
        shared by all); returns the (M,) float64 data losses (a backend array). A member
        whose loss is not finite first gets its state, that of its last finite loss,
        written back into its solo model and optimizer (where `nnbench.fit` would stop it);
        the stack then updates it like the others (`fit_stack` takes it out)."""
        return self.backend.xp.asarray(self.train_step(x, y))

    def train_step(self, x, y):
        """`step`, returning the losses as a host float64 NumPy array."""
        return _joined(self._each(lambda part, xs, ys: part.train_step(xs, ys), x, y))

    def forward_loss(self, x, y):
        """The training forward pass and the loss: host (M,) float64 losses."""
        return _joined(self._each(lambda part, xs, ys: part.forward_loss(xs, ys), x, y))

    def count_correct(self, y):
        """Right predictions of the last `forward_loss` per member (host ints), or None."""
        return _joined(
            [
                part.count_correct(ys)
                for part, (_, ys) in zip(self.parts, self._split(None, y), strict=True)
            ]
        )

    def backward_update(self) -> None:
        """Back-propagation of the last `forward_loss` and the optimizer step."""
        self._each(lambda part, xs, ys: part.backward_update())

    def evaluate_batch(self, x, y):
        """Evaluation-mode losses (host (M,) float64) and right predictions (host ints, or
        None) of a batch, as `nnbench.train.evaluate` scores one chunk of a member's data."""
        results = self._each(lambda part, xs, ys: part.evaluate_batch(xs, ys), x, y)
        return _joined([r[0] for r in results]), _joined([r[1] for r in results])

    def write_back(self, rows=None) -> None:
        """Members ``rows`` (default all) back into their solo model and optimizer:
        parameters, last gradients, batch-norm running statistics, optimizer state."""
        rows = range(self.members) if rows is None else rows
        for part, (lo, hi) in zip(self.parts, self.bounds, strict=True):
            part.write_back([r - lo for r in rows if lo <= r < hi])

    # ------------------------------------------------------------------ the parts
    def _split(self, x, y):
        """Each part's slice of a stacked batch (a leading 1 is every part's)."""

        def cut(a, lo, hi):
            return a if a is None or a.shape[0] == 1 else a[lo:hi, ...]

        return [(cut(x, lo, hi), cut(y, lo, hi)) for lo, hi in self.bounds]

    def _each(self, work, x=None, y=None):
        """``work(part, x_part, y_part)`` for every part: the first in this thread, the
        others in the pool, side by side; their results in part order."""
        args = self._split(x, y)
        if len(self.parts) == 1:
            return [work(self.parts[0], *args[0])]
        # in the caller's context: NumPy's error state (divergence is quiet) lives there
        pool, context = _pool(len(self.parts) - 1), contextvars.copy_context()
        pairs = zip(self.parts[1:], args[1:], strict=True)
        others = [pool.submit(context.copy().run, work, part, *a) for part, a in pairs]
        try:
            first = work(self.parts[0], *args[0])
            return [first] + [future.result() for future in others]
        except BaseException:  # an interrupt: the other parts finish their work first
            concurrent.futures.wait(others)
            raise


def _halves(members: int, parts: int):
    """(lo, hi) member ranges of ``parts`` near-equal parts."""
    edges = [round(k * members / parts) for k in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _joined(arrays):
    """The parts' host arrays one after another (None when they are None)."""
    if arrays[0] is None:
        return None
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _pool(workers: int) -> concurrent.futures.ThreadPoolExecutor:
    pool = _POOLS.get(workers)
    if pool is None:
        pool = _POOLS[workers] = concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="nnbench-stack"
        )
    return pool
