#!/usr/bin/env python
"""Step-time ratios of nnbench (NumPy backend) against PyTorch CPU eager and scikit-learn,
measured side by side on this machine.

    python benchmarks/compare.py            # the full table (several minutes)
    python benchmarks/compare.py --quick    # a short smoke run

Setup: float32, MLP 784-256-256-10 with ReLU and softmax cross-entropy on synthetic data,
batch 64/256/1024/4096, SGD and Adam, 1 and 2 threads; plus the small network 32-64-64-4
at B=64, and the time to 97% test accuracy on scikit-learn's digits (64-128-64-10, Adam,
lr 0.002, B=64, the ``digits_mlp`` experiment) from identical initial weights and batch
order. Each framework runs in its own long-lived worker process (`nnbench.bench.worker`)
with its thread pools limited to the same count, and ``OPENBLAS_CORETYPE`` /
``OPENBLAS_L2_SIZE`` removed from the workers' environment only. The frameworks are
interleaved round by round (A B C, then C B A, ...); each round takes two samples of each
back to back, after waiting (``--max-wait``) for other processes to leave the CPUs idle.
A ratio is nnbench / other (below 1: nnbench is faster), the median over rounds of the
ratio within a round, so that both sides of each ratio saw the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnbench.bench.comparison import (  # noqa: E402
    DEFAULT_EXPERIMENT,
    log_comparison,
    met,
    targets_met,
)
from nnbench.bench.idle import wait_idle  # noqa: E402
from nnbench.bench.process import WorkerProcess  # noqa: E402
from nnbench.machine import OPENBLAS_OVERRIDES, THREAD_VARIABLES  # noqa: E402

BIG = (784, 256, 256, 10)
SMALL = (32, 64, 64, 4)
DIGITS = (64, 128, 64, 10)
PAUSE_S = 0.02  # lets the previous worker's spinning threads go to sleep


# ---------------------------------------------------------------------- workers
def worker_env(threads: int) -> dict:
    env = dict(os.environ)
    for name in OPENBLAS_OVERRIDES:
        env.pop(name, None)
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    return env


class Worker(WorkerProcess):
    """A `nnbench.bench.worker` process for one framework and thread count."""

    def __init__(self, framework: str, threads: int):
        self.framework = framework
        args = [framework, "--threads", str(threads)]
        super().__init__("nnbench.bench.worker", args, env=worker_env(threads), cwd=ROOT)
        self.env = self._answer(self.first)["env"]

    def _answer(self, answer: dict | None) -> dict:
        if answer is None:
            raise RuntimeError(f"worker {self.framework} exited (code {self.proc.wait()})")
        if "error" in answer:
            raise RuntimeError(f"{self.framework}: {answer['error']}\n{answer.get('trace')}")
        return answer

    def request(self, **request) -> dict:
        return self._answer(super().request(request))


# ---------------------------------------------------------------------- measurement plan
@dataclass
class Cell:
    """One configuration measured for several (framework, optimizer) entries."""

    threads: int
    sizes: tuple
    batch_size: int
    optimizer: str  # the nnbench optimizer; the others are named in `entries`
    entries: list  # [(label, framework, optimizer)]
    samples: dict = field(default_factory=dict)  # label -> [ms, ...]
    rounds: dict = field(default_factory=dict)  # label -> [median ms of each round]


def entries_for(optimizer: str, with_sklearn: bool = True) -> list:
    entries = [("nnbench", "nnbench", optimizer), ("torch", "torch", optimizer)]
    if optimizer == "adam":
        entries.append(("torch fused", "torch", "adam-fused"))
    if with_sklearn:
        entries.append(("sklearn", "sklearn", optimizer))
    return entries


def run_cells(cells, workers, rounds: int, options, max_wait: float) -> int:
    """Interleave: every round visits every cell, and in each cell every entry once, in an
    order that alternates between rounds. Before each cell, wait (up to ``max_wait`` s) for
    the machine to be idle. Returns how many cells were measured on a busy machine."""
    busy = 0
    for r in range(rounds):
        for cell in cells:
            busy += not wait_idle(max_wait)
            order = cell.entries if r % 2 == 0 else cell.entries[::-1]
            for label, framework, optimizer in order:
                time.sleep(PAUSE_S)
                response = workers[framework].request(
                    op="step",
                    sizes=list(cell.sizes),
                    batch_size=cell.batch_size,
                    optimizer=optimizer,
                    floor=framework == "nnbench",
                    **options(cell),
                )
                _record(cell, label, response["step_ms"])
                if "floor_ms" in response:
                    _record(cell, "floor", response["floor_ms"])
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return busy


def _record(cell: Cell, label: str, samples: list) -> None:
    cell.samples.setdefault(label, []).extend(samples)
    cell.rounds.setdefault(label, []).append(statistics.median(samples))


def sample_options(quick: bool):
    def options(cell: Cell) -> dict:
        big = cell.batch_size >= 1024
        return {
            "samples": 2,
            "warmup": 2 if big else 5,
            "min_sample_s": 0.02 if quick else 0.05,
        }

    return options


# ---------------------------------------------------------------------- targets
def step_targets(cell: Cell) -> dict:
    """label -> (maximum ratio nnbench / label, description) from the issue's targets."""
    b, opt, small = cell.batch_size, cell.optimizer, cell.sizes == SMALL
    targets = {}
    if small:
        targets["torch"] = 0.40
        return targets
    if opt == "sgd":
        targets["torch"] = 0.80 if b <= 256 else 0.95
        targets["sklearn"] = 0.80
    elif b <= 256:
        targets.update({"torch": 0.70, "torch fused": 1.0, "sklearn": 0.60})
    if cell.threads == 1 and b >= 256:
        targets["floor"] = 1.15
    return targets


def ratio(cell: Cell, label: str) -> tuple[float, float, float]:
    """nnbench / label, paired by round (both measured back to back, under the same load):
    the median of the per-round ratios, and their range."""
    per_round = [a / b for a, b in zip(cell.rounds["nnbench"], cell.rounds[label], strict=True)]
    return statistics.median(per_round), min(per_round), max(per_round)


# ---------------------------------------------------------------------- digits
def digits_file(directory: Path) -> Path:
    from nnbench.data import load_dataset

    ds = load_dataset("digits", seed=0)
    path = directory / "digits.npz"
    import numpy as np

    np.savez(
        path,
        x_train=ds.x_train.astype("float32"),
        y_train=ds.y_train,
        x_test=ds.x_test.astype("float32"),
        y_test=ds.y_test,
    )
    return path


def run_digits(workers, path: Path, rounds: int) -> dict:
    request = dict(
        op="target",
        sizes=list(DIGITS),
        data=str(path),
        accuracy=0.97,
        batch_size=64,
        optimizer="adam",
        lr=0.002,
        max_epochs=100,
        seed=0,
    )
    results = {"nnbench": [], "torch": []}
    for r in range(rounds):
        for name in ("nnbench", "torch") if r % 2 == 0 else ("torch", "nnbench"):
            time.sleep(PAUSE_S)
            results[name].append(workers[name].request(**request))
    return results


# ---------------------------------------------------------------------- report
def rows_of(cells) -> list[dict]:
    """One record per cell: nnbench's step and, for each other entry (and the GEMM floor),
    its step, the paired ratio with its range over rounds, and the target."""
    rows = []
    for cell in cells:
        targets = step_targets(cell)
        labels = [e[0] for e in cell.entries[1:]] + (["floor"] if "floor" in cell.samples else [])
        others = []
        for label in labels:
            pooled, low, high = ratio(cell, label)
            others.append(
                {
                    "label": "GEMM floor" if label == "floor" else label,
                    "ms": statistics.median(cell.samples[label]),
                    "ratio": pooled,
                    "low": low,
                    "high": high,
                    "best": min(cell.samples["nnbench"]) / min(cell.samples[label]),
                    "target": targets.get(label),
                }
            )
        rows.append(
            {
                "threads": cell.threads,
                "model": "-".join(map(str, cell.sizes)),
                "batch_size": cell.batch_size,
                "optimizer": cell.optimizer,
                "nnbench_ms": statistics.median(cell.samples["nnbench"]),
                "others": others,
            }
        )
    return rows


def table(rows) -> list[str]:
    head = (
        f"{'thr':>3} {'model':<15} {'B':>5} {'opt':<5} {'nnbench ms':>10}  {'vs':<12}"
        f"{'other ms':>9} {'ratio':>6} {'(rounds)':>13} {'best':>5} {'target':>7}  met"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        for other in row["others"]:
            goal = other["target"]
            verdict = "" if goal is None else ("yes" if met(other) else "NO")
            goal_text = "" if goal is None else f"<={goal:.2f}"
            spread = f"[{other['low']:.2f}-{other['high']:.2f}]"
            lines.append(
                f"{row['threads']:>3} {row['model']:<15} {row['batch_size']:>5} "
                f"{row['optimizer']:<5} {row['nnbench_ms']:>10.3f}  {other['label']:<12}"
                f"{other['ms']:>9.3f} {other['ratio']:>6.2f} {spread:>13} {other['best']:>5.2f} "
                f"{goal_text:>7}  {verdict}"
            )
    return lines


DIGITS_TARGET = 0.35


def digits_summary(results: dict) -> dict:
    ours = [r["time_to_target_s"] for r in results["nnbench"]]
    theirs = [r["time_to_target_s"] for r in results["torch"]]
    ep_ours = {r["epochs_to_target"] for r in results["nnbench"]}
    ep_theirs = {r["epochs_to_target"] for r in results["torch"]}
    return {
        "nnbench_s": statistics.median(ours),
        "torch_s": statistics.median(theirs),
        "ratio": statistics.median(ours) / statistics.median(theirs),
        "target": DIGITS_TARGET,
        "epochs": sorted(ep_ours | ep_theirs, key=str),
        "nnbench_epochs": sorted(ep_ours, key=str),
        "torch_epochs": sorted(ep_theirs, key=str),
        "same_epochs": ep_ours == ep_theirs and None not in ep_ours,
    }


def digits_lines(d: dict) -> list[str]:
    ratio_met = d["ratio"] <= d["target"]  # printed apart from the identical epochs
    return [
        "Time to 97% test accuracy, digits 64-128-64-10, Adam lr 0.002, B=64, 1 thread, "
        "same initial weights and batch order:",
        f"  nnbench {d['nnbench_s']:.3f} s (epochs {d['nnbench_epochs']}), "
        f"torch {d['torch_s']:.3f} s (epochs {d['torch_epochs']}), "
        f"ratio {d['ratio']:.2f} (target <={d['target']:.2f}: {'yes' if ratio_met else 'NO'}), "
        f"identical epochs: {'yes' if d['same_epochs'] else 'NO'}",
    ]


def machine_tags(workers_by_threads: dict) -> dict:
    """The parent run's tags: CPU, BLAS and kernel, nnbench's kernels, library versions."""
    first = next(iter(workers_by_threads.values()))
    ours, tags = first["nnbench"].env, {}
    for key in ("cpu", "cpu_count", "python", "numpy", "blas", "blas_kernel", "kernels"):
        tags[key] = ours.get(key)
    for worker in first.values():
        for module in ("torch", "sklearn"):
            if module in worker.env:
                tags[module] = worker.env[module]
    tags["threads"] = " ".join(str(t) for t in workers_by_threads)
    return tags


def env_lines(workers_by_threads: dict) -> list[str]:
    lines = []
    for threads, workers in workers_by_threads.items():
        for name, w in workers.items():
            e = w.env
            extra = f", torch threads {e['torch_threads']}" if "torch_threads" in e else ""
            extra += f", {e['kernels']}" if "kernels" in e else ""
            lines.append(
                f"  threads={threads} {name:<8} BLAS {e['blas']} kernel {e['blas_kernel']} "
                f"({e['blas_threads']} threads, {e['blas_libraries']} BLAS libs loaded), "
                f"OpenMP {e['openmp_threads']}{extra}"
            )
    return lines


# ---------------------------------------------------------------------- main
MISSING = {
    "torch": "PyTorch is not installed: make reference (adds torch 2.13.0, CPU) and run again",
    "sklearn": "scikit-learn is not installed: pip install scikit-learn, or pass --no-sklearn",
}


def check_installed(frameworks: list[str]) -> None:
    """One line and exit status 2 for a framework to compare against that is not here
    (its worker would otherwise die on the import, with a traceback)."""
    import importlib.util

    for name in frameworks:
        if name in MISSING and importlib.util.find_spec(name) is None:
            print(f"compare.py: error: {MISSING[name]}", file=sys.stderr, flush=True)
            sys.exit(2)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--threads", type=int, nargs="+")
    parser.add_argument("--batches", type=int, nargs="+")
    parser.add_argument("--optimizers", nargs="+", default=["sgd", "adam"])
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--no-digits", action="store_true")
    parser.add_argument("--json", type=Path, help="write every sample here")
    parser.add_argument(
        "--no-track", action="store_true", help="do not record the comparison in MLflow"
    )
    parser.add_argument(
        "--tracking-uri",
        help="MLflow store (default: as nnbench runs, sqlite:///outputs/mlflow.db)",
    )
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment")
    parser.add_argument(
        "--max-wait",
        type=float,
        default=20.0,
        help="seconds to wait for an idle machine before each cell",
    )
    args = parser.parse_args(argv)
    threads = args.threads or ([1] if args.quick else [1, 2])
    batches = args.batches or ([64, 256] if args.quick else [64, 256, 1024, 4096])
    rounds = args.rounds or (3 if args.quick else 7)
    frameworks = ["nnbench", "torch"] + ([] if args.no_sklearn else ["sklearn"])
    check_installed(frameworks)

    all_cells, workers_by_threads, digits, busy = [], {}, None, 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for t in threads:
            print(f"threads={t}: starting workers {frameworks}", file=sys.stderr, flush=True)
            workers = {f: Worker(f, t) for f in frameworks}
            workers_by_threads[t] = workers
            try:
                cells = [
                    Cell(t, BIG, b, opt, entries_for(opt, not args.no_sklearn))
                    for b in batches
                    for opt in args.optimizers
                ]
                cells += [
                    Cell(t, SMALL, 64, opt, entries_for(opt, not args.no_sklearn))
                    for opt in args.optimizers
                ]
                busy += run_cells(cells, workers, rounds, sample_options(args.quick), args.max_wait)
                all_cells += cells
                if t == threads[0] and not args.no_digits:
                    print("  digits: time to 97%", file=sys.stderr, flush=True)
                    path = digits_file(Path(tmp))
                    digits = run_digits(workers, path, 2 if args.quick else 5)
            finally:
                for w in workers.values():
                    w.close()
    lines = [
        "nnbench vs PyTorch CPU eager and scikit-learn: step-time ratios (nnbench / other; "
        f"< 1 is faster): median over {rounds} interleaved rounds of the per-round ratio "
        "[its range]; best: the fastest sample over the fastest (the quiet machine); times "
        "are medians of all samples; targets are checked on the median ratio",
        f"  cells measured while other processes kept the CPUs busy: {busy}",
    ]
    rows = rows_of(all_cells)
    summary = digits_summary(digits) if digits else None
    lines += env_lines(workers_by_threads) + [""] + table(rows)
    if summary:
        lines += [""] + digits_lines(summary)
    count, total = targets_met(rows, summary)
    lines.append(f"\nTargets met: {count} of {total}")
    lines.append(f"(measured in {time.perf_counter() - start:.0f} s)")
    print("\n".join(lines), flush=True)
    if not args.no_track:
        run_id = log_comparison(
            rows,
            machine=machine_tags(workers_by_threads),
            table="\n".join(lines) + "\n",
            digits=summary,
            uri=args.tracking_uri,
            experiment=args.experiment,
        )
        print(f"Recorded in MLflow: experiment {args.experiment!r}, run {run_id}")
    if args.json:
        raw = {
            "cells": [
                {
                    "threads": c.threads,
                    "sizes": c.sizes,
                    "batch_size": c.batch_size,
                    "optimizer": c.optimizer,
                    "samples": c.samples,
                    "rounds": c.rounds,
                }
                for c in all_cells
            ],
            "digits": digits,
        }
        args.json.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
