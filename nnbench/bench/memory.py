"""Memory probes: the process's peak resident set, Python-visible allocations per call, and
the backend's device pool."""

from __future__ import annotations

import resource
import sys
import tracemalloc
from collections.abc import Callable

MB = 1024 * 1024


def peak_host_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``getrusage``'s ru_maxrss,
    which Linux reports in KiB and macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024


def traced_peak_bytes(fn: Callable[[], object], repeats: int = 1) -> int:
    """Peak bytes allocated (and traced: Python objects and NumPy buffers) while calling
    ``fn`` ``repeats`` times, above what was allocated before. Tracing slows the calls down:
    measure this apart from any timing."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(repeats):
            fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return max(0, peak - base)


def device_mb(backend) -> float | None:
    """Bytes held by the backend's allocator in MiB, or None where it reports nothing."""
    used = backend.memory_in_use()
    return None if used is None else used / MB
