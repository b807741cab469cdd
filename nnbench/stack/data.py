"""Mini-batches of a stack: member m's batch is the one `nnbench.fit` draws for it alone
(its own ``numpy.random.default_rng(seed)`` permutation of its own training set).

Members sharing one training set (the same arrays) gather from one copy; when they also
share the seed, every batch is gathered once, as a (1, B, ...) stack that broadcasts over
the members. Otherwise the sets are stacked once, (K * N, ...), and each step is one
gather of (M * B) rows.
"""

from __future__ import annotations

import numpy as np


class StackData:
    """The members' checked training sets ``xs[m], ys[m]`` (backend arrays, N rows each)."""

    def __init__(self, backend, xs, ys, seeds):
        self.backend = be = backend
        self.rows = xs[0].shape[0]
        sources, self._source = [], []
        for x, y in zip(xs, ys, strict=True):
            key = next((k for k, (a, b) in enumerate(sources) if a is x and b is y), None)
            if key is None:
                key = len(sources)
                sources.append((x, y))
            self._source.append(key)
        xp = be.xp
        self.x = sources[0][0] if len(sources) == 1 else _concat(xp, [s[0] for s in sources])
        self.y = sources[0][1] if len(sources) == 1 else _concat(xp, [s[1] for s in sources])
        self.rngs = [np.random.default_rng(seed) for seed in seeds]
        self.shared = len(sources) == 1 and len({int(s) for s in seeds}) == 1
        self._batch = {}

    def orders(self, members) -> np.ndarray:
        """This epoch's row order of each member in ``members``: (len(members), N), each
        member's rows offset into the stacked sets."""
        orders = np.stack([self.rngs[m].permutation(self.rows) for m in members])
        offsets = np.array([self._source[m] * self.rows for m in members])
        return orders + offsets[:, None]

    def batch(self, orders, start: int, stop: int):
        """(x, y) of the members' rows ``orders[:, start:stop]``: x (M, b, in) (or
        (1, b, in) when every member draws the same rows), y (M, b, ...) likewise
        broadcast."""
        be, members = self.backend, orders.shape[0]
        idx = orders[:1, start:stop] if self.shared else orders[:, start:stop]
        count, b = idx.shape
        flat = idx.reshape(-1)
        key = (count, b)
        if key not in self._batch:
            self._batch[key] = be.empty((count * b, self.x.shape[1]))
        x = be.take_rows(self.x, flat, out=self._batch[key])
        y = be.take_rows(self.y, flat)
        xp = be.xp
        x = xp.reshape(x, (count, b, self.x.shape[1]))
        y = xp.reshape(y, (count, b, *self.y.shape[1:]))
        if count != members:
            y = xp.broadcast_to(y, (members, *y.shape[1:]))
        return x, y


def _concat(xp, arrays):
    """Rows of ``arrays`` one after another (the array API's concat, NumPy's and CuPy's
    concatenate)."""
    return getattr(xp, "concat", None)(arrays) if hasattr(xp, "concat") else xp.concatenate(arrays)
