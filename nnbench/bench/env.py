"""What a benchmark ran on: CPU model, thread pools (BLAS and OpenMP), library versions.

Thread pools are read with threadpoolctl, which also names the BLAS kernel that runs
(OpenBLAS's ``architecture``): an ``OPENBLAS_CORETYPE`` override shows up there.
"""

from __future__ import annotations

import os
import platform
import sys

import numpy as np

# Set on some machines for older OpenBLAS builds; they change which kernel a current NumPy
# runs, so a benchmark records them.
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def thread_pools() -> list[dict]:
    """threadpoolctl's view of the loaded pools: [{'user_api', 'internal_api', 'version',
    'num_threads', 'architecture', 'filepath'}, ...]; empty without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "version", "num_threads", "architecture", "filepath")
    return [{k: pool.get(k) for k in keys} for pool in threadpool_info()]


def blas_summary(pools: list[dict] | None = None) -> dict:
    """The BLAS NumPy uses: library, version, kernel and threads (the first BLAS pool, which
    is NumPy's when NumPy was imported first), and how many BLAS libraries are loaded."""
    pools = thread_pools() if pools is None else pools
    blas = [p for p in pools if p["user_api"] == "blas"]
    numpy_blas = next((p for p in blas if "numpy" in str(p["filepath"])), blas[0] if blas else None)
    if numpy_blas is None:
        return {"blas": "unknown", "blas_threads": None, "blas_kernel": None, "blas_libraries": 0}
    return {
        "blas": f"{numpy_blas['internal_api']} {numpy_blas['version']}",
        "blas_threads": numpy_blas["num_threads"],
        "blas_kernel": numpy_blas.get("architecture"),
        "blas_libraries": len(blas),
    }


def environment() -> dict:
    """A flat record of the machine and libraries, for a benchmark's result and MLflow."""
    pools = thread_pools()
    record = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        **blas_summary(pools),
        "openmp_threads": next(
            (p["num_threads"] for p in pools if p["user_api"] == "openmp"), None
        ),
    }
    for name in (*OPENBLAS_OVERRIDES, *THREAD_VARIABLES):
        record[f"env.{name}"] = os.environ.get(name, "")
    for module in ("torch", "sklearn", "cupy"):
        if module in sys.modules:
            record[module] = getattr(sys.modules[module], "__version__", "unknown")
    return record


def limit_threads(threads: int | None):
    """Limit every loaded BLAS/OpenMP pool to ``threads`` (call after all imports). Returns
    the threadpoolctl controller (keep it alive), or None when ``threads`` is None."""
    if threads is None:
        return None
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)
