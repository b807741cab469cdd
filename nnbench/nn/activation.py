"""Elementwise activations: sigmoid, tanh, relu, leaky_relu (slope 0.01), identity."""

from __future__ import annotations

from nnbench.backend.base import ACTIVATIONS
from nnbench.errors import invalid
from nnbench.nn.buffers import BufferCache
from nnbench.nn.layer import Layer


def check_activation(kind: str) -> str:
    if kind not in ACTIVATIONS:
        raise invalid("activation", kind, "allowed: " + ", ".join(ACTIVATIONS))
    return kind


class Activation(Layer):
    """y = f(z); backward dL/dz = f'(z) * dL/dy with f' written in terms of y.

    sigmoid(z) = 1 / (1 + e^-z), f' = y (1 - y)
    tanh(z),                     f' = 1 - y^2
    relu(z) = max(z, 0),         f' = [z > 0]
    leaky_relu(z) = z if z > 0 else 0.01 z, f' = 1 or 0.01
    identity(z) = z,             f' = 1
    With ``inplace=True`` (as inside an MLP, where nothing else needs z or dL/dy) the result
    overwrites the input buffer; otherwise new buffers are used.
    """

    def __init__(self, kind: str, backend, inplace: bool = False):
        self.kind = check_activation(kind)
        self.backend = backend
        self.inplace = inplace
        self._buffers = BufferCache(backend)
        self._y = None

    def forward(self, z, training: bool):
        out = z if self.inplace else self._buffers.get("y", z.shape)
        self._y = self.backend.activation(self.kind, z, out=out)
        return self._y

    def backward(self, dy):
        out = dy if self.inplace else self._buffers.get("dz", dy.shape)
        return self.backend.activation_backward(self.kind, self._y, dy, out=out)
