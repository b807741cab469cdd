"""Numerical robustness at extreme logits, on every backend in float32 and float64.

Logits of +-1e4 overflow exp() in both dtypes (exp(89) is already inf in float32), so a naive
softmax, sigmoid or log(1 + e^z) would produce inf or NaN. Every check here runs with
warnings raised as errors and NumPy's floating-point overflow, invalid-operation and
division-by-zero traps on, so a stray overflow fails the test even if the result came out
right. (Underflow to 0, e.g. exp(-2e4), is the expected and harmless outcome.)
The expected values are written out by hand: at |z| = 1e4 every softmax and sigmoid is
exactly 0, 1/2, 1/3 or 1 in floating point.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import nnbench as nb

BIG = 1e4
LOG2, LOG3 = math.log(2.0), math.log(3.0)


@pytest.fixture(params=["float32", "float64"])
def any_backend(request, backend_name):
    """Every backend of the matrix, in both dtypes."""
    return request.getfixturevalue("backend" if request.param == "float64" else "backend32")


@pytest.fixture(autouse=True)
def floating_point_traps():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            yield


TOLERANCE = {  # rounding tolerance by dtype: a few ulps of a value of order 1
    "float32": {"rtol": 1e-6, "atol": 1e-6},
    "float64": {"rtol": 1e-12, "atol": 1e-12},
}


def tol(backend) -> dict:
    return TOLERANCE[backend.dtype_name]


# ---------------------------------------------------------------------- cross-entropy
# (logits row, label, -log softmax(z)[label], softmax(z))
CE_CASES = [
    ([BIG, -BIG, 0.0], 0, 0.0, [1.0, 0.0, 0.0]),  # confident and right
    ([BIG, -BIG, 0.0], 2, BIG, [1.0, 0.0, 0.0]),  # confident and wrong
    ([BIG, -BIG, 0.0], 1, 2 * BIG, [1.0, 0.0, 0.0]),  # very wrong
    ([-BIG, BIG, BIG], 1, LOG2, [0.0, 0.5, 0.5]),  # a tie at the top
    ([-BIG, -BIG, -BIG], 2, LOG3, [1 / 3, 1 / 3, 1 / 3]),  # all equal and very negative
]


@pytest.mark.parametrize("row,label,expected,softmax", CE_CASES)
def test_cross_entropy_one_extreme_row(any_backend, row, label, expected, softmax):
    """L = -log softmax(z)[y]; dL/dz = softmax(z) - onehot(y) (a batch of one)."""
    be = any_backend
    loss, grad = nb.CrossEntropyLoss()(be.asarray(np.array([row])), np.array([label]))
    grad = be.to_host(grad)
    assert math.isfinite(loss)
    assert loss == pytest.approx(expected, rel=tol(be)["rtol"], abs=tol(be)["atol"])
    expected_grad = np.array([softmax]) - np.eye(3)[[label]]
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, expected_grad, **tol(be))


def test_cross_entropy_extreme_batch(any_backend):
    """The batch mean of the rows above, and (softmax - onehot) / n for the gradient."""
    be = any_backend
    logits = np.array([case[0] for case in CE_CASES])
    labels = np.array([case[1] for case in CE_CASES])
    n = len(CE_CASES)
    loss, grad = nb.CrossEntropyLoss()(be.asarray(logits), labels)
    grad = be.to_host(grad)
    assert loss == pytest.approx((0.0 + BIG + 2 * BIG + LOG2 + LOG3) / n, rel=tol(be)["rtol"])
    expected_grad = (np.array([case[3] for case in CE_CASES]) - np.eye(3)[labels]) / n
    np.testing.assert_allclose(grad, expected_grad, **tol(be))


# ---------------------------------------------------------------------- binary cross-entropy
# (logit, target, loss = -(t log s + (1 - t) log(1 - s)) with s = sigmoid(z), s - t)
BCE_CASES = [
    (BIG, 0.0, BIG, 1.0),  # confident and wrong
    (-BIG, 1.0, BIG, -1.0),  # confident and wrong
    (BIG, 1.0, 0.0, 0.0),  # confident and right
    (-BIG, 0.0, 0.0, 0.0),  # confident and right
    (0.0, 1.0, LOG2, -0.5),  # undecided
    (BIG, 0.5, BIG / 2, 0.5),  # soft target
]


@pytest.mark.parametrize("z,t,expected,grad_expected", BCE_CASES)
def test_bce_with_logits_one_extreme_logit(any_backend, z, t, expected, grad_expected):
    be = any_backend
    loss, grad = nb.BCEWithLogitsLoss()(be.asarray(np.array([[z]])), np.array([[t]]))
    grad = be.to_host(grad)
    assert math.isfinite(loss)
    assert loss == pytest.approx(expected, rel=tol(be)["rtol"], abs=tol(be)["atol"])
    np.testing.assert_allclose(grad, [[grad_expected]], **tol(be))


def test_bce_with_logits_extreme_batch(any_backend):
    """Mean over the elements; dL/dz = (sigmoid(z) - t) / N."""
    be = any_backend
    z = np.array([[case[0]] for case in BCE_CASES])
    t = np.array([[case[1]] for case in BCE_CASES])
    n = len(BCE_CASES)
    loss, grad = nb.BCEWithLogitsLoss()(be.asarray(z), t)
    grad = be.to_host(grad)
    assert loss == pytest.approx(sum(case[2] for case in BCE_CASES) / n, rel=tol(be)["rtol"])
    np.testing.assert_allclose(grad, [[case[3] / n] for case in BCE_CASES], **tol(be))


# ---------------------------------------------------------------------- activations
@pytest.mark.parametrize(
    "kind,values,slopes",
    [
        ("sigmoid", [1.0, 0.0, 0.5], [0.0, 0.0, 0.25]),
        ("tanh", [1.0, -1.0, 0.0], [0.0, 0.0, 1.0]),
    ],
)
def test_saturating_activation_at_extremes(any_backend, kind, values, slopes):
    """f(+-1e4) is exactly saturated and f'(+-1e4) is exactly 0, not NaN."""
    be = any_backend
    layer = nb.Activation(kind, be)
    y = be.to_host(layer.forward(be.asarray(np.array([[BIG, -BIG, 0.0]])), training=True))
    np.testing.assert_array_equal(y, [values])
    dz = be.to_host(layer.backward(be.asarray(np.ones((1, 3)))))
    np.testing.assert_array_equal(dz, [slopes])


def test_sigmoid_accurate_for_moderate_values(any_backend):
    """sigmoid(z) = 1 / (1 + e^-z) to within rounding, deep into both tails: a formula such
    as 1 - 1 / (1 + e^z) would lose every digit at z = -30 (1 - (1 - 9e-14))."""
    be = any_backend
    if be.dtype_name == "float64":
        z, rtol = np.array([-700.0, -30.0, -5.0, -0.5, 0.0, 0.5, 5.0, 30.0]), 1e-12
    else:  # float32: exp(-80) ~ 2e-35 is still a normal number; 1e-6 is about 8 ulps
        z, rtol = np.array([-80.0, -30.0, -5.0, -0.5, 0.0, 0.5, 5.0, 30.0]), 1e-6
    y = be.to_host(nb.Activation("sigmoid", be).forward(be.asarray(z[None, :]), True))
    expected = 1.0 / (1.0 + np.exp(-z))  # float64 on the host; no overflow for |z| <= 700
    np.testing.assert_allclose(y[0], expected, rtol=rtol, atol=0)
