"""The GEMM-only floor runs the very matrix products of a training step, alone."""

from __future__ import annotations

from collections import Counter

import numpy as np

import nnbench as nb
from nnbench.backend.numpy_backend import NumpyBackend
from nnbench.bench.floor import GemmFloor, floor_products

SIZES, BATCH = (7, 5, 4, 3), 6


class RecordingNumpy:
    """The numpy namespace, except that matmul records its operands' shapes and layouts."""

    def __init__(self):
        self.products: list = []

    def __getattr__(self, name):
        return getattr(np, name)

    def matmul(self, a, b, **kwargs):
        if a.ndim == 2 and b.ndim == 2:  # matrix products only (not the bias-gradient gemv)
            self.products.append(_signature(a, b, kwargs.get("out")))
        return np.matmul(a, b, **kwargs)


def _signature(a, b, out):
    layout = lambda m: "C" if m.flags.c_contiguous else "F" if m.flags.f_contiguous else "?"  # noqa: E731
    return (a.shape, b.shape, layout(a), layout(b), None if out is None else layout(out))


def _recording_backend():
    xp = RecordingNumpy()
    return NumpyBackend("float32", xp=xp), xp


def test_floor_products_are_written_out_by_hand():
    assert floor_products(SIZES, BATCH) == [
        ("forward 0", (6, 7), (7, 5)),
        ("forward 1", (6, 5), (5, 4)),
        ("forward 2", (6, 4), (4, 3)),
        ("weight grad 2", (3, 6), (6, 4)),
        ("input grad 2", (6, 3), (3, 4)),
        ("weight grad 1", (4, 6), (6, 5)),
        ("input grad 1", (6, 4), (4, 5)),
        ("weight grad 0", (5, 6), (6, 7)),
    ]


def test_floor_runs_the_products_of_a_real_training_step():
    """Same shapes, same operand layouts, same output layouts, same count."""
    be, xp = _recording_backend()
    model = nb.MLP(SIZES[0], SIZES[1:-1], SIZES[-1], seed=0, backend=be)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((BATCH, SIZES[0])), rng.integers(0, SIZES[-1], BATCH)
    loss_fn, opt = nb.CrossEntropyLoss(), nb.SGD(model, lr=0.1)
    nb.train_step(model, loss_fn, opt, x, y)  # first step: buffers get allocated
    xp.products.clear()
    nb.train_step(model, loss_fn, opt, x, y)
    step_products = list(xp.products)

    floor_be, floor_xp = _recording_backend()
    floor = GemmFloor(floor_be, SIZES, BATCH)
    floor_xp.products.clear()
    floor()
    assert Counter(floor_xp.products) == Counter(step_products)
    assert len(step_products) == len(floor_products(SIZES, BATCH)) == 8


def test_floor_computes_the_products_it_claims():
    be = nb.get_backend("numpy", "float64")
    floor = GemmFloor(be, SIZES, BATCH, seed=1)
    floor()
    h, w, d = floor.h, floor.weights, floor.d
    np.testing.assert_allclose(h[1], h[0] @ w[0].T)
    np.testing.assert_allclose(floor.grad_w[0], d[0].T @ h[0])
    np.testing.assert_allclose(floor.dx[2], d[2] @ w[2])


def test_floor_runs_on_a_namespace_without_out():
    be = nb.get_backend("strict", "float64")
    floor = GemmFloor(be, SIZES, BATCH)
    floor()
    np.testing.assert_allclose(
        be.to_host(floor.h[1]), be.to_host(floor.h[0]) @ be.to_host(floor.weights[0]).T
    )
