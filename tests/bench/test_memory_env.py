"""Memory probes and the environment record."""

from __future__ import annotations

import numpy as np

import nnbench as nb
from nnbench.bench.env import blas_summary, environment
from nnbench.bench.memory import device_mb, peak_host_mb, traced_peak_bytes


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
