"""Memory probes: the process's peak resident set, Python-visible allocations per call, and
the backend's device pool."""

from __future__ import annotations

import resource
import sys
import tracemalloc
from collections.abc import Callable

MB = 1024 * 1024


def peak_host_mb() -> float:
    """Peak resident set size of this process's own address space so far, in MiB.

    Where /proc exists (Linux), the ``VmHWM`` line of /proc/self/status (in kB). Not
    ``getrusage``'s ru_maxrss there: Linux keeps it across fork and exec, so a process
    started by one with a larger peak (a benchmark worker started by a Hydra job with
    MLflow loaded) would report its parent's peak, not its own. Elsewhere ru_maxrss, which
    macOS reports in bytes and the BSDs in KiB.
    """
    peak_kb = _proc_status_kb("VmHWM")
    if peak_kb is not None:
        return peak_kb / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024


def _proc_status_kb(field: str, path: str = "/proc/self/status") -> int | None:
    """The ``<field>:  <n> kB`` value of /proc/self/status, None where there is none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


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
