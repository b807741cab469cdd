"""Backends: selection by name, views into flat buffers, and fast paths against the reference.

The reference is the base `Backend` built directly on the ``numpy`` namespace: plain array-API
expressions, allocating freely. `NumpyBackend` (and `CupyBackend`, which inherits its paths)
overrides hot paths with in-place ufunc code; each override must give the reference's numbers
up to rounding: rtol 1e-12 in float64, 1e-5 in float32.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import nnbench as nb
from nnbench.backend import BACKENDS
from nnbench.backend._cupy import device_count
from nnbench.backend.base import ACTIVATIONS, DTYPES, Backend
from nnbench.backend.cupy_backend import CupyBackend
from nnbench.backend.numpy_backend import NumpyBackend
from nnbench.backend.vector_stacked import VectorStackedOps
from tests.conftest import make_backend

RTOL = {"float64": 1e-12, "float32": 1e-5}


# ---------------------------------------------------------------------------- get_backend
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["numpy", "strict", "auto"])
def test_get_backend_by_name_and_dtype(name, dtype):
    be = make_backend(name, dtype) if name == "strict" else nb.get_backend(name, dtype=dtype)
    assert be.dtype_name == dtype
    a = be.asarray(np.ones((2, 3)))
    assert str(a.dtype).endswith(dtype)
    assert be.to_host(a).dtype == np.dtype(dtype)


def test_get_backend_default_dtype_is_float32():
    assert nb.get_backend("numpy").dtype_name == "float32"


def test_unknown_backend_names_it_and_lists_the_choices():
    with pytest.raises(ValueError, match=r"^Invalid backend: 'tensorflow' \(allowed: ") as info:
        nb.get_backend("tensorflow")
    for name in BACKENDS:
        assert name in str(info.value)


@pytest.mark.parametrize("name", BACKENDS)
def test_bad_dtype_is_refused(name):
    with pytest.raises(ValueError, match=r"^Invalid dtype: 'int8' \(allowed: float32, float64\)"):
        nb.get_backend(name, dtype="int8")


@pytest.mark.skipif(device_count() > 0, reason="CuPy and a GPU are present: backend=cupy works")
def test_cupy_without_gpu_says_what_to_do():
    with pytest.raises(nb.BackendUnavailableError) as info:
        nb.get_backend("cupy")
    message = str(info.value)
    assert "backend=numpy" in message
    if importlib.util.find_spec("cupy") is None:
        assert "pip install 'nnbench[gpu]'" in message


@pytest.mark.skipif(device_count() > 0, reason="CuPy and a GPU are present: auto picks cupy")
def test_auto_picks_numpy_and_says_why(capsys):
    be = nb.get_backend("auto", dtype="float64")
    assert isinstance(be, NumpyBackend) and be.name == "numpy"
    err = capsys.readouterr().err
    assert "backend=auto picked numpy (" in err
    reason = err.split("backend=auto picked numpy (", 1)[1]
    assert "CuPy" in reason


def test_auto_works_again_after_cupy_was_tried(capsys):
    """Regression: the factory for cupy was once shadowed by the ``nnbench.backend._cupy``
    submodule after the first attempt, so a second ``auto`` raised TypeError."""
    for name in ("auto", "cupy", "auto", "auto"):
        try:
            assert nb.get_backend(name).name in ("numpy", "cupy")
        except nb.BackendUnavailableError:
            assert name == "cupy"


# ---------------------------------------------------------------------------- views
SHAPES = [(2, 3), (4,), (2, 2)]


def test_views_write_through_both_ways(backend):
    """Writes into a view land in the flat buffer and writes into the buffer show in views."""
    be = backend
    flat = be.zeros((14,))
    w, b, m = be.views(flat, SHAPES)
    assert [tuple(v.shape) for v in (w, b, m)] == SHAPES
    w[...] = be.asarray(np.arange(6.0).reshape(2, 3))
    b[...] = be.asarray(np.full(4, 7.0))
    expected = np.concatenate([np.arange(6.0), np.full(4, 7.0), np.zeros(4)])
    np.testing.assert_array_equal(be.to_host(flat), expected)

    flat[...] = be.asarray(np.arange(14.0) + 100.0)
    np.testing.assert_array_equal(be.to_host(w), (np.arange(6.0) + 100).reshape(2, 3))
    np.testing.assert_array_equal(be.to_host(b), np.arange(6.0, 10.0) + 100)
    np.testing.assert_array_equal(be.to_host(m), (np.arange(10.0, 14.0) + 100).reshape(2, 2))


def _small_mlp(be):
    return nb.MLP(3, [4], 2, activation="tanh", batchnorm=True, seed=0, backend=be)


def test_load_state_dict_writes_into_flat_params(backend, rng):
    model = _small_mlp(backend)
    trainable = list(model.gradients())
    new = {k: rng.standard_normal(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(new)
    flat = backend.to_host(model.params)
    np.testing.assert_allclose(flat, np.concatenate([new[k].ravel() for k in trainable]))


def test_state_dict_reflects_writes_into_params(backend, rng):
    model = _small_mlp(backend)
    values = rng.standard_normal(model.num_parameters)
    model.params[...] = backend.asarray(values)
    sd = model.state_dict()
    trainable = list(model.gradients())
    np.testing.assert_allclose(np.concatenate([sd[k].ravel() for k in trainable]), values)

    model.params[...] = backend.zeros((model.num_parameters,))  # the layers see it too
    logits = model.forward(rng.standard_normal((5, 3)))
    np.testing.assert_array_equal(backend.to_host(logits), np.zeros((5, 2)))


# ---------------------------------------------------------------------------- parity helpers
BASE_PUBLIC = {
    n for n in dir(Backend) if not n.startswith("_") and not isinstance(getattr(Backend, n), str)
}


def overrides(cls) -> set:
    """Public methods (and properties) of Backend that ``cls`` replaces, anywhere in its MRO."""
    return {n for n in BASE_PUBLIC if getattr(cls, n) is not getattr(Backend, n)}


COVERED: set = set()


def covers(*names):
    """Mark a test as the parity case for the named overrides."""
    COVERED.update(names)
    return lambda test: test


# What CupyBackend overrides that has no numerical content to compare with the reference.
DEVICE_ONLY = {"device", "synchronize", "memory_in_use", "memory_stats", "rng"}


def test_every_numpy_override_has_a_parity_case():
    assert overrides(NumpyBackend) == COVERED


def test_every_cupy_override_has_a_parity_case():
    assert overrides(CupyBackend) - DEVICE_ONLY <= COVERED


@pytest.fixture(params=DTYPES)
def dtype(request) -> str:
    return request.param


@pytest.fixture(params=["numpy", "numpy-plain", "cupy"])
def pair(request, dtype):
    """(reference, fast) at one dtype; inputs reach ``fast`` as fresh copies (`dev`).
    ``numpy`` runs the C kernels where they compile, ``numpy-plain`` its NumPy-only path."""
    return Backend(np, dtype), make_backend(request.param, dtype)


def host(be, value):
    """Python scalars as they are; arrays as NumPy (checking the backend kept its dtype)."""
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    assert str(value.dtype).endswith(be.dtype_name) or "int" in str(value.dtype)
    return be.to_host(value)


def assert_close(fast, actual, expected, dtype):
    rtol = RTOL[dtype]
    actual = host(fast, actual)
    if expected is None or isinstance(expected, (bool, int)):
        assert actual == expected
    else:
        np.testing.assert_allclose(actual, np.asarray(expected), rtol=rtol, atol=rtol)


def dev(be, a, dtype=None):
    """A fresh device copy of host ``a``: NumPy's asarray would hand back ``a`` itself, and
    the reference and the fast path must never share a buffer."""
    return be.asarray(np.array(a, copy=True), dtype)


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


@covers("kernels")
def test_kernels_say_what_computes_the_hot_paths(pair):
    """A description for the run's environment record, not a number."""
    ref, fast = pair
    assert ref.kernels() == "array API reference"
    described = fast.kernels()
    if fast.name == "cupy":
        assert "cuBLAS" in described
    elif fast._native is None:
        assert described.startswith("NumPy (C kernels ")
    else:
        assert described.startswith("C kernels (") and described.endswith(") + NumPy")


# ---------------------------------------------------------------------------- arrays in/out
@covers("asarray", "to_host", "copy")
def test_arrays_in_and_out_match_reference(pair, dtype, rng):
    ref, fast = pair
    x = rng.standard_normal((3, 4))
    assert_close(fast, fast.asarray(x), ref.asarray(x), dtype)
    assert_close(fast, fast.asarray([[1, 2], [3, 4]]), ref.asarray([[1, 2], [3, 4]]), dtype)
    labels = fast.asarray(np.array([2, 0, 1]), dtype=fast.int_dtype)
    np.testing.assert_array_equal(fast.to_host(labels), [2, 0, 1])

    a = dev(fast, x)
    h = fast.to_host(a)
    assert isinstance(h, np.ndarray)
    h[...] = 0.0  # a host copy: the device array is untouched
    np.testing.assert_allclose(fast.to_host(a), ref.to_host(ref.asarray(x)), rtol=RTOL[dtype])
    c = fast.copy(a)
    a[...] = fast.asarray(np.zeros((3, 4)))
    assert_close(fast, c, ref.copy(ref.asarray(x)), dtype)


@covers("activation_buffer")
@pytest.mark.parametrize("rows", [1, 3, 128, 129])
def test_activation_buffer_and_the_paths_that_take_it(pair, dtype, rng, rows):
    """Whatever memory layout the backend picks for activation buffers, they hold the
    reference's values through the layer primitives that read and write them."""
    ref, fast = pair
    buf = fast.activation_buffer((rows, 5))
    assert tuple(buf.shape) == tuple(ref.activation_buffer((rows, 5)).shape) == (rows, 5)
    x, w, b = randn(rng, (rows, 4), dtype), randn(rng, (5, 4), dtype), randn(rng, (5,), dtype)
    assert_close(
        fast,
        fast.linear(dev(fast, x), dev(fast, w), dev(fast, b), out=buf),
        ref.linear(x, w, b),
        dtype,
    )
    z = randn(rng, (rows, 5), dtype)
    for kind in ACTIVATIONS:
        zb = fast.activation_buffer((rows, 5))
        zb[...] = dev(fast, z)
        y = fast.activation(kind, zb, out=zb)
        assert_close(fast, y, ref.activation(kind, z), dtype)
        dy = fast.activation_buffer((rows, 5))
        dy[...] = dev(fast, z[::-1])
        assert_close(
            fast,
            fast.activation_backward(kind, y, dy, out=dy),
            ref.activation_backward(kind, ref.activation(kind, z), z[::-1]),
            dtype,
        )
    gw, gb, dx = fast.empty((5, 4)), fast.empty((5,)), fast.activation_buffer((rows, 4))
    dout = fast.activation_buffer((rows, 5))
    dout[...] = dev(fast, z)
    fast.linear_backward(dout, dev(fast, x), dev(fast, w), gw, gb, dx)
    rgw, rgb, rdx = np.empty((5, 4), dtype), np.empty((5,), dtype), np.empty((rows, 4), dtype)
    ref.linear_backward(z, x, w, rgw, rgb, rdx)
    for got, want in ((gw, rgw), (gb, rgb), (dx, rdx)):
        assert_close(fast, got, want, dtype)
    labels = rng.integers(0, 5, size=rows)
    logits = fast.activation_buffer((rows, 5))
    logits[...] = dev(fast, z)
    loss, grad = fast.cross_entropy(
        logits, dev(fast, labels, fast.int_dtype), fast.activation_buffer((rows, 5))
    )
    ref_loss, ref_grad = ref.cross_entropy(z, labels)
    assert_close(fast, loss, ref_loss, dtype)
    assert_close(fast, grad, ref_grad, dtype)


@covers("multiply")
def test_multiply(pair, dtype, rng):
    ref, fast = pair
    a, b = randn(rng, (4, 5), dtype), randn(rng, (4, 5), dtype)
    expected = ref.multiply(a, b)
    assert_close(fast, fast.multiply(dev(fast, a), dev(fast, b)), expected, dtype)
    fa = dev(fast, a)
    result = fast.multiply(fa, dev(fast, b), out=fa)  # out may alias a
    assert result is fa
    assert_close(fast, fa, expected, dtype)


@covers("take_rows")
def test_take_rows(pair, dtype, rng):
    ref, fast = pair
    x = randn(rng, (10, 3), dtype)
    idx = rng.permutation(10)[:6]
    expected = ref.take_rows(x, idx)
    assert_close(fast, fast.take_rows(dev(fast, x), idx), expected, dtype)
    out = fast.empty((6, 3))
    assert fast.take_rows(dev(fast, x), idx, out=out) is out
    assert_close(fast, out, expected, dtype)
    labels = np.arange(10) * 3
    got = fast.take_rows(dev(fast, labels, dtype=fast.int_dtype), idx)
    np.testing.assert_array_equal(fast.to_host(got), ref.take_rows(labels, idx))


@covers("all_finite")
def test_all_finite(pair, dtype, rng):
    """Hand-written expectations, including sums that overflow although every element is
    finite (3e38 in float32, 1e308 in float64) and +inf next to -inf (a NaN sum)."""
    ref, fast = pair
    big = {"float32": 3e38, "float64": 1e308}[dtype]
    cases = {
        "finite": (randn(rng, (4, 5), dtype), True),
        "nan": (np.array([[1.0, np.nan], [2.0, 3.0]], dtype), False),
        "inf": (np.array([1.0, np.inf, 2.0], dtype), False),
        "-inf": (np.array([-np.inf, 0.0], dtype), False),
        "inf and -inf": (np.array([np.inf, -np.inf], dtype), False),
        "sum overflows": (np.full((3, 4), big, dtype), True),
        "sum overflows, then nan": (np.array([big, big, big, np.nan], dtype), False),
    }
    for case, (a, expected) in cases.items():
        assert ref.all_finite(a) is expected, case
        assert fast.all_finite(dev(fast, a)) is expected, case


@covers("abs_sum", "square_sum")
def test_abs_and_square_sums(pair, dtype, rng):
    ref, fast = pair
    a = randn(rng, (6, 7), dtype)
    for x in (a, a.T, a[:, 0], np.zeros((2, 2), dtype)):  # .T: not contiguous
        fx = dev(fast, np.ascontiguousarray(x)).T if x is a.T else dev(fast, x)
        assert fast.abs_sum(fx) == pytest.approx(ref.abs_sum(x), rel=RTOL[dtype])
        assert fast.square_sum(fx) == pytest.approx(ref.square_sum(x), rel=RTOL[dtype])
        assert isinstance(fast.abs_sum(fx), float) and isinstance(fast.square_sum(fx), float)


# ---------------------------------------------------------------------------- random numbers
@covers("uniform")
def test_uniform(pair, dtype):
    """Samples in [0, 1) at the backend dtype; in float64 NumPy draws the reference's stream."""
    ref, fast = pair
    u = host(fast, fast.uniform(fast.rng(5), (50, 40)))
    assert u.shape == (50, 40) and u.dtype == np.dtype(dtype)
    assert u.min() >= 0.0 and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.03
    out = fast.empty((50, 40))
    assert fast.uniform(fast.rng(5), (50, 40), out=out) is out
    np.testing.assert_array_equal(fast.to_host(out), u)
    if fast.name == "numpy" and dtype == "float64":
        np.testing.assert_array_equal(u, ref.uniform(ref.rng(5), (50, 40)))


@covers("dropout_mask")
@pytest.mark.parametrize("p", [0.3, 0.5])
def test_dropout_mask(pair, dtype, p):
    """Values are 0 or 1/(1-p), kept with probability 1-p; NumPy float64 equals the reference
    mask drawn from the same seed."""
    ref, fast = pair
    shape = (100, 80)
    mask = host(fast, fast.dropout_mask(fast.rng(3), p, shape))
    scale = np.asarray(1.0 / (1.0 - p), dtype)
    assert mask.dtype == np.dtype(dtype)
    assert set(np.unique(mask).tolist()) <= {0.0, float(scale)}
    assert abs(np.mean(mask == scale) - (1.0 - p)) < 0.03
    out = fast.empty(shape)
    assert fast.dropout_mask(fast.rng(3), p, shape, out=out) is out
    np.testing.assert_array_equal(fast.to_host(out), mask)
    if fast.name == "numpy" and dtype == "float64":
        np.testing.assert_array_equal(mask, ref.dropout_mask(ref.rng(3), p, shape))


# ---------------------------------------------------------------------------- layers
@covers("linear")
@pytest.mark.parametrize("n", [1, 7])
def test_linear(pair, dtype, rng, n):
    ref, fast = pair
    x, w, b = randn(rng, (n, 5), dtype), randn(rng, (3, 5), dtype), randn(rng, (3,), dtype)
    expected = ref.linear(x, w, b)
    args = [dev(fast, a) for a in (x, w, b)]
    assert_close(fast, fast.linear(*args), expected, dtype)
    out = fast.empty((n, 3))
    assert fast.linear(*args, out=out) is out
    assert_close(fast, out, expected, dtype)


@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_linear_with_its_activation(pair, dtype, rng, kind):
    """y = f(x @ W.T + b) in one call (a GPU backend fuses the bias and f into one kernel)."""
    ref, fast = pair
    x, w, b = randn(rng, (7, 5), dtype), randn(rng, (3, 5), dtype), randn(rng, (3,), dtype)
    expected = ref.activation(kind, ref.linear(x, w, b))
    np.testing.assert_array_equal(ref.linear(x, w, b, activation=kind), expected)
    out = fast.empty((7, 3))
    args = [dev(fast, a) for a in (x, w, b)]
    assert fast.linear(*args, out=out, activation=kind) is out
    assert_close(fast, out, expected, dtype)


@covers("linear_backward")
@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("with_dx", [True, False])
def test_linear_backward(pair, dtype, rng, n, with_dx):
    """Gradients land in views of one flat buffer, as in the MLP."""
    ref, fast = pair
    dout, x, w = randn(rng, (n, 3), dtype), randn(rng, (n, 5), dtype), randn(rng, (3, 5), dtype)
    ref_gw, ref_gb, ref_dx = np.empty((3, 5), dtype), np.empty(3, dtype), np.empty((n, 5), dtype)
    ref.linear_backward(dout, x, w, ref_gw, ref_gb, ref_dx)

    flat = fast.zeros((18,))
    gw, gb = fast.views(flat, [(3, 5), (3,)])
    dx = fast.empty((n, 5)) if with_dx else None
    result = fast.linear_backward(*(dev(fast, a) for a in (dout, x, w)), gw, gb, dx)
    assert result is dx
    assert_close(fast, gw, ref_gw, dtype)
    assert_close(fast, gb, ref_gb, dtype)
    assert_close(fast, fast.to_host(flat)[:15], ref_gw.ravel(), dtype)
    if with_dx:
        assert_close(fast, dx, ref_dx, dtype)


@pytest.mark.parametrize("kind", ACTIVATIONS)
@pytest.mark.parametrize("rows", [1, 13, 129])
def test_linear_backward_through_its_activation(pair, dtype, rng, kind, rows):
    """dz = f'(z) dout written over dout, then the gradients: in the layouts the layers use
    (column-major up to 128 rows on NumPy), rows not a multiple of a vector's width."""
    ref, fast = pair
    z, dout = randn(rng, (rows, 6), dtype), randn(rng, (rows, 6), dtype)
    x, w = randn(rng, (rows, 5), dtype), randn(rng, (6, 5), dtype)
    y = ref.activation(kind, z)
    want = [np.empty((6, 5), dtype), np.empty(6, dtype), np.empty((rows, 5), dtype)]
    ref.linear_backward(dout.copy(), x, w, *want, activation=kind, y=y)
    fy, fdout = fast.activation_buffer((rows, 6)), fast.activation_buffer((rows, 6))
    fy[...], fdout[...] = dev(fast, y), dev(fast, dout)
    got = [fast.empty((6, 5)), fast.empty((6,)), fast.activation_buffer((rows, 5))]
    fast.linear_backward(fdout, dev(fast, x), dev(fast, w), *got, activation=kind, y=fy)
    for g, e in zip(got, want, strict=True):
        assert_close(fast, g, e, dtype)
    assert_close(fast, fdout, ref.activation_backward(kind, y, dout), dtype)


def activation_input(rng, dtype):
    """Random values plus zeros and magnitudes where a naive sigmoid would overflow."""
    z = 4.0 * rng.standard_normal((6, 8))
    z[0, :] = [-1000.0, -60.0, -1.0, -0.0, 0.0, 1.0, 60.0, 1000.0]
    return z.astype(dtype)


@covers("activation")
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activation(pair, dtype, rng, kind):
    ref, fast = pair
    z = activation_input(rng, dtype)
    expected = ref.activation(kind, z)
    assert_close(fast, fast.activation(kind, dev(fast, z)), expected, dtype)
    out = fast.empty(z.shape)
    assert fast.activation(kind, dev(fast, z), out=out) is out
    assert_close(fast, out, expected, dtype)
    fz = dev(fast, z)
    assert fast.activation(kind, fz, out=fz) is fz  # out may alias z
    assert_close(fast, fz, expected, dtype)


@covers("activation_backward")
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activation_backward(pair, dtype, rng, kind):
    ref, fast = pair
    y = ref.activation(kind, activation_input(rng, dtype))
    dy = randn(rng, y.shape, dtype)
    expected = ref.activation_backward(kind, y, dy)
    fy = dev(fast, y)
    assert_close(fast, fast.activation_backward(kind, fy, dev(fast, dy)), expected, dtype)
    out = fast.empty(y.shape)
    assert fast.activation_backward(kind, fy, dev(fast, dy), out=out) is out
    assert_close(fast, out, expected, dtype)
    fdy = dev(fast, dy)
    assert fast.activation_backward(kind, fy, fdy, out=fdy) is fdy  # out may alias dy
    assert_close(fast, fdy, expected, dtype)


# ---------------------------------------------------------------------------- losses
@covers("cross_entropy")
@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_cross_entropy(pair, dtype, rng, scale):
    """scale=1000: logits far beyond exp's range must stay finite."""
    ref, fast = pair
    logits = (scale * rng.standard_normal((9, 5))).astype(dtype)
    labels = rng.integers(0, 5, size=9)
    ref_loss, ref_grad = ref.cross_entropy(logits, labels)
    assert np.isfinite(ref_loss)
    flabels = dev(fast, labels, dtype=fast.int_dtype)
    loss, grad = fast.cross_entropy(dev(fast, logits), flabels)
    assert isinstance(loss, float)
    assert loss == pytest.approx(ref_loss, rel=RTOL[dtype])
    assert_close(fast, grad, ref_grad, dtype)
    out = fast.empty(logits.shape)
    loss2, grad2 = fast.cross_entropy(dev(fast, logits), flabels, dlogits=out)
    assert grad2 is out and loss2 == loss
    assert_close(fast, out, ref_grad, dtype)


@covers("count_correct")
def test_count_correct(pair, dtype, rng):
    """Small integer logits make ties, which go to the first index in both."""
    ref, fast = pair
    logits = rng.integers(0, 3, size=(40, 4)).astype(dtype)
    labels = rng.integers(0, 4, size=40)
    expected = ref.count_correct(logits, labels)
    got = fast.count_correct(dev(fast, logits), dev(fast, labels, dtype=fast.int_dtype))
    assert type(got) is int and got == expected
    tie = np.array([[1.0, 1.0, 0.0]], dtype)
    assert ref.count_correct(tie, np.array([0])) == 1
    one = dev(fast, np.array([0]), dtype=fast.int_dtype)
    assert fast.count_correct(dev(fast, tie), one) == 1


# ---------------------------------------------------------------------------- regularization
@covers("add_weight_penalty_grad")
@pytest.mark.parametrize("l1, l2", [(0.0, 0.0), (0.1, 0.0), (0.0, 0.2), (0.1, 0.2)])
def test_add_weight_penalty_grad(pair, dtype, rng, l1, l2):
    ref, fast = pair
    w = randn(rng, (4, 5), dtype)
    w[0, :2] = 0.0  # sign(0) = 0
    grad = randn(rng, (4, 5), dtype)
    expected = grad.copy()
    ref.add_weight_penalty_grad(expected, w, l1, l2)
    fgrad = dev(fast, grad)
    assert fast.add_weight_penalty_grad(fgrad, dev(fast, w), l1, l2) is None
    assert_close(fast, fgrad, expected, dtype)


# ---------------------------------------------------------------------------- optimizers
SGD_CONFIGS = [
    dict(momentum=0.0, nesterov=False, weight_decay=0.0),
    dict(momentum=0.0, nesterov=False, weight_decay=0.01),
    dict(momentum=0.9, nesterov=False, weight_decay=0.0),
    dict(momentum=0.9, nesterov=False, weight_decay=0.01),
    dict(momentum=0.9, nesterov=True, weight_decay=0.0),
    dict(momentum=0.9, nesterov=True, weight_decay=0.01),
]


@covers("sgd_step")
@pytest.mark.parametrize("config", SGD_CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_sgd_step(pair, dtype, rng, config):
    """Four steps from the same start (the first sets the buffer); grad is not modified."""
    ref, fast = pair
    size = 23
    p = randn(rng, size, dtype)
    buf = np.zeros(size, dtype) if config["momentum"] else None
    fp = dev(fast, p)
    fbuf = fast.zeros((size,)) if config["momentum"] else None
    scratch = (fast.empty((size,)), fast.empty((size,)))
    ref_scratch = (np.empty(size, dtype), np.empty(size, dtype))
    for step in range(1, 5):
        g = randn(rng, size, dtype)
        fg = dev(fast, g)
        ref.sgd_step(p, g, buf, lr=0.1, first=step == 1, scratch=ref_scratch, **config)
        fast.sgd_step(fp, fg, fbuf, lr=0.1, first=step == 1, scratch=scratch, **config)
        assert_close(fast, fp, p, dtype)
        assert_close(fast, fg, g, dtype)
        if buf is not None:
            assert_close(fast, fbuf, buf, dtype)


@covers("adam_step")
@pytest.mark.parametrize(
    "weight_decay, decoupled", [(0.0, False), (0.1, False), (0.1, True)], ids=str
)
def test_adam_step(pair, dtype, rng, weight_decay, decoupled):
    ref, fast = pair
    size = 23
    p, m, v = randn(rng, size, dtype), np.zeros(size, dtype), np.zeros(size, dtype)
    fp, fm, fv = dev(fast, p), fast.zeros((size,)), fast.zeros((size,))
    scratch = (fast.empty((size,)), fast.empty((size,)))
    ref_scratch = (np.empty(size, dtype), np.empty(size, dtype))
    hyper = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
    hyper.update(weight_decay=weight_decay, decoupled=decoupled)
    for step in range(1, 6):
        g = randn(rng, size, dtype)
        fg = dev(fast, g)
        ref.adam_step(p, g, m, v, step=step, scratch=ref_scratch, **hyper)
        fast.adam_step(fp, fg, fm, fv, step=step, scratch=scratch, **hyper)
        for got, want in ((fp, p), (fm, m), (fv, v), (fg, g)):
            assert_close(fast, got, want, dtype)


# ---------------------------------------------------------------------------- device scalars
# The forms a step captured as a CUDA graph uses: scalars written to float64 device buffers,
# optimizer steps gated by a device flag (`Backend.record_step`).
def test_losses_and_counts_into_device_buffers(pair, dtype, rng):
    ref, fast = pair
    logits = randn(rng, (9, 5), dtype)
    labels = rng.integers(0, 5, size=9)
    ref_loss, ref_grad = ref.cross_entropy(logits, labels)
    flabels = dev(fast, labels, dtype=fast.int_dtype)
    scalar = fast.xp.zeros(1, dtype=fast.xp.float64)
    got, grad = fast.cross_entropy(dev(fast, logits), flabels, fast.empty((9, 5)), scalar)
    assert got is scalar
    assert float(fast.to_host(scalar)[0]) == pytest.approx(ref_loss, rel=RTOL[dtype])
    assert_close(fast, grad, ref_grad, dtype)
    count = fast.xp.zeros(1, dtype=fast.xp.float64)
    assert fast.count_correct(dev(fast, logits), flabels, out=count) is count
    assert fast.to_host(count)[0] == ref.count_correct(logits, labels)


@covers("record_step")
def test_record_step(pair, dtype):
    """Sums until the first non-finite loss, then the gate stays closed."""
    ref, fast = pair
    xp = fast.xp
    expected = np.array([1.0, 0, 0, 0, 0, 0, 0])
    stats = dev(fast, expected, dtype=xp.float64)
    sequence = [(2.5, 3.0, 8), (1.25, None, 8), (np.nan, 1.0, 8), (0.5, 8.0, 3), (np.inf, 1.0, 2)]
    for loss, correct, rows in sequence:
        c = None if correct is None else np.array([correct])
        ref.record_step(expected, np.array([loss]), c, rows)
        fc = None if c is None else dev(fast, c, dtype=xp.float64)
        fast.record_step(stats, dev(fast, np.array([loss]), dtype=xp.float64), fc, rows)
        np.testing.assert_array_equal(fast.to_host(stats), expected)
    np.testing.assert_array_equal(expected, [0.0, 30.0, 3.0, 16.0, 5.0, 3.0, 2.0])


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adamw"])
def test_gated_optimizer_steps(pair, dtype, rng, optimizer):
    """Gate 1 steps as the reference does; gate 0 changes nothing (Adam's count included)."""
    ref, fast = pair
    size, xp = 19, fast.xp
    p = randn(rng, size, dtype)
    state = {"ref": [p.copy(), np.zeros(size, dtype), np.zeros(size, dtype), np.zeros(1)]}
    state["fast"] = [dev(fast, p), fast.zeros((size,)), fast.zeros((size,))]
    state["fast"].append(xp.zeros(1, dtype=xp.float64))
    for gate_value in (1.0, 1.0, 0.0, 1.0):
        g = randn(rng, size, dtype)
        for be, key in ((ref, "ref"), (fast, "fast")):
            param, buf, v, counter = state[key]
            gate = dev(be, np.array([gate_value]), dtype=be.xp.float64)
            scratch = (be.empty((size,)), be.empty((size,)))
            if optimizer == "adamw":
                hyper = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)
                be.adam_step(
                    param, dev(be, g), buf, v, decoupled=True, step=counter, scratch=scratch,
                    gate=gate, **hyper,
                )  # fmt: skip
            else:
                momentum = 0.9 if optimizer == "nesterov" else 0.0
                be.sgd_step(
                    param, dev(be, g), buf, lr=0.1, momentum=momentum,
                    nesterov=momentum > 0, weight_decay=0.01, first=False, scratch=scratch,
                    gate=gate,
                )  # fmt: skip
        for got, want in zip(state["fast"][:3], state["ref"][:3], strict=True):
            assert_close(fast, got, want, dtype)
        np.testing.assert_array_equal(fast.to_host(state["fast"][3]), state["ref"][3])
    if optimizer == "adamw":
        assert state["ref"][3][0] == 3.0  # three applied steps


# ---------------------------------------------------------------------------- numpy vs strict
@pytest.fixture
def numpy_strict():
    return make_backend("numpy", "float64"), make_backend("strict", "float64")


def assert_same(np_be, strict_be, a, b):
    np.testing.assert_allclose(np_be.to_host(a), strict_be.to_host(b), rtol=1e-12, atol=1e-12)


def test_strict_linear_and_backward(numpy_strict, rng):
    npb, stb = numpy_strict
    x, w, b, dout = (rng.standard_normal(s) for s in ((7, 5), (3, 5), (3,), (7, 3)))
    assert_same(npb, stb, npb.linear(x, w, b), stb.linear(*[dev(stb, a) for a in (x, w, b)]))
    grads = {be.name: (be.zeros((3, 5)), be.zeros((3,)), be.zeros((7, 5))) for be in (npb, stb)}
    npb.linear_backward(dout, x, w, *grads["numpy"])
    stb.linear_backward(*[dev(stb, a) for a in (dout, x, w)], *grads["strict"])
    for a, b_ in zip(grads["numpy"], grads["strict"], strict=True):
        assert_same(npb, stb, a, b_)


@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_strict_activation_and_backward(numpy_strict, rng, kind):
    npb, stb = numpy_strict
    z = activation_input(rng, "float64")
    dy = rng.standard_normal(z.shape)
    y_np, y_st = npb.activation(kind, z.copy()), stb.activation(kind, dev(stb, z))
    assert_same(npb, stb, y_np, y_st)
    dz_np = npb.activation_backward(kind, y_np, dy.copy())
    assert_same(npb, stb, dz_np, stb.activation_backward(kind, y_st, dev(stb, dy)))


def test_strict_cross_entropy_and_count(numpy_strict, rng):
    npb, stb = numpy_strict
    logits, labels = rng.standard_normal((9, 4)), rng.integers(0, 4, size=9)
    slogits, slabels = dev(stb, logits), dev(stb, labels, dtype=stb.int_dtype)
    loss_np, grad_np = npb.cross_entropy(logits, labels)
    loss_st, grad_st = stb.cross_entropy(slogits, slabels)
    assert loss_np == pytest.approx(loss_st, rel=1e-12)
    assert_same(npb, stb, grad_np, grad_st)
    assert npb.count_correct(logits, labels) == stb.count_correct(slogits, slabels)


def test_strict_take_rows_and_all_finite(numpy_strict, rng):
    npb, stb = numpy_strict
    x, idx = rng.standard_normal((8, 3)), rng.permutation(8)[:5]
    assert_same(npb, stb, npb.take_rows(x, idx), stb.take_rows(dev(stb, x), idx))
    bad = np.array([1.0, np.inf, -np.inf])
    assert npb.all_finite(bad) is stb.all_finite(dev(stb, bad)) is False


def test_strict_optimizer_steps(numpy_strict, rng):
    npb, stb = numpy_strict
    size = 11
    p0 = rng.standard_normal(size)
    state = {be.name: [dev(be, p0)] + [be.zeros((size,)) for _ in range(3)] for be in (npb, stb)}
    sgd = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    adam = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, decoupled=True)
    for step in range(1, 4):
        g = rng.standard_normal(size)
        for be in (npb, stb):
            p, buf, m, v = state[be.name]
            scratch = (be.empty((size,)), be.empty((size,)))
            be.sgd_step(p, dev(be, g), buf, first=step == 1, scratch=scratch, **sgd)
            be.adam_step(p, dev(be, g), m, v, step=step, scratch=scratch, **adam)
        for a, b in zip(state["numpy"], state["strict"], strict=True):
            assert_same(npb, stb, a, b)


def test_strict_device_scalars_and_gated_steps(numpy_strict, rng):
    """The device-scalar forms stay within the array API standard."""
    npb, stb = numpy_strict
    logits, labels = rng.standard_normal((9, 4)), rng.integers(0, 4, size=9)
    size, p0 = 11, rng.standard_normal(11)
    results = {}
    for be in (npb, stb):
        xp = be.xp
        scalars = [xp.zeros((1,), dtype=xp.float64) for _ in range(3)]
        stats = be.asarray(np.array([1.0, 0, 0, 0, 0, 0, 0]), xp.float64)
        z, y = dev(be, logits), dev(be, labels, dtype=be.int_dtype)
        be.cross_entropy(z, y, be.empty((9, 4)), loss_out=scalars[0])
        be.count_correct(z, y, out=scalars[1])
        be.record_step(stats, scalars[0], scalars[1], 9)
        be.mse(z, z + 1.0, be.empty((9, 4)), loss_out=scalars[2])
        p, m, v = dev(be, p0), be.zeros((size,)), be.zeros((size,))
        counter = xp.zeros((1,), dtype=xp.float64)
        scratch = (be.empty((size,)), be.empty((size,)))
        for gate_value in (1.0, 0.0, 1.0):
            gate = be.asarray(np.array([gate_value]), xp.float64)
            g = dev(be, np.cos(p0 * gate_value + 1.0))
            be.adam_step(
                p, g, m, v, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1,
                decoupled=False, step=counter, scratch=scratch, gate=gate,
            )  # fmt: skip
            be.sgd_step(
                p, g, m, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.0, first=False,
                scratch=scratch, gate=gate,
            )  # fmt: skip
        results[be.name] = [be.to_host(a) for a in (*scalars, stats, p, m, v, counter)]
    for a, b in zip(results["numpy"], results["strict"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- stacks
# A stack's primitives (`StackedOps`) must give each member exactly the fast backend's solo
# result (bit for bit: `nnbench.stack` promises members their solo numbers), and the
# reference's up to rounding.
@covers("bias_activation", "bias_activation_backward")
@pytest.mark.parametrize("kind", ACTIVATIONS)
@pytest.mark.parametrize("rows", [1, 13, 129])
def test_bias_activation_halves_of_linear(pair, dtype, rng, kind, rows):
    ref, fast = pair
    z, b, dout = randn(rng, (rows, 6), dtype), randn(rng, (6,), dtype), randn(rng, (rows, 6), dtype)
    y = fast.activation_buffer((rows, 6))
    y[...] = dev(fast, z)
    assert fast.bias_activation(y, dev(fast, b), kind) is y
    want = ref.bias_activation(z.copy(), b, kind)
    assert_close(fast, y, want, dtype)
    d = fast.activation_buffer((rows, 6))
    d[...] = dev(fast, dout)
    gb, ref_gb = fast.empty((6,)), np.empty(6, dtype)
    dz = fast.bias_activation_backward(d, gb, kind, y)
    assert_close(fast, dz, ref.bias_activation_backward(dout.copy(), ref_gb, kind, want), dtype)
    assert_close(fast, gb, ref_gb, dtype)


def _stack_of(be, arrays, activation=True):
    """Host (rows, n) arrays as one backend stack (M, rows, n) in the stack layout."""
    shape = arrays[0].shape
    stack = be.stack_buffer(len(arrays), shape) if activation else be.empty((len(arrays), *shape))
    for m, a in enumerate(arrays):
        stack[m, ...] = dev(be, a)
    return stack


def _solo(be, a):
    """A host array in a fresh solo activation buffer."""
    buf = be.activation_buffer(a.shape)
    buf[...] = dev(be, a)
    return buf


def assert_per_member(be, stacked, solos):
    for m, solo in enumerate(solos):
        np.testing.assert_array_equal(be.to_host(stacked[m, ...]), be.to_host(solo))


STACK_OPS = (
    "stack_buffer",
    "stack_matmul",
    "matrix_transpose",
    "stack_bias_activation",
    "stack_bias_activation_backward",
)


@covers(*STACK_OPS)
@pytest.mark.parametrize("kind", ACTIVATIONS)
@pytest.mark.parametrize("rows", [1, 13, 129])
def test_stack_layer_primitives_are_the_solo_ones_per_member(pair, dtype, rng, kind, rows):
    _, fast = pair
    members, n, k = 3, 6, 5
    x = [randn(rng, (rows, k), dtype) for _ in range(members)]
    w = [randn(rng, (n, k), dtype) for _ in range(members)]
    b = [randn(rng, (n,), dtype) for _ in range(members)]
    dy = [randn(rng, (rows, n), dtype) for _ in range(members)]
    solo_y, solo_gb, solo_dz = [], [], []
    for m in range(members):
        y = fast.linear(
            dev(fast, x[m]),
            dev(fast, w[m]),
            dev(fast, b[m]),
            out=_solo(fast, np.zeros((rows, n), dtype)),
            activation=kind,
        )
        gb = fast.empty((n,))
        solo_dz.append(fast.bias_activation_backward(_solo(fast, dy[m]), gb, kind, y))
        solo_y.append(y)
        solo_gb.append(gb)
    sx, sw = _stack_of(fast, x, activation=False), _stack_of(fast, w, activation=False)
    sy = fast.stack_buffer(members, (rows, n))
    fast.stack_matmul(sx, fast.matrix_transpose(sw), sy)
    sb = _stack_of(fast, [b_[None, :] for b_ in b], activation=False)[:, 0, :]
    assert fast.stack_bias_activation(sy, sb, kind) is sy
    assert_per_member(fast, sy, solo_y)
    sgb = fast.zeros((members, n))
    sdz = fast.stack_bias_activation_backward(_stack_of(fast, dy), sgb, kind, sy)
    assert_per_member(fast, sdz, solo_dz)
    assert_per_member(fast, sgb, solo_gb)


@covers("stack_cross_entropy")
@pytest.mark.parametrize("rows", [1, 13, 129])
def test_stack_cross_entropy_is_the_solo_one_per_member(pair, dtype, rng, rows):
    """Losses, gradients and (on request) right predictions; ties and a NaN logit count
    as argmax counts them (the first maximum, the first NaN)."""
    ref, fast = pair
    members, classes = 3, 5
    z = [np.round(2.0 * randn(rng, (rows, classes), dtype)) for _ in range(members)]
    z[2][0, 3] = np.nan
    labels = rng.integers(0, classes, size=(members, rows))
    grads = fast.stack_buffer(members, (rows, classes))
    flabels = dev(fast, labels, dtype=fast.int_dtype)
    correct = np.full(members, -1, dtype=np.int64)
    losses = fast.stack_cross_entropy(_stack_of(fast, z), flabels, grads, correct)
    again = fast.stack_cross_entropy(_stack_of(fast, z), flabels, grads)
    np.testing.assert_array_equal(again, losses)
    for m in range(members):
        loss, grad = fast.cross_entropy(_solo(fast, z[m]), flabels[m, ...], _solo(fast, z[m]))
        np.testing.assert_array_equal(losses[m], loss)
        np.testing.assert_array_equal(fast.to_host(grads[m, ...]), fast.to_host(grad))
        assert correct[m] == fast.count_correct(_solo(fast, z[m]), flabels[m, ...])
        assert correct[m] == ref.count_correct(z[m], labels[m])
        if m < 2:
            assert losses[m] == pytest.approx(
                ref.cross_entropy(z[m], labels[m])[0], rel=RTOL[dtype]
            )


@covers("stack_sgd_step", "stack_adam_step")
@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam", "adamw"])
def test_stack_optimizer_steps_are_the_solo_ones_per_member(pair, dtype, rng, optimizer):
    """Per-member hyperparameters, zeros mixed with nonzeros, three steps."""
    _, fast = pair
    members, size = 4, 37
    p = randn(rng, (members, size), dtype)
    sp, state = dev(fast, p), [fast.zeros((members, size)) for _ in range(2)]
    solo = [(dev(fast, p[m]), fast.zeros((size,)), fast.zeros((size,))) for m in range(members)]
    scratch = (fast.empty((members, size)), fast.empty((members, size)))
    solo_scratch = (fast.empty((size,)), fast.empty((size,)))
    lr, wd = [0.1, 0.01, 0.3, 0.05], [0.0, 0.1, 0.0, 0.01]
    momentum = [0.9, 0.5, 0.9, 0.8] if optimizer == "nesterov" else [0.0, 0.9, 0.5, 0.0]
    adam = dict(
        beta1=[0.9, 0.8, 0.95, 0.9], beta2=[0.999, 0.99, 0.9, 0.999], eps=[1e-8, 1e-6, 1e-8, 1e-7]
    )
    for step in range(1, 4):
        g = randn(rng, (members, size), dtype)
        if optimizer in ("sgd", "nesterov"):
            nesterov = optimizer == "nesterov"
            fast.stack_sgd_step(
                sp,
                dev(fast, g),
                state[0],
                lr=lr,
                momentum=momentum,
                nesterov=nesterov,
                weight_decay=wd,
                first=step == 1,
                scratch=scratch,
            )
            for m, (pm, bm, _) in enumerate(solo):
                buf = bm if momentum[m] else None
                fast.sgd_step(
                    pm,
                    dev(fast, g[m]),
                    buf,
                    lr=lr[m],
                    momentum=momentum[m],
                    nesterov=nesterov,
                    weight_decay=wd[m],
                    first=step == 1,
                    scratch=solo_scratch,
                )
        else:
            decoupled = optimizer == "adamw"
            fast.stack_adam_step(
                sp,
                dev(fast, g),
                *state,
                lr=lr,
                weight_decay=wd,
                decoupled=decoupled,
                step=step,
                scratch=scratch,
                **adam,
            )
            for m, (pm, mm, vm) in enumerate(solo):
                hyper = {key: value[m] for key, value in adam.items()}
                fast.adam_step(
                    pm,
                    dev(fast, g[m]),
                    mm,
                    vm,
                    lr=lr[m],
                    weight_decay=wd[m],
                    decoupled=decoupled,
                    step=step,
                    scratch=solo_scratch,
                    **hyper,
                )
        assert_per_member(fast, sp, [s[0] for s in solo])


class VectorNumpy(VectorStackedOps, NumpyBackend):
    """CuPy's whole-stack steps (`VectorStackedOps`) on NumPy's namespace."""


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam", "adamw"])
def test_vectorized_stack_steps_match_the_members_solo_steps(dtype, rng, optimizer):
    """The array forms CuPy runs give each member its solo results, up to rounding."""
    fast, solo_be = VectorNumpy(dtype), NumpyBackend(dtype)
    members, size, rows, classes = 4, 37, 13, 5
    p = randn(rng, (members, size), dtype)
    sp, state = p.copy(), [np.zeros((members, size), dtype) for _ in range(2)]
    solo = [(p[m].copy(), np.zeros(size, dtype), np.zeros(size, dtype)) for m in range(members)]
    scratch = (np.empty((size,), dtype), np.empty((size,), dtype))
    lr, wd = [0.1, 0.01, 0.3, 0.05], [0.0, 0.1, 0.0, 0.01]
    momentum = [0.9, 0.5, 0.9, 0.8] if optimizer == "nesterov" else [0.0, 0.9, 0.5, 0.0]
    adam = dict(beta1=[0.9, 0.8, 0.95, 0.9], beta2=[0.999, 0.99, 0.9, 0.999], eps=[1e-8] * 4)
    for step in range(1, 4):
        g = randn(rng, (members, size), dtype)
        if optimizer in ("sgd", "nesterov"):
            hyper = dict(nesterov=optimizer == "nesterov", first=step == 1)
            fast.stack_sgd_step(
                sp, g, state[0], lr=lr, momentum=momentum, weight_decay=wd, scratch=None, **hyper
            )
            for m, (pm, bm, _) in enumerate(solo):
                buf = bm if momentum[m] else None
                solo_be.sgd_step(
                    pm,
                    g[m],
                    buf,
                    lr=lr[m],
                    momentum=momentum[m],
                    weight_decay=wd[m],
                    scratch=scratch,
                    **hyper,
                )
        else:
            decoupled = optimizer == "adamw"
            fast.stack_adam_step(
                sp,
                g,
                *state,
                lr=lr,
                weight_decay=wd,
                decoupled=decoupled,
                step=step,
                scratch=None,
                **adam,
            )
            for m, (pm, mm, vm) in enumerate(solo):
                hyper = {key: value[m] for key, value in adam.items()}
                solo_be.adam_step(
                    pm,
                    g[m],
                    mm,
                    vm,
                    lr=lr[m],
                    weight_decay=wd[m],
                    decoupled=decoupled,
                    step=step,
                    scratch=scratch,
                    **hyper,
                )
        for m in range(members):
            assert_close(fast, sp[m], solo[m][0], dtype)
    z = 4.0 * randn(rng, (members, rows, classes), dtype)
    labels = rng.integers(0, classes, size=(members, rows))
    grads, correct = np.empty_like(z), np.empty(members, dtype=np.int64)
    losses = fast.stack_cross_entropy(z, labels, grads, correct)
    for m in range(members):
        loss, grad = solo_be.cross_entropy(z[m], labels[m], np.empty_like(z[m]))
        assert losses[m] == pytest.approx(loss, rel=RTOL[dtype])
        assert_close(fast, grads[m], grad, dtype)
        assert correct[m] == solo_be.count_correct(z[m], labels[m])
