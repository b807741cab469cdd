"""The GPU benchmark table: nnbench-cupy (eager, fused, CUDA graph) against PyTorch CUDA eager
and PyTorch with a CUDA graph, at B = 64 ... 4096, TF32 off and on, plus nnbench-cupy /
nnbench-numpy, with the ratios the GPU issue targets, measured in one run.

    python -m nnbench.bench.gpu_table                 # the table (a few minutes on an H100)
    python -m nnbench.bench.gpu_table --cpu-dry-run   # the same machinery, NumPy only

Setup: float32, MLP 784-256-256-10, ReLU, softmax cross-entropy, one fixed synthetic batch,
SGD (lr 0.01) and Adam (lr 0.001). Every framework runs in a worker process of its own
(`nnbench.bench.gpu_worker`), one per TF32 setting; the variants of a cell are timed round
by round in alternating order, and a ratio is the median over rounds of the ratio within a
round. Step times are per step in steady state, between two synchronizations.

Targets, as ratios measured here (on one H100):
  fused eager nnbench-cupy / PyTorch CUDA eager          <= 1.0
  nnbench-cupy with a CUDA graph / PyTorch CUDA eager    <= 0.30 at B <= 1024
  nnbench-cupy step / its GEMM-only floor                <= 1.3 at B = 4096
(graph / PyTorch graph and cupy / numpy are shown without a target). Exit status 1 when a
worker fails or a variant cannot run; a missed target is a finding, not an error.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nnbench.bench.process import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
SIZES = (784, 256, 256, 10)
BATCHES = (64, 256, 1024, 4096)
OPTIMIZERS = ("sgd", "adam")
# (label, worker framework, variant)
ENTRIES = (
    ("cupy eager", "nnbench-cupy", "eager"),
    ("cupy fused", "nnbench-cupy", "fused"),
    ("cupy graph", "nnbench-cupy", "graph"),
    ("torch eager", "torch-cuda", "eager"),
    ("torch graph", "torch-cuda", "graph"),
)
NUMPY = ("numpy", "nnbench-numpy", "eager")
# (numerator, denominator, target or None, applies to batch size b)
RATIOS = (
    ("cupy fused", "torch eager", 1.0, lambda b: True),
    ("cupy graph", "torch eager", 0.30, lambda b: b <= 1024),
    ("cupy graph", "torch graph", None, lambda b: True),
    ("cupy fused", "floor", 1.3, lambda b: b == 4096),
    ("cupy graph", "floor", 1.3, lambda b: b == 4096),
    ("cupy fused", "numpy", None, lambda b: True),
)


class Worker(WorkerProcess):
    """A `nnbench.bench.gpu_worker` process; one that cannot run here answers every request
    with why (``unavailable``)."""

    def __init__(self, framework: str, tf32: bool, cpu: bool):
        args = [framework] + ["--tf32"] * tf32 + ["--cpu"] * cpu
        self.name = f"{framework}{' tf32' if tf32 else ''}"
        super().__init__("nnbench.bench.gpu_worker", args, cwd=ROOT)
        first = self._answer(self.first)
        self.unavailable = first.get("unavailable")
        self.env = first.get("env", {})

    def _answer(self, answer: dict | None) -> dict:
        return answer or {"unavailable": f"worker exited with status {self.proc.wait()}"}

    def request(self, **request) -> dict:
        if self.unavailable:
            return {"unavailable": self.unavailable}
        return self._answer(super().request(request))

    def close(self) -> None:
        super().close(timeout=60)


@dataclass
class Cell:
    tf32: bool
    optimizer: str
    batch_size: int
    rounds: dict = field(default_factory=dict)  # label -> [median ms of each round]
    notes: dict = field(default_factory=dict)  # label -> why it has no time / what happened
    memory: dict = field(default_factory=dict)


def measure(workers: dict, cells: list, sizes, rounds: int, options: dict, log) -> int:
    """Fill the cells, round by round; returns how many requests failed."""
    errors = 0
    for r in range(rounds):
        for cell in cells:
            entries = [e for e in ENTRIES] + ([NUMPY] if not cell.tf32 else [])
            for label, framework, variant in entries if r % 2 == 0 else entries[::-1]:
                worker = workers[(framework, cell.tf32 and framework != "nnbench-numpy")]
                response = worker.request(
                    op="step", variant=variant, sizes=list(sizes), batch_size=cell.batch_size,
                    optimizer=cell.optimizer, floor=label == "cupy fused", **options,
                )  # fmt: skip
                if "step_ms" not in response:
                    cell.notes[label] = response.get("unavailable") or response.get("error")
                    errors += "error" in response
                    continue
                cell.rounds.setdefault(label, []).append(statistics.median(response["step_ms"]))
                if "floor_ms" in response:
                    floor = statistics.median(response["floor_ms"])
                    cell.rounds.setdefault("floor", []).append(floor)
                    cell.memory = response.get("memory", {})
                if response.get("note"):
                    cell.notes[label] = response["note"]
        print(f"  round {r + 1}/{rounds} done", file=log, flush=True)
    return errors


def ratio(cell: Cell, top: str, bottom: str) -> float | None:
    a, b = cell.rounds.get(top), cell.rounds.get(bottom)
    if not a or not b:
        return None
    return statistics.median(x / y for x, y in zip(a, b, strict=False))


def table_lines(cells: list) -> list[str]:
    labels = [e[0] for e in ENTRIES] + ["floor", "numpy"]
    head = f"{'tf32':<4} {'opt':<4} {'B':>5} " + " ".join(f"{label:>11}" for label in labels)
    lines = ["Step time, ms (median over rounds):", head, "-" * len(head)]
    for cell in cells:
        values = []
        for label in labels:
            times = cell.rounds.get(label)
            values.append(f"{statistics.median(times):>11.4f}" if times else f"{'-':>11}")
        tf32 = "on" if cell.tf32 else "off"
        lines.append(f"{tf32:<4} {cell.optimizer:<4} {cell.batch_size:>5} " + " ".join(values))
    lines += ["", "Ratios (target: met?):"]
    for cell in cells:
        parts = []
        for top, bottom, target, applies in RATIOS:
            value = ratio(cell, top, bottom)
            if value is None:
                continue
            text = f"{top}/{bottom} {value:.2f}"
            if target is not None and applies(cell.batch_size):
                text += f" (<={target:.2f}: {'yes' if value <= target else 'NO'})"
            parts.append(text)
        tf32 = "on" if cell.tf32 else "off"
        where = f"  tf32 {tf32:<3} {cell.optimizer:<4} B={cell.batch_size:<5} "
        lines.append(where + "; ".join(parts))
    notes = [(c, label, why) for c in cells for label, why in c.notes.items()]
    if notes:
        lines += ["", "Notes:"]
        seen = set()
        for cell, label, why in notes:
            if (label, why) not in seen:
                seen.add((label, why))
                lines.append(f"  {label} (first at tf32={cell.tf32}, {cell.optimizer}, "
                             f"B={cell.batch_size}): {why}")  # fmt: skip
    return lines


def memory_lines(cells: list) -> list[str]:
    stats = [c for c in cells if c.memory]
    if not stats:
        return []
    last = stats[-1]
    text = ", ".join(f"{k} {v}" for k, v in last.memory.items())
    return ["", f"CuPy memory pool after the last fused cell (B={last.batch_size}): {text}"]


def main(argv=None, out=sys.stdout) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-dry-run", action="store_true", help="NumPy stand-ins, no GPU")
    parser.add_argument("--batches", type=int, nargs="+")
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=4, help="samples per round")
    parser.add_argument("--min-sample-s", type=float, default=0.05)
    args = parser.parse_args(argv)
    cpu = args.cpu_dry_run
    sizes = (32, 64, 64, 4) if cpu else SIZES
    batches = args.batches or ([16, 64] if cpu else list(BATCHES))
    options = {"samples": args.samples, "warmup": 5, "min_sample_s": args.min_sample_s}
    print(f"GPU benchmark table: MLP {'-'.join(map(str, sizes))}, float32, "
          f"{'CPU DRY RUN (NumPy stand-ins)' if cpu else 'GPU'}", file=out, flush=True)  # fmt: skip
    tf32_settings = (False,) if cpu else (False, True)
    keys = [(f, t) for f in ("nnbench-cupy", "torch-cuda") for t in tf32_settings]
    workers = {key: Worker(key[0], key[1], cpu) for key in keys}
    workers[("nnbench-numpy", False)] = Worker("nnbench-numpy", False, cpu)
    try:
        for worker in workers.values():
            env = worker.env
            what = worker.unavailable or env.get("backend") or env.get("device") or env.get("cpu")
            print(f"  {worker.name}: {what}", file=out, flush=True)
        cells = [
            Cell(tf32, optimizer, b)
            for tf32 in tf32_settings
            for optimizer in args.optimizers
            for b in batches
        ]
        errors = measure(workers, cells, sizes, args.rounds, options, out)
    finally:
        for worker in workers.values():
            worker.close()
    for line in table_lines(cells) + memory_lines(cells):
        print(line, file=out)
    missing = sum(1 for c in cells for label in c.notes if label not in c.rounds)
    if errors or missing:
        print(f"gpu_table: {errors} failed requests, {missing} cells without a time", file=out)
    return 1 if errors or (missing and not cpu) else 0


if __name__ == "__main__":
    sys.exit(main())
