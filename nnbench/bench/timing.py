"""Steady-state timing of a repeated step: warm-up, calibrated samples, median and spread.

Each sample times ``n`` consecutive steps between two clock readings and reports the mean
step time of that block; ``backend.synchronize()`` runs right before every clock reading,
so queued device work is inside the block it belongs to (a no-op on the CPU). ``n`` is
chosen once, after warm-up, so that a sample lasts at least ``min_sample_s``: short steps
are not dominated by the clock's resolution and call overhead.

The summary is the median over samples (robust to the odd slow sample on a shared machine)
and the interquartile range as the spread.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nnbench.errors import invalid

MIN_SAMPLES = 7


@dataclass
class Timing:
    """Per-step times in milliseconds: one entry per sample of ``steps_per_sample`` steps."""

    samples_ms: list[float] = field(default_factory=list)
    steps_per_sample: int = 1

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def spread_ms(self) -> float:
        """Interquartile range (75th minus 25th percentile) of the samples."""
        if len(self.samples_ms) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples_ms, n=4, method="inclusive")
        return q3 - q1

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    def extend(self, other: Timing) -> None:
        """Pool the samples of another run of the same step (interleaved rounds)."""
        self.samples_ms.extend(other.samples_ms)


def time_steps(
    step: Callable[[], object],
    backend,
    *,
    samples: int = MIN_SAMPLES,
    warmup: int = 5,
    min_sample_s: float = 0.05,
    max_steps_per_sample: int = 10_000,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Time ``step()`` in steady state; ``backend`` is anything with ``synchronize()``.

    Runs ``warmup`` untimed steps, times one more to choose the steps per sample, then takes
    ``samples`` samples (at least 7 for a result worth quoting; fewer are allowed for smoke
    runs).
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise invalid("samples", samples, "must be an integer >= 1")
    for _ in range(max(warmup, 0)):
        step()
    one = _block(step, backend, 1, clock)
    n = min(max_steps_per_sample, max(1, math.ceil(min_sample_s / max(one, 1e-9))))
    timing = Timing(steps_per_sample=n)
    for _ in range(samples):
        timing.samples_ms.append(_block(step, backend, n, clock) / n * 1e3)
    return timing


def _block(step, backend, n: int, clock) -> float:
    """Seconds for ``n`` steps, synchronized before each clock reading."""
    backend.synchronize()
    start = clock()
    for _ in range(n):
        step()
    backend.synchronize()
    return clock() - start


class HostSync:
    """A stand-in backend for code that runs synchronously on the host (CPU references)."""

    name = "host"

    def synchronize(self) -> None:
        """Nothing is queued on the host."""
