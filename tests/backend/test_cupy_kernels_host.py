"""CupyBackend's kernels without a GPU: the CUDA sources compile (nvcc, for the H100's sm_90),
and their math, built for the host with the C++ compiler, gives the reference `Backend`'s
numbers. On a GPU, tests/gpu compares the kernels themselves; these tests catch a wrong
formula or a wrong index on any machine with a compiler, and skip (with the reason) without.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from nnbench.backend._cupy_kernels import ACTIVATION_CODES, ELEMENTWISE, RAW_FUNCTIONS
from nnbench.backend.base import ACTIVATIONS, STEP_STATS, Backend
from tests.backend import philox_reference
from tests.backend.kernel_host import HostKernels, compile_device, host_compiler

RTOL = {"float32": 1e-5, "float64": 1e-12}


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    if host_compiler() is None:
        pytest.skip("no host C++ compiler (g++ or clang++) to build the kernels' math")
    return HostKernels(tmp_path_factory.mktemp("host_kernels"))


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


def close(actual, expected, dtype):
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed here")
def test_device_sources_compile_for_sm90(tmp_path):
    """Every kernel CupyBackend builds compiles as CUDA C++ (NVRTC compiles the same code)."""
    result = compile_device(tmp_path)
    assert result.returncode == 0, result.stderr
    ptx = (tmp_path / "kernels.ptx").read_text()
    for name in RAW_FUNCTIONS:
        assert f".entry {name}(" in ptx
    for name in ELEMENTWISE:
        assert f".entry k_{name}_float32(" in ptx


def test_philox_known_answers(host):
    """Random123's known-answer vectors for Philox4x32-10, host kernel and NumPy reference."""
    cases = [
        ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
        ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
        (
            [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
            [0xA4093822, 0x299F31D0],
            [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
        ),
    ]
    for counter, key, expected in cases:
        assert host.philox(counter, key) == expected
        assert [int(w) for w in philox_reference.philox(*counter, *key)] == expected


def activation_input(dtype):
    rng = np.random.default_rng(7)
    z = 4.0 * rng.standard_normal((6, 8))
    z[0, :] = [-1000.0, -60.0, -1.0, -0.0, 0.0, 1.0, 60.0, 1000.0]
    return z.astype(dtype)


@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activation_and_backward(host, dtype, kind):
    ref = Backend(np, dtype)
    z = activation_input(dtype)
    y = np.empty_like(z)
    host.run("activation", dtype, z, ACTIVATION_CODES[kind], y)
    close(y, ref.activation(kind, z), dtype)
    dy = np.random.default_rng(3).standard_normal(z.shape).astype(dtype)
    dz = np.empty_like(z)
    host.run("activation_grad", dtype, y, dy, ACTIVATION_CODES[kind], dz)
    close(dz, ref.activation_backward(kind, y, dy), dtype)


def test_bias_add(host, dtype):
    rng = np.random.default_rng(0)
    y, b = rng.standard_normal((5, 3)).astype(dtype), rng.standard_normal(3).astype(dtype)
    expected = y + b
    host.run("bias_add", dtype, b, 3, y)
    close(y, expected, dtype)


@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_bias_and_activation_in_one_pass(host, dtype, kind):
    ref = Backend(np, dtype)
    z = activation_input(dtype)
    b = np.random.default_rng(1).standard_normal(z.shape[1]).astype(dtype)
    y = z.copy()
    host.run("bias_activation", dtype, b, z.shape[1], ACTIVATION_CODES[kind], y)
    close(y, ref.activation(kind, z + b), dtype)


@pytest.mark.parametrize("counter", [0, 1, 2**33 + 5])
def test_uniform_and_dropout_mask_follow_the_philox_reference(host, dtype, counter):
    seed = 0x1234_5678_9ABC
    state = np.array([seed, counter], dtype=np.uint64)
    u = np.empty(1000, dtype)
    host.run("uniform", dtype, state, u)
    np.testing.assert_array_equal(u, philox_reference.uniform(seed, counter, 1000, dtype))
    assert 0.0 <= u.min() and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.05
    mask = np.empty((40, 25), dtype)
    host.run("dropout_mask", dtype, state, 0.3, 1.0 / 0.7, mask)
    expected = philox_reference.dropout_mask(seed, counter, 0.3, (40, 25), dtype)
    np.testing.assert_array_equal(mask, expected)
    assert abs(np.mean(mask > 0) - 0.7) < 0.05


SGD = [
    dict(momentum=0.0, nesterov=False, weight_decay=0.0),
    dict(momentum=0.0, nesterov=False, weight_decay=0.01),
    dict(momentum=0.9, nesterov=False, weight_decay=0.01),
    dict(momentum=0.9, nesterov=True, weight_decay=0.0),
]


@pytest.mark.parametrize("config", SGD, ids=lambda c: "-".join(map(str, c.values())))
def test_sgd_matches_reference(host, dtype, config):
    ref = Backend(np, dtype)
    rng = np.random.default_rng(1)
    p = rng.standard_normal(17).astype(dtype)
    buf, kp, kbuf = np.zeros(17, dtype), p.copy(), np.zeros(17, dtype)
    gate = np.ones(1)
    for step in range(1, 4):
        g = rng.standard_normal(17).astype(dtype)
        ref.sgd_step(p, g, buf, lr=0.1, first=step == 1, scratch=None, **config)
        if config["momentum"]:
            args = (0.1, config["momentum"], config["weight_decay"], int(config["nesterov"]))
            host.run("sgd_momentum", dtype, g, gate, *args, int(step == 1), kp, kbuf)
            close(kbuf, buf, dtype)
        else:
            host.run("sgd", dtype, g, gate, 0.1, config["weight_decay"], kp)
        close(kp, p, dtype)
    before = kp.copy()
    host.run("sgd", dtype, np.ones(17, dtype), np.zeros(1), 0.1, 0.0, kp)  # gate 0: no step
    np.testing.assert_array_equal(kp, before)


@pytest.mark.parametrize("weight_decay, decoupled", [(0.0, 0), (0.1, 0), (0.1, 1)])
@pytest.mark.parametrize("device_step", [0, 1])
def test_adam_matches_reference(host, dtype, weight_decay, decoupled, device_step):
    ref = Backend(np, dtype)
    rng = np.random.default_rng(2)
    p = rng.standard_normal(13).astype(dtype)
    m, v = np.zeros(13, dtype), np.zeros(13, dtype)
    kp, km, kv = p.copy(), m.copy(), v.copy()
    hyper = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=weight_decay)
    for step in range(1, 5):
        g = rng.standard_normal(13).astype(dtype)
        ref.adam_step(p, g, m, v, decoupled=bool(decoupled), step=step, scratch=None, **hyper)
        counter = np.array([float(step)])  # what CupyBackend has added on the device
        scalars = (0.01, 0.9, 0.999, 1e-8, weight_decay, decoupled)
        t = 0.0 if device_step else float(step)
        host.run("adam", dtype, g, np.ones(1), counter, t, device_step, *scalars, kp, km, kv)
        for got, want in ((kp, p), (km, m), (kv, v)):
            close(got, want, dtype)


def test_cross_entropy_rows_match_reference(host, dtype):
    ref = Backend(np, dtype)
    rng = np.random.default_rng(4)
    for scale in (1.0, 1000.0):
        logits = (scale * rng.standard_normal((9, 5))).astype(dtype)
        labels = rng.integers(0, 5, size=9)
        grad = np.empty_like(logits)
        loss = host.cross_entropy(logits, labels, grad)
        ref_loss, ref_grad = ref.cross_entropy(logits, labels)
        assert loss == pytest.approx(ref_loss, rel=RTOL[dtype], abs=RTOL[dtype])
        close(grad, ref_grad, dtype)
    bad = np.array([[0.0, np.inf, 1.0], [np.nan, 0.0, 0.0]], dtype)
    assert np.isnan(host.cross_entropy(bad, np.array([0, 1]), np.empty_like(bad)))


def test_count_correct_rows_match_reference(host, dtype):
    """Ties go to the first index; a NaN counts as the largest, as in numpy.argmax."""
    ref = Backend(np, dtype)
    rng = np.random.default_rng(5)
    logits = rng.integers(0, 3, size=(40, 4)).astype(dtype)
    logits[0] = [np.nan, 5.0, 1.0, 0.0]
    logits[1] = [0.0, 5.0, np.nan, np.nan]
    labels = rng.integers(0, 4, size=40)
    labels[:2] = [0, 2]
    assert host.count_correct(logits, labels) == ref.count_correct(logits, labels)


def test_record_matches_reference(host):
    ref = Backend(np, "float64")
    expected, got = np.zeros(len(STEP_STATS)), np.zeros(len(STEP_STATS))
    expected[0] = got[0] = 1.0
    for loss, correct, rows in [(2.5, 3.0, 8), (1.5, 5.0, 8), (np.inf, 1.0, 8), (0.5, 8.0, 3)]:
        ref.record_step(expected, np.array([loss]), np.array([correct]), rows)
        host.record(got, loss, correct, float(rows))
    np.testing.assert_array_equal(got, expected)
    assert dict(zip(STEP_STATS, got, strict=True)) == {
        "ok": 0.0, "loss_sum": 32.0, "correct": 8.0, "seen": 16.0, "steps": 4.0,
        "diverged_at": 3.0, "applied": 2.0,
    }  # fmt: skip
