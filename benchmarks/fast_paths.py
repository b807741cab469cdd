#!/usr/bin/env python
"""What each tier of the NumPy backend's fast paths buys: the same training step with the
tiers switched on and off, side by side.

    python benchmarks/fast_paths.py               # 7 rounds, B = 64 ... 1024, SGD, momentum, Adam
    python benchmarks/fast_paths.py --quick       # 2 rounds: a smoke run

The tiers, fastest first: the one-pass C kernels (`nnbench/backend/_native.c`; off with
``NNBENCH_NATIVE=0``, as on a machine without a compiler), one-pass BLAS ``axpy``/``axpby``
for the optimizer updates that the kernels do not cover (``NNBENCH_NO_BLAS_AXPY=1``), and
plain NumPy under both. Each variant runs in a worker process of its own (784-256-256-10,
float32, one thread, OpenBLAS's own choice of kernel), and the variants are interleaved
round by round (A B C D, then D C B A, ...). The table gives the median step time, the step
over its GEMM-only floor, and each variant's time over the default's (all tiers on), as the
median of the per-round ratios: above 1 is what switching that tier off costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnbench.bench.process import WorkerProcess  # noqa: E402
from nnbench.machine import OPENBLAS_OVERRIDES, THREAD_VARIABLES  # noqa: E402

SIZES = [784, 256, 256, 10]
# label -> environment switches
VARIANTS = {
    "all tiers": {},
    "no C": {"NNBENCH_NATIVE": "0"},
    "no BLAS axpy": {"NNBENCH_NO_BLAS_AXPY": "1"},
    "NumPy only": {"NNBENCH_NATIVE": "0", "NNBENCH_NO_BLAS_AXPY": "1"},
}
PAUSE_S = 0.02  # lets the previous worker's spinning threads go to sleep


def worker(switches: dict) -> WorkerProcess:
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_OVERRIDES}
    env.update({name: "1" for name in THREAD_VARIABLES}, **switches)
    for name in ("NNBENCH_NATIVE", "NNBENCH_NO_BLAS_AXPY"):
        if name not in switches:
            env.pop(name, None)
    process = WorkerProcess("nnbench.bench.worker", ["nnbench", "--threads", "1"], env=env)
    if process.first is None or "error" in process.first:
        raise SystemExit(f"fast_paths: a worker could not start: {process.first}")
    return process


def measure(workers: dict, cells: list, rounds: int, min_sample_s: float) -> dict:
    """(batch, optimizer) -> label -> {"rounds": [median ms per round], "floor": [...]}."""
    results = {cell: {label: {"rounds": [], "floor": []} for label in workers} for cell in cells}
    for r in range(rounds):
        for cell in cells:
            batch, optimizer = cell
            order = list(workers) if r % 2 == 0 else list(workers)[::-1]
            for label in order:
                time.sleep(PAUSE_S)
                answer = workers[label].request(
                    {
                        "op": "step",
                        "sizes": SIZES,
                        "batch_size": batch,
                        "optimizer": optimizer,
                        "samples": 3,
                        "warmup": 2 if batch >= 1024 else 5,
                        "min_sample_s": min_sample_s,
                        "floor": True,
                    }
                )
                if answer is None or "error" in answer:
                    raise SystemExit(f"fast_paths: {label} failed at {cell}: {answer}")
                results[cell][label]["rounds"].append(statistics.median(answer["step_ms"]))
                results[cell][label]["floor"].append(statistics.median(answer["floor_ms"]))
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return results


def table(results: dict) -> list[str]:
    labels = list(VARIANTS)
    head = f"{'B':>5} {'opt':<9}" + "".join(f"{label:>24}" for label in labels)
    lines = [
        "Step time, ms (median over rounds) / step over its GEMM floor / over 'all tiers':",
        head,
        "-" * len(head),
    ]
    for (batch, optimizer), by_label in results.items():
        base = by_label["all tiers"]["rounds"]
        cells = []
        for label in labels:
            times, floors = by_label[label]["rounds"], by_label[label]["floor"]
            ms = statistics.median(times)
            over_floor = statistics.median(t / f for t, f in zip(times, floors, strict=True))
            paired = statistics.median(t / b for t, b in zip(times, base, strict=True))
            cells.append(f"{ms:8.3f} {over_floor:5.2f}x {paired:6.3f}")
        lines.append(f"{batch:>5} {optimizer:<9}" + "".join(f"{c:>24}" for c in cells))
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="2 rounds, short samples")
    parser.add_argument("--batches", default="64,128,256,1024")
    parser.add_argument("--optimizers", default="sgd,momentum,adam")
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else args.rounds
    cells = [(int(b), o) for b in args.batches.split(",") for o in args.optimizers.split(",")]
    workers = {label: worker(switches) for label, switches in VARIANTS.items()}
    try:
        kernels = {label: w.first["env"].get("kernels") for label, w in workers.items()}
        print(f"MLP {'-'.join(map(str, SIZES))}, float32, 1 thread, {rounds} rounds")
        for label, text in kernels.items():
            print(f"  {label}: {text}")
        results = measure(workers, cells, rounds, 0.02 if args.quick else 0.05)
    finally:
        for w in workers.values():
            w.close()
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
