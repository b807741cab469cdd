"""What a benchmark ran on, as one flat record for its result and MLflow: the machine
(`nnbench.machine`: CPU, thread pools, BLAS kernel, the variables that change them) and the
versions of the libraries it measured. An ``OPENBLAS_CORETYPE`` override shows up both as a
variable and as the kernel OpenBLAS runs.
"""

from __future__ import annotations

import os
import platform
import sys

import numpy as np

from nnbench.machine import (
    OPENBLAS_OVERRIDES,
    THREAD_VARIABLES,
    blas_summary,
    cpu_model,
    thread_pools,
)


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
