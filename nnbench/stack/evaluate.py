"""Every member scored on its validation set at once, as `nnbench.train.evaluate` scores
one model: evaluation mode, chunks of ``batch_size`` rows, the mean loss as
``sum(chunk loss * chunk rows) / n`` in float64 and (classification) the accuracy.

The members' validation sets are stacked once, (K, n, in) with K = 1 when every member
has the same one; it takes every member having one, all with the same number of rows
(`StackValidation.usable`), and row-major sets: a member scored alone reads its set in
place, and other layouts take other paths (a reversed view, say, is copied by the matrix
product, and its labels miss the C kernel). Otherwise each member is scored alone by
`fit`'s own function.
"""

from __future__ import annotations

import numpy as np

from nnbench.stack.data import _concat
from nnbench.train import DEFAULT_EVAL_BATCH


class StackValidation:
    """The members' checked validation sets ``(x, y)`` (backend arrays), stacked."""

    def __init__(self, backend, validations):
        self.backend = be = backend
        self.usable = all(v is not None and _row_major(*v) for v in validations) and (
            len({v[0].shape[0] for v in validations}) == 1
        )
        if not self.usable:
            return
        first = validations[0]
        self.shared = all(v[0] is first[0] and v[1] is first[1] for v in validations)
        sets = [first] if self.shared else validations
        xp = be.xp
        self.x = _concat(xp, [xp.expand_dims(v[0], axis=0) for v in sets])  # (K, n, in)
        self.y = _concat(xp, [xp.expand_dims(v[1], axis=0) for v in sets])  # (K, n, ...)

    def score(self, stack, ids, batch_size: int = DEFAULT_EVAL_BATCH) -> list[dict]:
        """``{"loss", "acc"}`` of every member of ``stack`` (members ``ids`` of the run)."""
        be, members = self.backend, stack.members
        x, y = self.x, self.y
        if not self.shared:
            rows = be.asarray(np.asarray(ids), be.int_dtype)
            x, y = be.xp.take(x, rows, axis=0), be.xp.take(y, rows, axis=0)
        n = x.shape[1]
        totals, correct = np.zeros(members), None
        with np.errstate(over="ignore", invalid="ignore"):  # a diverged model scores inf/nan
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                xb, yb = x[:, start:stop, ...], y[:, start:stop, ...]
                if yb.shape[0] != members:
                    yb = be.xp.broadcast_to(yb, (members, *yb.shape[1:]))
                losses, right = stack.evaluate_batch(xb, yb)
                totals = totals + losses * (stop - start)
                if right is not None:
                    correct = right if correct is None else correct + right
        scores = [{"loss": float(total) / n} for total in totals]
        if correct is not None:
            for score, count in zip(scores, correct, strict=True):
                score["acc"] = int(count) / n
        return scores


def _row_major(*arrays) -> bool:
    """Whether the arrays are known to be C-contiguous (arrays without NumPy's ``flags``,
    such as array-api-strict's, are not known to be)."""
    return all(getattr(getattr(a, "flags", None), "c_contiguous", False) for a in arrays)
