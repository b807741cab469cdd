"""The step timer: synchronizes before every clock reading, calibrates, summarizes."""

from __future__ import annotations

import statistics

import pytest

from nnbench.bench.timing import Timing, time_steps


class Recorder:
    """A fake backend, step and clock writing one event log; the clock advances 1 ms per
    step, so every timing is known exactly."""

    def __init__(self, step_s: float = 0.001):
        self.events: list[str] = []
        self.now = 0.0
        self.step_s = step_s

    def synchronize(self):
        self.events.append("sync")

    def step(self):
        self.events.append("step")
        self.now += self.step_s

    def clock(self):
        self.events.append("clock")
        return self.now


def test_every_clock_reading_follows_a_synchronize():
    rec = Recorder()
    time_steps(rec.step, rec, samples=7, warmup=2, min_sample_s=0.003, clock=rec.clock)
    reads = [i for i, e in enumerate(rec.events) if e == "clock"]
    assert len(reads) == 2 * (1 + 7)  # the calibration block and 7 samples, start and stop
    assert all(rec.events[i - 1] == "sync" for i in reads)


def test_warmup_runs_untimed_before_the_first_clock_reading():
    rec = Recorder()
    time_steps(rec.step, rec, samples=1, warmup=4, min_sample_s=0.0, clock=rec.clock)
    first_read = rec.events.index("clock")
    assert rec.events[:first_read].count("step") == 4


def test_steps_per_sample_reach_the_minimum_sample_time():
    rec = Recorder(step_s=0.001)
    timing = time_steps(rec.step, rec, samples=7, warmup=0, min_sample_s=0.0105, clock=rec.clock)
    assert timing.steps_per_sample == 11  # ceil(10.5 ms / 1 ms)
    assert timing.samples_ms == pytest.approx([1.0] * 7)
    assert rec.events.count("step") == 1 + 7 * 11


def test_median_and_interquartile_spread():
    timing = Timing(samples_ms=[5.0, 1.0, 3.0, 2.0, 4.0, 100.0, 6.0])
    assert timing.median_ms == 4.0
    assert timing.min_ms == 1.0
    # inclusive quartiles of 1,2,3,4,5,6,100: q1 = 2.5, q3 = 5.5
    assert timing.spread_ms == pytest.approx(3.0)
    assert timing.median_ms == statistics.median(timing.samples_ms)


def test_pooling_rounds():
    a, b = Timing([1.0, 2.0]), Timing([3.0])
    a.extend(b)
    assert a.samples_ms == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("samples", [0, -1, 2.5, True])
def test_bad_sample_count(samples):
    rec = Recorder()
    with pytest.raises(ValueError, match=r"^Invalid samples: "):
        time_steps(rec.step, rec, samples=samples, clock=rec.clock)
