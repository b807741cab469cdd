"""CupyBackend on a GPU: the fused paths are the ones taken, they give the reference's numbers
(tests/backend's parity matrix covers every method; these add what is GPU-only), CUDA graphs
train exactly as eager steps do, and NumPy and CuPy agree over 50 steps. Skipped, with the
reason, without CuPy or a GPU."""

from __future__ import annotations

import io

import numpy as np
import pytest

import nnbench as nb
from nnbench.backend.base import Backend
from tests.backend import philox_reference
from tests.conftest import make_backend


@pytest.fixture(params=["float32", "float64"])
def cupy_be(request):
    return make_backend("cupy", request.param)


@pytest.fixture
def cupy32():
    return make_backend("cupy", "float32")


def test_the_fused_paths_are_available(cupy32):
    be = cupy32
    assert be.fused and be._kernels is not None
    assert be._cublas() is not None, f"cuBLAS through ctypes failed: {be._blas_error}"
    assert "fused=False" not in repr(be)


def test_a_training_step_goes_through_our_cublas(cupy_be, monkeypatch):
    """Each Dense layer's three products and its bias gradient reach cuBLAS through ctypes
    (CuPy's own matmul would be refused inside a CUDA graph capture)."""
    from nnbench.backend import _cublas
    from nnbench.train import train_epoch

    be, calls = cupy_be, []
    blas = be._cublas()
    monkeypatch.setattr(blas, "gemm", lambda plan, f=blas.gemm: calls.append("gemm") or f(plan))
    monkeypatch.setattr(blas, "gemv", lambda plan, f=blas.gemv: calls.append("gemv") or f(plan))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 12)), rng.integers(0, 4, 32)
    model = nb.MLP(12, [16], 4, seed=0, backend=be)
    loss_fn, opt = nb.CrossEntropyLoss(), nb.Adam(model)
    xd, yd = model.check_input(x), loss_fn.prepare(be, (32, 4), y)
    train_epoch(model, loss_fn, opt, xd, yd, 32, rng)  # one step
    # 2 forward products, 2 weight gradients, 1 input gradient, 2 bias gradients
    assert sorted(calls) == ["gemm"] * 5 + ["gemv"] * 2, calls
    assert isinstance(blas, _cublas.Cublas)


def test_dropout_masks_and_uniforms_follow_the_philox_reference(cupy_be):
    be, dtype = cupy_be, cupy_be.dtype_name
    rng = be.rng(0xC0FFEE)
    first = be.to_host(be.uniform(rng, (31, 17)))
    second = be.to_host(be.uniform(rng, (31, 17)))  # the counter moved on, on the device
    np.testing.assert_array_equal(first.ravel(), philox_reference.uniform(0xC0FFEE, 0, 527, dtype))
    np.testing.assert_array_equal(second.ravel(), philox_reference.uniform(0xC0FFEE, 1, 527, dtype))
    mask = be.to_host(be.dropout_mask(rng, 0.25, (64, 33)))
    np.testing.assert_array_equal(
        mask, philox_reference.dropout_mask(0xC0FFEE, 2, 0.25, (64, 33), dtype)
    )


def test_unfused_backend_keeps_the_numpy_paths(rng):
    from nnbench.backend.cupy_backend import CupyBackend

    make_backend("cupy", "float32")  # skips without CuPy or a GPU
    from nnbench.backend.cupy_backend import PhiloxGenerator

    be, ref = CupyBackend("float32", fused=False), Backend(np, "float32")
    assert be._cublas() is None and not isinstance(be.rng(1), PhiloxGenerator)
    x = rng.standard_normal((10, 3)).astype(np.float32)
    out = be.empty((4, 3))
    idx = np.array([3, 1, 4, 1])
    assert be.take_rows(be.asarray(x), idx, out=out) is out  # cupy.take has no mode=
    np.testing.assert_array_equal(be.to_host(out), ref.take_rows(x, idx))
    z = rng.standard_normal((5, 4)).astype(np.float32)
    y = rng.integers(0, 4, size=5)
    loss, _ = be.cross_entropy(be.asarray(z), be.asarray(y, be.int_dtype))
    assert loss == pytest.approx(ref.cross_entropy(z, y)[0], rel=1e-5)


@pytest.fixture
def tf32_restored():
    """TF32 is a process-wide CuPy setting: put CuPy's float32 compute type back after."""
    import os

    make_backend("cupy", "float32")
    import cupy

    before, variable = cupy._core.get_compute_type(cupy.float32), os.environ.get("CUPY_TF32")
    yield
    cupy._core.set_compute_type(cupy.float32, before)
    if variable is None:
        os.environ.pop("CUPY_TF32", None)
    else:
        os.environ["CUPY_TF32"] = variable


def test_tf32_products_are_close_and_switch_the_math_mode(rng, tf32_restored):
    be, ref = nb.get_backend("cupy", "float32", tf32=True), Backend(np, "float32")
    assert be.tf32 and "tf32=True" in repr(be)
    x = rng.standard_normal((256, 300)).astype(np.float32)
    w = rng.standard_normal((200, 300)).astype(np.float32)
    b = rng.standard_normal(200).astype(np.float32)
    got = be.to_host(be.linear(be.asarray(x), be.asarray(w), be.asarray(b)))
    expected = ref.linear(x, w, b)
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 5e-3 * scale  # TF32: a 10-bit mantissa
    assert be._cublas().tf32


def test_memory_stats_are_the_pool_s(cupy32):
    stats = cupy32.memory_stats()
    assert set(stats) >= {"pool_used_bytes", "pool_total_bytes", "pool_free_bytes"}
    assert 0 <= stats["pool_used_bytes"] <= stats["pool_total_bytes"]


# ---------------------------------------------------------------------- CUDA graphs
def _data(n=203, features=20, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features))
    return x, np.argmax(x[:, :classes], axis=1)


def _fit(backend, cuda_graph, optimizer, **model_options):
    x, y = _data()
    model = nb.MLP(20, [32, 16], 4, seed=1, backend=backend, **model_options)
    opt = {
        "sgd": lambda: nb.SGD(model, lr=0.1),
        "momentum": lambda: nb.SGD(model, lr=0.05, momentum=0.9, nesterov=True),
        "adamw": lambda: nb.AdamW(model, lr=0.01),
    }[optimizer]()
    result = nb.fit(
        model, nb.CrossEntropyLoss(), opt, (x, y), validation=(x[:60], y[:60]), epochs=3,
        batch_size=32, seed=2, cuda_graph=cuda_graph,
    )  # fmt: skip
    return result, backend.to_host(model.params), opt.step_count


def _assert_same(eager, graphed, rtol):
    (r1, p1, n1), (r2, p2, n2) = eager, graphed
    assert (r1.outcome, r1.epochs, n1) == (r2.outcome, r2.epochs, n2)
    for h1, h2 in zip(r1.history, r2.history, strict=True):
        assert h1["train/acc"] == h2["train/acc"]
        for key in ("train/loss", "val/loss", "val/acc"):
            assert h2[key] == pytest.approx(h1[key], rel=rtol, abs=rtol)
    np.testing.assert_allclose(p2, p1, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adamw"])
def test_graphed_training_equals_eager_training(cupy_be, optimizer):
    """Same kernels, same order: the graph replays what the eager steps compute (dropout
    included: the generator's counter lives on the device)."""
    be = cupy_be
    eager = _fit(be, False, optimizer, dropout=0.2, l2=1e-3)
    graphed = _fit(be, True, optimizer, dropout=0.2, l2=1e-3)
    _assert_same(eager, graphed, 1e-6 if be.dtype_name == "float32" else 1e-12)


def test_every_step_shape_is_captured(cupy32):
    """No capture failure for the full batches nor the short last one (203 = 6 x 32 + 11),
    batch normalization included."""
    from nnbench.backend.cuda_graph import CupyCapturer
    from nnbench.graphed import GraphedTraining

    be = cupy32
    x, y = _data()
    model = nb.MLP(20, [32], 4, batchnorm=True, dropout=0.1, seed=0, backend=be)
    loss_fn, opt = nb.CrossEntropyLoss(), nb.Adam(model)
    trainer = GraphedTraining(model, loss_fn, opt, CupyCapturer(be.xp))
    trainer.graphs._log = io.StringIO()
    xd, yd = model.check_input(x), loss_fn.prepare(be, (len(y), 4), y)
    for _ in range(3):
        result = trainer.epoch(xd, yd, 32, np.random.default_rng(0))
    assert trainer.graphs.failures == {}, trainer.graphs.failures
    assert trainer.graphs.captured == [11, 32]
    assert result.samples == 203 and np.isfinite(result.loss)
    assert opt.step_count == 3 * 7


def test_an_uncapturable_step_falls_back_to_eager_with_the_reason():
    """The unfused backend multiplies through cupy.matmul, which CuPy refuses inside a
    capture: training still completes, eagerly, with the reason on record."""
    from nnbench.backend.cuda_graph import CupyCapturer
    from nnbench.backend.cupy_backend import CupyBackend
    from nnbench.graphed import GraphedTraining

    make_backend("cupy", "float32")
    be = CupyBackend("float32", fused=False)
    x, y = _data()
    model = nb.MLP(20, [16], 4, seed=0, backend=be)
    loss_fn = nb.CrossEntropyLoss()
    trainer = GraphedTraining(model, loss_fn, nb.SGD(model), CupyCapturer(be.xp))
    trainer.graphs._log = io.StringIO()
    xd, yd = model.check_input(x), loss_fn.prepare(be, (len(y), 4), y)
    result = trainer.epoch(xd, yd, 32, np.random.default_rng(0))
    assert result.samples == 203 and np.isfinite(result.loss)
    assert set(trainer.graphs.failures) == {32, 11} or 32 in trainer.graphs.failures
    assert "capture failed" in trainer.graphs._log.getvalue()


def test_numpy_and_cupy_agree_over_fifty_steps():
    make_backend("cupy", "float32")
    from nnbench.bench import gpu_parity

    out = io.StringIO()
    assert gpu_parity.run(steps=50, batch_size=64, out=out), out.getvalue()
