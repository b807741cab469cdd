"""The C kernels of the NumPy backend (`nnbench.backend._native`): built once per machine in
a private cache folder, used where they load, and never needed: every way of failing leaves
the NumPy path, which trains to the same numbers.

The kernels' numbers are checked against the reference backend with the other fast paths
(`test_backends.py`, pair ``numpy``; ``numpy-plain`` is the NumPy-only path)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnbench as nb
from nnbench.backend import NumpyBackend, _native

ROOT = Path(__file__).resolve().parents[2]
needs_compiler = pytest.mark.skipif(
    shutil.which(os.environ.get("CC") or "cc") is None, reason="no C compiler here (cc, $CC)"
)

# A child process reports the kernels' status and what a few training steps gave.
PROBE = """
import json, numpy as np, nnbench as nb
from nnbench.backend import _native
be = nb.get_backend("numpy", "float64")
model = nb.MLP(6, [16, 16], 3, activation="leaky_relu", seed=0, backend=be)
opt = nb.Adam(model, lr=0.01)
rng = np.random.default_rng(0)
x, y = rng.standard_normal((40, 6)), rng.integers(0, 3, 40)
losses = [nb.train_step(model, nb.CrossEntropyLoss(), opt, x, y) for _ in range(5)]
print(json.dumps({"status": _native.status(), "native": be._native is not None,
                  "losses": losses}))
"""


def probe(tmp_path, **env) -> dict:
    environment = {**os.environ, "NNBENCH_CACHE_DIR": str(tmp_path / "cache"), **env}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@needs_compiler
def test_kernels_are_built_once_into_a_private_folder_and_serve_the_backend(tmp_path):
    first = probe(tmp_path)
    assert first["status"].startswith("on (") and first["native"]
    folder = tmp_path / "cache"
    assert folder.stat().st_mode & 0o777 == 0o700
    libraries = sorted(folder.iterdir())
    assert [p.suffix for p in libraries] == [".so"]  # no temporary file left behind
    built = libraries[0].stat().st_mtime_ns
    second = probe(tmp_path)
    assert second["native"] and libraries[0].stat().st_mtime_ns == built  # loaded, not rebuilt
    assert second["losses"] == first["losses"]


@needs_compiler
@pytest.mark.parametrize(
    "env, reason",
    [
        ({"NNBENCH_NATIVE": "0"}, "off: NNBENCH_NATIVE=0"),
        ({"CC": "nnbench-no-such-compiler"}, "off: no C compiler"),
        ({"CC": "false"}, "could not compile"),
    ],
    ids=["disabled", "no-compiler", "compile-fails"],
)
def test_without_the_kernels_numpy_trains_to_the_same_losses(tmp_path, env, reason):
    """Switched off, no compiler, a compiler that fails: the NumPy path, the same training
    (float64: the kernels round as the NumPy path does, up to summation order)."""
    with_kernels = probe(tmp_path / "with")
    without = probe(tmp_path / "without", **env)
    assert reason in without["status"] and not without["native"]
    np.testing.assert_allclose(without["losses"], with_kernels["losses"], rtol=1e-12)
    leftovers = list((tmp_path / "without" / "cache").glob("*")) if "CC" in env else []
    assert leftovers == []  # a failed compile leaves nothing behind


@needs_compiler
def test_a_damaged_library_in_the_cache_is_built_again(tmp_path):
    first = probe(tmp_path)
    [library] = (tmp_path / "cache").iterdir()
    library.write_bytes(b"not a shared library")
    again = probe(tmp_path)
    assert again["native"] and again["losses"] == first["losses"]
    assert library.read_bytes().startswith(b"\x7fELF")


@needs_compiler
def test_a_cache_folder_others_can_write_is_not_loaded_from(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    folder.chmod(0o777)
    result = probe(tmp_path)
    assert not result["native"]
    assert "not private to this user" in result["status"]


@needs_compiler
def test_parallel_processes_building_at_once_all_load_one_library(tmp_path):
    """Sweep jobs starting together on a fresh machine: each compiles to a temporary file
    and renames it into place; all load, nothing half-written stays."""
    env = {**os.environ, "NNBENCH_CACHE_DIR": str(tmp_path / "cache")}
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", PROBE],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for _ in range(3)
    ]
    results = [json.loads(job.communicate(timeout=300)[0]) for job in jobs]
    assert all(r["native"] for r in results)
    assert len({json.dumps(r["losses"]) for r in results}) == 1
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".so"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("batch", [16, 200])
def test_training_with_and_without_the_kernels_agrees(dtype, activation, optimizer, batch):
    """Twenty steps of the same model on the same batches, row- and column-major buffers
    (batch 200 and 16): the parameters agree to rounding."""
    backends = [NumpyBackend(dtype), NumpyBackend(dtype, native=False)]
    if backends[0]._native is None:
        pytest.skip(f"the C kernels are unavailable here: {_native.status()}")
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((batch, 12)), rng.integers(0, 4, batch)
    params = []
    for be in backends:
        model = nb.MLP(12, [32, 24], 4, activation=activation, seed=1, backend=be)
        opt = {
            "sgd": lambda m: nb.SGD(m, lr=0.1),
            "momentum": lambda m: nb.SGD(m, lr=0.05, momentum=0.9),
            "adam": lambda m: nb.Adam(m, lr=0.01),
        }[optimizer](model)
        for _ in range(20):
            nb.train_step(model, nb.CrossEntropyLoss(), opt, x, y)
        params.append(be.to_host(model.params))
    rtol = {"float32": 2e-4, "float64": 1e-11}[dtype]
    np.testing.assert_allclose(params[0], params[1], rtol=rtol, atol=rtol)


def test_non_finite_values_propagate_through_the_kernels():
    """Divergence is detected from a non-finite loss: the fused paths keep NaN as NaN and
    give relu(-inf) = 0, as NumPy's maximum does."""
    be = NumpyBackend("float32")
    if be._native is None:
        pytest.skip(f"the C kernels are unavailable here: {_native.status()}")
    out = np.zeros((3, 300), np.float32)  # row-major: more than 128 rows is not needed here
    out[0, :3] = [np.nan, -np.inf, np.inf]
    x = np.zeros((3, 2), np.float32)
    w, b = np.zeros((300, 2), np.float32), np.zeros(300, np.float32)
    w[:3, 0] = 1.0
    x[0, 0] = 0.0
    y = be.linear(x, w, b, out=out, activation="relu")
    assert y[0, 0] == 0.0  # the product overwrote out: relu(0) = 0
    b[:3] = [np.nan, -np.inf, np.inf]
    y = be.linear(x, w, b, out=out, activation="relu")
    assert np.isnan(y[0, 0]) and y[0, 1] == 0.0 and y[0, 2] == np.inf
    logits = np.array([[np.nan, 0.0, 1.0], [0.0, 1.0, 2.0]], np.float32)
    loss, grad = be.cross_entropy(logits, np.array([1, 2]))
    assert np.isnan(loss) and np.isnan(grad[0]).all() and np.isfinite(grad[1]).all()


@needs_compiler
def test_a_library_built_for_another_machine_serves_one_without_a_compiler(tmp_path):
    """The Docker image's way: --build-kernels where a compiler is, NNBENCH_NATIVE_LIBRARY
    where none is. A library built from another source, or that others may replace, is
    refused."""
    build = [sys.executable, "-m", "nnbench.backend", "--build-kernels", str(tmp_path / "lib")]
    done = subprocess.run(build, capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    library = tmp_path / "lib" / _native.LIBRARY_NAME
    assert done.stdout.strip() == str(library)
    assert (
        stat.S_IMODE(library.stat().st_mode) == 0o755
    )  # every user loads it, only its owner writes
    no_compiler = {"CC": "nnbench-no-such-compiler", "NNBENCH_NATIVE_LIBRARY": str(library)}
    prebuilt = probe(tmp_path / "prebuilt", **no_compiler)
    assert prebuilt["native"] and prebuilt["status"] == f"on (prebuilt {library})"
    assert not (tmp_path / "prebuilt" / "cache").exists()  # nothing compiled, nothing cached
    np.testing.assert_allclose(prebuilt["losses"], probe(tmp_path / "local")["losses"], rtol=0)

    stale = tmp_path / "stale.so"
    compiler = shutil.which(os.environ.get("CC") or "cc")
    flags = [*_native.FLAGS, '-DNNBENCH_DIGEST="another source"', "-o", str(stale)]
    subprocess.run([compiler, *flags, str(_native.SOURCE), "-lm"], check=True)
    refused = probe(tmp_path / "stale", NNBENCH_NATIVE_LIBRARY=str(stale))
    assert not refused["native"] and "was not built from this _native.c" in refused["status"]
    library.chmod(0o777)
    refused = probe(tmp_path / "open", NNBENCH_NATIVE_LIBRARY=str(library))
    assert not refused["native"] and "is writable by others" in refused["status"]


def test_building_without_a_compiler_says_so_in_one_line(tmp_path):
    build = [sys.executable, "-m", "nnbench.backend", "--build-kernels", str(tmp_path)]
    env = {**os.environ, "CC": "nnbench-no-such-compiler"}
    done = subprocess.run(build, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert done.returncode == 1
    assert done.stderr == (
        "nnbench: cannot build the CPU kernels: no C compiler "
        "(set CC, or install one: apt-get install gcc)\n"
    )


def test_addresses_are_remembered_only_while_the_array_lives():
    a = np.zeros(8, np.float32)
    assert _native.address(a) == a.ctypes.data
    assert _native.address(a[2:]) == a.ctypes.data + 8  # a new view: its own address
    for _ in range(3):  # ids of dead arrays are reused by new ones: never a stale address
        b = np.ones(5, np.float64)
        assert _native.address(b) == b.ctypes.data
        del b


def test_labels_out_of_range_never_reach_the_kernel():
    """Labels are checked once per dataset (`Loss.prepare`); a direct call with a label out
    of range gets what the NumPy path does (IndexError past the end), never a read or write
    past the logits."""
    be, plain = NumpyBackend("float32"), NumpyBackend("float32", native=False)
    logits = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    with pytest.raises(IndexError):
        be.cross_entropy(logits, np.array([0, 4, 1]))
    for labels in ([0, -1, 1], [0, 3, 1]):
        got, want = (b.cross_entropy(logits, np.array(labels)) for b in (be, plain))
        assert got[0] == pytest.approx(want[0], rel=1e-6)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
