"""Stacked training timed step by step: nnbench's stack, its batched-product floor, a solo
nnbench step and PyTorch's torch.func ensemble, each framework in a worker process of its
own (`nnbench.bench.stack_worker`), interleaved round by round (A B C D, then D C B A).
Used by `benchmarks/sweep_speed.py` (CPU) and `nnbench.bench.gpu_stack_table` (CUDA).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from nnbench.bench.process import WorkerProcess
from nnbench.machine import OPENBLAS_OVERRIDES, THREAD_VARIABLES

DIGITS = (64, 64, 64, 10)
# (label, worker framework, variant)
ENTRIES = (
    ("stack", "nnbench", "stack"),
    ("floor", "nnbench", "floor"),
    ("solo", "nnbench", "solo"),
    ("torch.func", "torch-func", "stack"),
)
PAUSE_S = 0.02  # lets the previous worker's spinning threads go to sleep


class StackWorkerProcess(WorkerProcess):
    """A `nnbench.bench.stack_worker`; one that cannot run here answers with why."""

    def __init__(self, framework: str, threads: int | None, device: str = "cpu"):
        env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_OVERRIDES}
        if threads is not None:
            env.update({name: str(threads) for name in THREAD_VARIABLES})
        args = [framework, "--device", device]
        args += ["--threads", str(threads)] if threads is not None else []
        super().__init__("nnbench.bench.stack_worker", args, env=env)
        first = self.first or {"unavailable": f"worker exited ({self.proc.wait()})"}
        self.unavailable, self.env = first.get("unavailable"), first.get("env", {})

    def ask(self, **request) -> dict:
        if self.unavailable:
            return {"unavailable": self.unavailable}
        answer = self.request(request)
        return answer or {"error": f"worker exited with status {self.proc.wait()}"}


def start_workers(threads: int | None, device: str = "cpu") -> dict:
    return {fw: StackWorkerProcess(fw, threads, device) for fw in ("nnbench", "torch-func")}


def close_workers(workers: dict) -> None:
    for worker in workers.values():
        worker.close(timeout=60)


def measure(workers, cells, rounds: int, options: dict, entries=ENTRIES, log=sys.stderr):
    """cells: [(optimizer, members)] -> ({cell: {label: [ms per round]}}, {label: why}).

    A variant that cannot run is left out and said why (its error prefixed ``error:``); the
    others go on."""
    results = {cell: {label: [] for label, _, _ in entries} for cell in cells}
    notes: dict = {}
    for r in range(rounds):
        for cell in cells:
            optimizer, members = cell
            order = entries if r % 2 == 0 else entries[::-1]
            for label, framework, variant in order:
                if label in notes:
                    continue
                time.sleep(PAUSE_S)
                answer = workers[framework].ask(
                    op="step",
                    variant=variant,
                    members=members,
                    sizes=list(DIGITS),
                    batch_size=options["batch_size"],
                    optimizer=optimizer,
                    samples=options["samples"],
                    warmup=options["warmup"],
                    min_sample_s=options["min_sample_s"],
                )
                if "step_ms" not in answer:
                    notes[label] = answer.get("unavailable") or f"error: {answer.get('error')}"
                    continue
                results[cell][label].append(statistics.median(answer["step_ms"]))
        print(f"  stacked steps: round {r + 1}/{rounds} done", file=log, flush=True)
    return results, notes
