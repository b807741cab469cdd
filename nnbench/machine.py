"""The machine a run or a benchmark ran on, as plain values: the CPU, the thread pools that
NumPy's BLAS (and any OpenMP runtime) run with, and the environment variables that change
either. One home for both records that describe a machine: a run's environment manifest
(`nnbench.manifest`) and a benchmark's result (`nnbench.bench.env`).
"""

from __future__ import annotations

import os
import platform

# Set on some machines for older OpenBLAS builds; they change which kernel a current NumPy
# runs, so every record keeps them.
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Everything in the environment that changes how fast, or on which device, a step runs.
MACHINE_VARIABLES = (*THREAD_VARIABLES, *OPENBLAS_OVERRIDES, "CUDA_VISIBLE_DEVICES")
POOL_KEYS = ("user_api", "internal_api", "version", "num_threads", "architecture", "filepath")


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


def machine_variables() -> dict[str, str]:
    """The `MACHINE_VARIABLES` that are set, with their values."""
    return {name: os.environ[name] for name in MACHINE_VARIABLES if name in os.environ}


def thread_pools(controller=None) -> list[dict]:
    """The loaded thread pools as threadpoolctl sees them (`POOL_KEYS` each): from
    ``controller`` (a ThreadpoolController made earlier: no new scan of the loaded
    libraries, 15-20 ms), else from a scan now; empty without threadpoolctl."""
    if controller is None:
        try:
            from threadpoolctl import threadpool_info
        except ImportError:
            return []
        pools = threadpool_info()
    else:
        pools = controller.info()
    return [{key: pool.get(key) for key in POOL_KEYS} for pool in pools]


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


def limit_threads(threads: int | None):
    """Limit every loaded BLAS/OpenMP pool to ``threads`` (call after all imports). Returns
    the threadpoolctl controller (keep it alive), or None when ``threads`` is None."""
    if threads is None:
        return None
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)
