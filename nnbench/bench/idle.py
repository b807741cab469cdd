"""Whether the machine is quiet enough to time on: the CPUs' busy fraction from /proc/stat,
and a bounded wait for it to drop (the benchmarks' own workers are idle while it is read, so
it measures everyone else)."""

from __future__ import annotations

import time


def cpu_busy(interval: float = 0.3) -> float | None:
    """Fraction of all CPUs busy over ``interval`` seconds (Linux /proc/stat), else None."""

    def read():
        with open("/proc/stat", encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    try:
        total0, idle0 = read()
        time.sleep(interval)
        total1, idle1 = read()
    except OSError:
        return None
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_idle(max_wait: float, threshold: float = 0.10) -> bool:
    """Wait up to ``max_wait`` seconds for the machine to be idle; True if it is."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = cpu_busy()
        if busy is None or busy < threshold:
            return True
        if time.monotonic() >= deadline:
            return False
