"""Memory probes and the environment record."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

import nnbench as nb
from nnbench.bench.env import environment
from nnbench.bench.memory import _proc_status_kb, device_mb, peak_host_mb, traced_peak_bytes
from nnbench.machine import blas_summary


def test_traced_peak_sees_a_numpy_allocation():
    size = 1 << 20
    peak = traced_peak_bytes(lambda: np.ones(size, dtype=np.uint8))
    assert size <= peak < 2 * size


def test_traced_peak_of_an_in_place_operation_is_small():
    a = np.ones(1 << 18)
    assert traced_peak_bytes(lambda: np.multiply(a, 2.0, out=a)) < 4096


def test_peak_host_memory_is_positive_and_monotone():
    first = peak_host_mb()
    assert first > 0
    np.ones(1 << 22).sum()
    assert peak_host_mb() >= first


def test_peak_host_memory_is_the_process_own_not_its_parents():
    """A child started after this process allocated 256 MiB reports its own, smaller peak
    (getrusage's ru_maxrss on Linux would carry this process's peak into the child)."""
    block = np.ones(32 << 20)  # 256 MiB, every page touched
    parent = peak_host_mb()
    del block
    code = "from nnbench.bench.memory import peak_host_mb; print(peak_host_mb())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    child = float(out.stdout)
    assert parent >= 256
    assert 0 < child < parent - 128, (child, parent)


def test_proc_status_field_is_read_in_kb_and_missing_is_none(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t  9000 kB\nVmHWM:\t   1234 kB\n")
    assert _proc_status_kb("VmHWM", str(status)) == 1234
    assert _proc_status_kb("VmSwap", str(status)) is None
    assert _proc_status_kb("VmHWM", str(tmp_path / "absent")) is None


def test_device_memory_is_none_on_the_cpu():
    assert device_mb(nb.get_backend("numpy")) is None


def test_blas_summary_prefers_numpys_library():
    pools = [
        {
            "user_api": "openmp",
            "internal_api": "openmp",
            "version": None,
            "num_threads": 4,
            "architecture": None,
            "filepath": "/x/torch/lib/libgomp.so",
        },
        {
            "user_api": "blas",
            "internal_api": "openblas",
            "version": "0.3.30",
            "num_threads": 2,
            "architecture": "Haswell",
            "filepath": "/x/scipy.libs/libscipy_openblas.so",
        },
        {
            "user_api": "blas",
            "internal_api": "openblas",
            "version": "0.3.31",
            "num_threads": 1,
            "architecture": "SkylakeX",
            "filepath": "/x/numpy.libs/libscipy_openblas64_.so",
        },
    ]
    assert blas_summary(pools) == {
        "blas": "openblas 0.3.31",
        "blas_threads": 1,
        "blas_kernel": "SkylakeX",
        "blas_libraries": 2,
    }
    assert blas_summary([])["blas"] == "unknown"


def test_environment_names_cpu_blas_and_overrides():
    env = environment()
    for key in (
        "cpu",
        "cpu_count",
        "numpy",
        "blas",
        "blas_threads",
        "blas_kernel",
        "env.OPENBLAS_CORETYPE",
        "env.OPENBLAS_L2_SIZE",
    ):
        assert key in env
    assert env["numpy"] == np.__version__
