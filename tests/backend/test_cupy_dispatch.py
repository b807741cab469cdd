"""Which path CupyBackend takes, decided on the CPU: the dispatch rules are plain functions of
array attributes (dtype, layout, shape, memory), and the cuBLAS plans plain functions of
shapes. NumPy arrays stand in for CuPy's (the same attributes); the plans run here through
a column-major GEMM written out in NumPy, cuBLAS's own definition of its arguments.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnbench.backend import _cublas
from nnbench.backend.cupy_backend import (
    MAX_ONE_BLOCK_ELEMENTS,
    _backward_ok,
    _elementwise_ok,
    _gate_ok,
    _linear_ok,
    _rows_ok,
)
from nnbench.backend.numpy_backend import NumpyBackend

F32, F64 = np.dtype("float32"), np.dtype("float64")


# ---------------------------------------------------------------------- dispatch rules
def test_elementwise_kernels_take_c_contiguous_arrays_of_one_shape_and_dtype():
    a, b = np.zeros((4, 3), F32), np.zeros((4, 3), F32)
    assert _elementwise_ok(F32, a, b)
    assert _elementwise_ok(F32, a, a)  # in place: the very same memory
    assert not _elementwise_ok(F64, a, b)  # not the backend's dtype
    assert not _elementwise_ok(F32, a, np.zeros((3, 4), F32).T)  # column-major
    assert not _elementwise_ok(F32, a, np.zeros((4, 4), F32))  # another shape
    assert not _elementwise_ok(F32, a, np.zeros((4, 6), F32)[:, ::2])  # strided


def test_partial_overlap_falls_back_but_disjoint_views_do_not():
    flat = np.zeros(20, F32)
    assert not _elementwise_ok(F32, flat[0:10], flat[5:15])  # overlapping, shifted
    assert _elementwise_ok(F32, flat[0:10], flat[10:20])  # neighbours in one buffer


def test_linear_takes_fitting_plannable_operands_and_a_separate_output():
    x, w, b = np.zeros((8, 5), F32), np.zeros((3, 5), F32), np.zeros(3, F32)
    out = np.zeros((8, 3), F32)
    assert _linear_ok(F32, x, w, b, out)
    assert not _linear_ok(F32, x, w, b, None)
    assert not _linear_ok(F32, x, w, np.zeros(4, F32), out)  # bias of the wrong size
    assert not _linear_ok(F32, x, np.zeros((3, 6), F32), b, out)  # fan-in mismatch
    assert not _linear_ok(F32, x, w, b, np.zeros((8, 3), F32, order="F"))
    assert not _linear_ok(F32, np.zeros((5, 8), F32).T, w, b, out)  # transposed input
    assert not _linear_ok(F32, x.astype(F64), w, b, out)


def test_row_kernels_take_int64_labels_and_a_bounded_size():
    logits, labels = np.zeros((6, 4), F32), np.zeros(6, np.int64)
    grad, scalar = np.zeros((6, 4), F32), np.zeros(1)
    assert _rows_ok(F32, logits, labels, grad, scalar)
    assert _rows_ok(F32, logits, labels, None, None)
    assert not _rows_ok(F32, logits, labels.astype(np.int32), grad, scalar)
    assert not _rows_ok(F32, logits, labels[:5], grad, scalar)
    assert not _rows_ok(F32, logits, labels, logits, scalar)  # gradient over the logits
    assert not _rows_ok(F32, logits, labels, grad, np.zeros(1, F32))  # scalars are float64
    assert not _rows_ok(F32, np.zeros((4, 6), F32).T, labels, grad, scalar)
    rows = MAX_ONE_BLOCK_ELEMENTS // 4
    assert _rows_ok(F32, np.zeros((rows, 4), F32), np.zeros(rows, np.int64), None, None)
    rows += 1  # one row too many for one block: the NumPy path
    assert not _rows_ok(F32, np.zeros((rows, 4), F32), np.zeros(rows, np.int64), None, None)


def test_gates_are_one_float64_element():
    assert _gate_ok(None) and _gate_ok(np.ones(1))
    assert not _gate_ok(np.ones(2)) and not _gate_ok(np.ones(1, F32))


@pytest.mark.parametrize("name", ["numpy", "strict"])
def test_tf32_on_a_cpu_backend_is_refused(name):
    import nnbench as nb

    with pytest.raises(ValueError, match=rf"^Invalid tf32: True \(.*backend=cupy, not {name}\)"):
        nb.get_backend(name, "float32", tf32=True)


# ---------------------------------------------------------------------- cuBLAS plans
def _colmajor(array, rows, cols, ld):
    """The (rows, cols) column-major matrix with leading dimension ``ld`` that cuBLAS reads
    at ``array``'s memory (a writable view)."""
    flat = array.reshape(-1)
    item = flat.itemsize
    assert ld >= rows and (cols - 1) * ld + rows <= flat.size
    return np.lib.stride_tricks.as_strided(flat, (rows, cols), (item, ld * item))


def run_gemm(plan: _cublas.Gemm) -> None:
    """cuBLAS gemm (alpha 1, beta 0): C = op(A) @ op(B), column-major."""
    a_shape = (plan.m, plan.k) if plan.transa == _cublas.OP_N else (plan.k, plan.m)
    b_shape = (plan.k, plan.n) if plan.transb == _cublas.OP_N else (plan.n, plan.k)
    a = _colmajor(plan.a, *a_shape, plan.lda)
    b = _colmajor(plan.b, *b_shape, plan.ldb)
    a = a if plan.transa == _cublas.OP_N else a.T
    b = b if plan.transb == _cublas.OP_N else b.T
    _colmajor(plan.c, plan.m, plan.n, plan.ldc)[...] = a @ b


def run_gemv(plan: _cublas.Gemv) -> None:
    plan.y[...] = _colmajor(plan.a, plan.m, plan.n, plan.lda) @ plan.x


@pytest.mark.parametrize("rows, fan_in, fan_out", [(1, 1, 1), (7, 5, 3), (64, 784, 10)])
def test_plans_compute_the_layer_products(rows, fan_in, fan_out):
    rng = np.random.default_rng(rows)
    x, w = rng.standard_normal((rows, fan_in)), rng.standard_normal((fan_out, fan_in))
    dout = rng.standard_normal((rows, fan_out))
    out, gw, dx, gb = (np.full(s, np.nan) for s in ((rows, fan_out), w.shape, x.shape, fan_out))
    run_gemm(_cublas.linear_plan(x, w, out))
    np.testing.assert_allclose(out, x @ w.T, rtol=1e-12)
    run_gemm(_cublas.weight_grad_plan(dout, x, gw))
    np.testing.assert_allclose(gw, dout.T @ x, rtol=1e-12)
    run_gemm(_cublas.input_grad_plan(dout, w, dx))
    np.testing.assert_allclose(dx, dout @ w, rtol=1e-12)
    run_gemv(_cublas.bias_grad_plan(dout, np.ones(rows), gb))
    np.testing.assert_allclose(gb, dout.sum(axis=0), rtol=1e-12)


def test_plans_work_on_views_of_one_flat_parameter_buffer():
    """Weights and their gradients are views into the MLP's flat buffers."""
    rng = np.random.default_rng(0)
    flat, grads = rng.standard_normal(3 * 4 + 3), np.zeros(3 * 4 + 3)
    w, gw, gb = flat[:12].reshape(3, 4), grads[:12].reshape(3, 4), grads[12:]
    x, dout, dx = rng.standard_normal((5, 4)), rng.standard_normal((5, 3)), np.zeros((5, 4))
    run_gemm(_cublas.weight_grad_plan(dout, x, gw))
    np.testing.assert_allclose(grads[:12].reshape(3, 4), dout.T @ x, rtol=1e-12)
    assert not grads[12:].any()  # nothing written past the view
    run_gemv(_cublas.bias_grad_plan(dout, np.ones(5), gb))
    np.testing.assert_allclose(grads[12:], dout.sum(axis=0), rtol=1e-12)
    run_gemm(_cublas.input_grad_plan(dout, w, dx))
    np.testing.assert_allclose(dx, dout @ flat[:12].reshape(3, 4), rtol=1e-12)


def test_plannable_needs_c_contiguous_float_arrays_in_32_bit_range():
    a = np.zeros((3, 4), F32)
    assert _cublas.plannable(F32, a, np.zeros(4, F32))
    assert not _cublas.plannable(F32, a.T)
    assert not _cublas.plannable(F64, a)
    assert not _cublas.plannable(np.dtype("int64"), np.zeros((2, 2), np.int64))
    assert not _cublas.plannable(F32, np.zeros((0, 4), F32))


# ---------------------------------------------------------------------- a real step
class DispatchProbe(NumpyBackend):
    """NumPy with CuPy's row-major activation buffers, asking at each call the question
    CupyBackend asks, with the operands a real training step passes and the backend's own
    ``dtype`` attribute (a type, ``np.float32``, as on CuPy: not a dtype instance)."""

    name = "probe"

    def __init__(self, dtype):
        super().__init__(dtype)
        self.refused: list = []

    def _ask(self, what, ok):
        if not ok:
            self.refused.append(what)

    def linear(self, x, weight, bias, out=None, activation="identity"):
        target = np.empty((x.shape[0], weight.shape[0]), self.dtype) if out is None else out
        self._ask("linear", _linear_ok(self.dtype, x, weight, bias, target))
        return super().linear(x, weight, bias, out, activation)

    def linear_backward(self, dout, x, weight, grad_weight, grad_bias, dx=None, **activation):
        ok = _backward_ok(self.dtype, dout, x, weight, grad_weight, grad_bias, dx)
        self._ask("linear_backward", ok)
        return super().linear_backward(dout, x, weight, grad_weight, grad_bias, dx, **activation)

    def cross_entropy(self, logits, labels, dlogits=None, loss_out=None):
        grad = np.empty_like(logits, order="C") if dlogits is None else dlogits
        self._ask("cross_entropy", _rows_ok(self.dtype, logits, labels, grad, loss_out))
        return super().cross_entropy(logits, labels, dlogits, loss_out)

    def sgd_step(self, param, grad, buf, *, gate=None, **kwargs):
        arrays = (param, grad) if not kwargs["momentum"] else (param, grad, buf)
        self._ask("sgd_step", _elementwise_ok(self.dtype, *arrays) and _gate_ok(gate))
        return super().sgd_step(param, grad, buf, gate=gate, **kwargs)

    def adam_step(self, param, grad, m, v, *, gate=None, **kwargs):
        ok = _elementwise_ok(self.dtype, param, grad, m, v) and _gate_ok(gate)
        self._ask("adam_step", ok)
        return super().adam_step(param, grad, m, v, gate=gate, **kwargs)


@pytest.mark.parametrize("graphed", [False, True], ids=["eager", "graphed"])
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_real_training_step_takes_every_fast_path(dtype, optimizer, graphed):
    """Every product, the loss and the optimizer update of an MLP's training step meet the
    fast paths' conditions, eagerly and in the graphed step (where a fallback to CuPy's own
    matmul cannot be captured): the rules are asked with the backend's real attributes."""
    import nnbench as nb
    from nnbench.backend.cuda_graph import HostCapturer
    from nnbench.graphed import GraphedTraining
    from nnbench.train import train_epoch

    be = DispatchProbe(dtype)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((70, 12)), rng.integers(0, 4, 70)
    model = nb.MLP(12, [16, 8], 4, seed=0, backend=be)
    loss_fn = nb.CrossEntropyLoss()
    opt = nb.SGD(model, lr=0.1, momentum=0.9) if optimizer == "momentum" else nb.Adam(model)
    xd, yd = model.check_input(x), loss_fn.prepare(be, (len(y), 4), y)
    if graphed:
        GraphedTraining(model, loss_fn, opt, HostCapturer()).epoch(xd, yd, 32, rng)
    else:
        train_epoch(model, loss_fn, opt, xd, yd, 32, rng)
    assert be.refused == []
