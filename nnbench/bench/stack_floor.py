"""Floors for stacked training and for whole sweeps: what the arithmetic alone costs.

`StackFloor` runs the matrix products of one stacked training step (M members, each its
own weights and batch) and nothing else, batched over the member axis as
`nnbench.bench.floor.GemmFloor` runs one member's:

    forward, layer l:     h[l+1] = h[l] @ W[l].T     (M, B, in) @ (M, in, out)
    backward, layer l:    dW[l]  = d[l].T @ h[l]     (M, out, B) @ (M, B, in)
                          dx[l]  = d[l] @ W[l]       (M, B, out) @ (M, out, in), l > 0 only

`peak_gemm_gflops` measures the machine's float32 matrix-product rate on a large square
product, the rate no training step can beat; `sweep_flops` counts a sweep's training
arithmetic (`nnbench.bench.flops`), so FLOPs / peak is a sweep's physical lower bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nnbench.bench.flops import check_sizes, mlp_flops
from nnbench.bench.timing import time_steps
from nnbench.errors import invalid


class StackFloor:
    """A callable running a stacked step's batched matrix products alone, on buffers of the
    shapes, dtype and memory layout the stacked layers use (`Backend.stack_buffer`), through
    the same `Backend.stack_matmul`."""

    def __init__(self, backend, sizes: Sequence[int], members: int, batch_size: int, seed=0):
        self.backend, self.sizes = backend, check_sizes(sizes)
        rng = np.random.default_rng(seed)
        layers = list(zip(self.sizes[:-1], self.sizes[1:], strict=False))
        m, b = members, batch_size

        def randn(shape, scale=1.0):
            return backend.asarray(rng.standard_normal(shape) * scale)

        def activations(features, fill=False):  # (M, B, features), laid out as the layers'
            buf = backend.stack_buffer(m, (b, features))
            if fill:
                buf[...] = randn((m, b, features))
            return buf

        self.weights = [randn((m, o, i), math.sqrt(2.0 / i)) for i, o in layers]  # (M, out, in)
        self.h = [randn((m, b, self.sizes[0]))] + [activations(o) for _, o in layers]
        self.d = [activations(o, fill=True) for _, o in layers]  # (M, B, out)
        self.grad_w = [backend.empty((m, o, i)) for i, o in layers]
        self.dx = [activations(i) for i, _ in layers]

    def __call__(self) -> None:
        be = self.backend
        for k, w in enumerate(self.weights):  # forward, layer by layer
            be.stack_matmul(self.h[k], be.matrix_transpose(w), self.h[k + 1])
        for k in reversed(range(len(self.weights))):  # backward, last layer first
            be.stack_matmul(be.matrix_transpose(self.d[k]), self.h[k], self.grad_w[k])
            if k > 0:
                be.stack_matmul(self.d[k], self.weights[k], self.dx[k])


def peak_gemm_gflops(backend, n: int = 1024, samples: int = 5, min_sample_s: float = 0.2):
    """The float32 rate (GFLOP/s) of an ``n x n`` by ``n x n`` product on ``backend``, as
    many threads as its BLAS has: the fastest of ``samples`` calibrated samples."""
    rng = np.random.default_rng(0)
    a, b = (backend.asarray(rng.standard_normal((n, n))) for _ in range(2))
    out = backend.empty((n, n))

    def product():
        backend.xp.matmul(a, b, out=out)

    timing = time_steps(product, backend, samples=samples, warmup=2, min_sample_s=min_sample_s)
    return 2 * n**3 / (timing.min_ms / 1e3) / 1e9


def sweep_flops(sizes, jobs: int, epochs: int, train_rows: int, eval_rows: int = 0) -> int:
    """FLOPs of a sweep's training: every job's ``epochs`` passes over ``train_rows`` (forward
    and backward products), plus a forward pass over ``eval_rows`` per epoch (validation)."""
    for name, value in (("jobs", jobs), ("epochs", epochs), ("train rows", train_rows)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise invalid(name, value, "must be a positive integer")
    per_sample = mlp_flops(sizes, 1)
    per_epoch = train_rows * per_sample["total"] + eval_rows * per_sample["forward"]
    return jobs * epochs * per_epoch
