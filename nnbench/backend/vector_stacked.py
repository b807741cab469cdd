"""Whole-stack optimizer steps and cross-entropy as a few array operations, for a device
where a call per member costs a kernel launch (and the cross-entropy a host sync) each:
`CupyBackend` mixes `VectorStackedOps` in. Written with the NumPy/CuPy ufunc API, and
tested on NumPy against the member-by-member reference (`StackedOps`) up to rounding:
unlike NumPy's stack paths these are not the solo kernels' bits.

Per-member hyperparameters are (M, 1) device arrays, broadcast over each member's row:

    SGD:   g = grad + wd p;  b = g (first step) or mu b + g;  g = g + mu b (Nesterov) or b;
           p = p - lr g                      (a member with mu = 0 takes g itself)
    Adam:  g = grad + wd p (or p = p (1 - lr wd), decoupled);  m = b1 m + (1 - b1) g;
           v = b2 v + (1 - b2) g^2;  p = p - lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    Cross-entropy of member m: mean_i(log sum_j exp(s_ij) - s_iy), s = z - max_j z;
           dL/dz = (softmax(z) - onehot(y)) / B
"""

from __future__ import annotations

import math

import numpy as np

from nnbench.backend.stacked import StackedOps


class VectorStackedOps(StackedOps):
    """Stack steps with per-member scalars as arrays: a constant number of calls per step."""

    def stack_matmul(self, a, b, out):
        if getattr(out.flags, "c_contiguous", False):
            return self.xp.matmul(a, b, out=out)
        out[...] = self.xp.matmul(a, b)  # a member slice of the (M, P) parameters
        return out

    def stack_cross_entropy(self, logits, labels, dlogits, correct=None) -> np.ndarray:
        xp = self.xp
        _, n, classes = logits.shape
        shifted = logits - xp.max(logits, axis=2, keepdims=True)
        exp = xp.exp(shifted)
        total = xp.sum(exp, axis=2, keepdims=True)  # (M, B, 1)
        picked = xp.take_along_axis(shifted, labels[..., None], axis=2)  # s_iy
        per_row = xp.log(total) - picked
        onehot = labels[..., None] == xp.arange(classes, dtype=labels.dtype)
        dlogits[...] = (exp / total - onehot.astype(logits.dtype)) / n
        if correct is not None:
            right = xp.argmax(logits, axis=2) == labels
            correct[...] = self.to_host(xp.sum(right.astype(self.int_dtype), axis=1))
        return self.to_host(xp.sum(per_row[..., 0].astype(xp.float64), axis=1) / n)

    def stack_sgd_step(
        self, params, grads, bufs, *, lr, momentum, nesterov, weight_decay, first, scratch
    ):
        g = grads
        if any(weight_decay):
            g = grads + self._column(weight_decay) * params
        if bufs is not None and any(momentum):
            mu = self._column(momentum)
            if first:
                bufs[...] = g
            else:
                bufs[...] = mu * bufs + g
            g = g + mu * bufs if nesterov else bufs
        params[...] = params - self._column(lr) * g

    def stack_adam_step(
        self, params, grads, m, v, *, lr, beta1, beta2, eps, weight_decay, decoupled, step, scratch
    ):
        g = grads
        if any(weight_decay) and decoupled:
            params[...] = params * self._column(
                [1.0 - a * w for a, w in zip(lr, weight_decay, strict=True)]
            )
        elif any(weight_decay):
            g = grads + self._column(weight_decay) * params
        b1, b2 = self._column(beta1), self._column(beta2)
        m[...] = b1 * m + (1.0 - b1) * g
        v[...] = b2 * v + (1.0 - b2) * (g * g)
        bias1 = self._column([1.0 - b**step for b in beta1])
        root2 = self._column([math.sqrt(1.0 - b**step) for b in beta2])
        step_size = self._column(lr) / bias1
        params[...] = params - step_size * m / (self.xp.sqrt(v) / root2 + self._column(eps))

    def _column(self, values):
        """Per-member scalars as an (M, 1) device array of the dtype."""
        return self.asarray(np.asarray(values, dtype=np.float64).reshape(-1, 1))
