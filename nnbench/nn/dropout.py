"""Inverted dropout."""

from __future__ import annotations

from nnbench.errors import invalid
from nnbench.nn.buffers import BufferCache
from nnbench.nn.layer import Layer


def check_dropout(p) -> float:
    if not 0.0 <= p < 1.0:
        raise invalid("dropout probability", p, "must be in [0, 1)")
    return float(p)


class Dropout(Layer):
    """Inverted dropout with drop probability p.

    Training: y = x * m / (1 - p) with m ~ Bernoulli(1 - p) per element; evaluation: y = x.
    This equals, in expectation, the textbook form that keeps units unscaled in training and
    multiplies by (1 - p) at test time, but leaves evaluation free of any rescaling.
    Backward: dL/dx = dL/dy * m / (1 - p), with the mask of the last training forward.
    Masks come from ``rng`` (a backend generator), so a seed fixes them.
    """

    def __init__(self, p: float, backend, rng, inplace: bool = False):
        self.p = check_dropout(p)
        self.backend = backend
        self.rng = rng
        self.inplace = inplace
        self._buffers = BufferCache(backend)
        self._mask = None

    def forward(self, x, training: bool):
        if not training or self.p == 0.0:
            self._mask = None
            return x
        self._mask = self.backend.dropout_mask(
            self.rng, self.p, x.shape, out=self._buffers.get("mask", x.shape)
        )
        return self.backend.multiply(x, self._mask, out=self._buffers.get("y", x.shape))

    def backward(self, dy):
        if self._mask is None:
            return dy
        out = dy if self.inplace else self._buffers.get("dx", dy.shape)
        return self.backend.multiply(dy, self._mask, out=out)
