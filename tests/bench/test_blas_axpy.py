"""The one-pass ``y += alpha * x`` the NumPy backend's optimizers use (BLAS axpy through
NumPy's own library), against the two-pass NumPy expression. (It lives here, next to the
speed work it serves; the optimizer parity tests in tests/backend cover it too.)"""

from __future__ import annotations

import numpy as np
import pytest

from nnbench.backend._blas import MIN_SIZE, axpby, axpy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_axpy_matches_numpy_or_declines(dtype):
    rng = np.random.default_rng(0)
    n = MIN_SIZE + 1
    x, y = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    expected = y + dtype(-0.3) * x
    done = axpy(-0.3, x, y)
    if done:  # NumPy's wheel ships OpenBLAS with axpy: one fused pass (FMA rounding)
        np.testing.assert_allclose(
            y, expected, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-7
        )
    else:
        np.testing.assert_array_equal(y, y)  # declined: nothing to check but no crash


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_axpby_matches_numpy_or_declines(dtype):
    rng = np.random.default_rng(2)
    n = MIN_SIZE + 3
    x, y = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    expected = dtype(0.1) * x + dtype(0.9) * y
    if axpby(0.1, x, 0.9, y):
        np.testing.assert_allclose(
            y, expected, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-6
        )
    assert not axpby(0.0, x, 0.9, y) and not axpby(0.1, x, 0.0, y)  # BLAS may skip a read


def test_axpy_declines_what_it_cannot_do():
    n = 2 * MIN_SIZE
    x = np.ones(n, np.float32)
    assert not axpy(1.0, x, np.ones(n, np.float64))  # mixed dtypes
    assert not axpy(1.0, np.ones(2 * n, np.float32)[::2], np.ones(n, np.float32))  # strided
    assert not axpy(1.0, x.reshape(2, -1), np.ones((2, MIN_SIZE), np.float32))  # not 1-D
    assert not axpy(1.0, x, np.ones(n - 1, np.float32))  # shapes differ
    assert not axpy(1.0, x[:8], np.ones(8, np.float32))  # too small to pay
    frozen = np.ones(n, np.float32)
    frozen.flags.writeable = False
    assert not axpy(1.0, x, frozen)
    assert not axpy(1.0, [1.0] * n, x)  # not an ndarray
    np.testing.assert_array_equal(x, np.ones(n, np.float32))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optimizer_steps_on_buffers_large_enough_for_axpy(dtype):
    """The NumPy backend's SGD and Adam steps take the axpy path on big flat buffers and
    still match the reference backend (the parity tests in tests/backend use small ones)."""
    from nnbench.backend.base import Backend
    from nnbench.backend.numpy_backend import NumpyBackend

    ref, fast = Backend(np, dtype), NumpyBackend(dtype)
    rng = np.random.default_rng(1)
    n = MIN_SIZE + 7
    p0 = rng.standard_normal(n).astype(dtype)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    for name in ("sgd", "adam"):
        p_ref, p_fast = p0.copy(), p0.copy()
        m_ref, v_ref, m_fast, v_fast = (np.zeros(n, dtype) for _ in range(4))
        scratch = (np.empty(n, dtype), np.empty(n, dtype))
        for step in range(1, 4):
            g = rng.standard_normal(n).astype(dtype)
            for be, p, m, v in ((ref, p_ref, m_ref, v_ref), (fast, p_fast, m_fast, v_fast)):
                if name == "sgd":
                    be.sgd_step(
                        p,
                        g,
                        m,
                        lr=0.1,
                        momentum=0.9,
                        nesterov=False,
                        weight_decay=0.01,
                        first=step == 1,
                        scratch=scratch,
                    )
                else:
                    be.adam_step(
                        p,
                        g,
                        m,
                        v,
                        lr=0.01,
                        beta1=0.9,
                        beta2=0.999,
                        eps=1e-8,
                        weight_decay=0.0,
                        decoupled=False,
                        step=step,
                        scratch=scratch,
                    )
        np.testing.assert_allclose(p_fast, p_ref, rtol=rtol, atol=rtol)
