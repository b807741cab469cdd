"""The GEMM-only floor: the matrix products of one MLP training step, and nothing else.

A training step of an MLP with Dense layers ``fan_in -> fan_out`` performs, on a batch of
``B`` rows and in this order (the layouts are those of `nnbench.nn.Dense`):

    forward, layer l:     h[l+1] = h[l] @ W[l].T        (B, in) @ (in, out)
    backward, layer l:    dW[l]  = d[l].T @ h[l]        (out, B) @ (B, in)
                          dx[l]  = d[l] @ W[l]          (B, out) @ (out, in), l > 0 only

`GemmFloor` runs exactly these products on buffers of the same shapes, dtype and memory
layout (`Backend.activation_buffer`, as the layers allocate theirs), with ``out=`` where the
namespace has it, so timing it in the same process as the real step gives the fraction of
the step spent outside the matrix products (step / floor).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nnbench.bench.flops import check_sizes


def floor_products(sizes: Sequence[int], batch_size: int) -> list[tuple[str, tuple, tuple]]:
    """``(name, left shape, right shape)`` of every product of a step, in execution order."""
    sizes = check_sizes(sizes)
    layers = list(zip(sizes[:-1], sizes[1:], strict=False))
    b = batch_size
    products = [(f"forward {k}", (b, i), (i, o)) for k, (i, o) in enumerate(layers)]
    for k in reversed(range(len(layers))):
        i, o = layers[k]
        products.append((f"weight grad {k}", (o, b), (b, i)))
        if k > 0:
            products.append((f"input grad {k}", (b, o), (o, i)))
    return products


class GemmFloor:
    """A callable running the step's matrix products alone on preallocated buffers."""

    def __init__(self, backend, sizes: Sequence[int], batch_size: int, seed: int = 0):
        self.backend = backend
        self.sizes = check_sizes(sizes)
        self.batch_size = batch_size
        rng = np.random.default_rng(seed)
        layers = list(zip(self.sizes[:-1], self.sizes[1:], strict=False))

        def randn(shape, scale=1.0):
            return backend.asarray(rng.standard_normal(shape) * scale)

        def activations(shape, fill=False):  # laid out as the layers lay theirs out
            buf = backend.activation_buffer(shape)
            if fill:
                buf[...] = randn(shape)
            return buf

        self.weights = [randn((o, i), math.sqrt(2.0 / i)) for i, o in layers]
        self.h = [randn((batch_size, self.sizes[0]))]  # the input batch, row-major
        self.h += [activations((batch_size, o)) for _, o in layers]
        self.d = [activations((batch_size, o), fill=True) for _, o in layers]
        self.grad_w = [backend.empty((o, i)) for i, o in layers]
        self.dx = [activations((batch_size, i)) for i, _ in layers]
        self._out_supported = _matmul_takes_out(backend)

    def __call__(self) -> None:
        mm = self._matmul
        for k, w in enumerate(self.weights):  # forward, layer by layer
            mm(self.h[k], w.T, self.h[k + 1])
        for k in reversed(range(len(self.weights))):  # backward, last layer first
            mm(self.d[k].T, self.h[k], self.grad_w[k])
            if k > 0:
                mm(self.d[k], self.weights[k], self.dx[k])

    def _matmul(self, a, b, out):
        if self._out_supported:
            self.backend.xp.matmul(a, b, out=out)
        else:  # a namespace without out= (array-api-strict): a copy, never a timing backend
            out[...] = self.backend.xp.matmul(a, b)


def _matmul_takes_out(backend) -> bool:
    a = backend.zeros((2, 2))
    try:
        backend.xp.matmul(a, a, out=backend.empty((2, 2)))
    except TypeError:
        return False
    return True
