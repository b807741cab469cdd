"""The GPU check's stacked table: M digits models (64-64-64-10, B = 64, float32) trained as
one `nnbench.stack.Stack` on CuPy, eager and replayed as a CUDA graph, against PyTorch's
torch.func ensemble on CUDA (stack_module_state + vmap, functional SGD-momentum and Adam)
and one solo nnbench-cupy step, at M = 1, 2, 4, ..., 256.

    python -m nnbench.bench.gpu_stack_table                 # the table (about a minute)
    python -m nnbench.bench.gpu_stack_table --cpu-dry-run   # the same machinery on NumPy

Each framework runs in a worker process of its own (`nnbench.bench.stack_worker`), the
variants of a cell interleaved round by round. Step times are of one step of all M members,
between two synchronizations. Target (the stacked-sweeps issue), printed, not asserted:
a stack of 64 steps in <= 3x the time of a stack of one. Exit status 1 when a worker fails
on the GPU; a variant this checkout or machine does not have is a note in the table.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from nnbench.bench.stack_bench import close_workers, measure, start_workers

ENTRIES = (
    ("eager", "nnbench", "stack"),
    ("graph", "nnbench", "graph"),
    ("torch.func", "torch-func", "stack"),
    ("solo", "nnbench", "solo"),
)
LABELS = tuple(label for label, _, _ in ENTRIES)
MEMBERS = tuple(2**k for k in range(9))  # 1 ... 256
TARGET_M, TARGET = 64, 3.0


def median_ms(results: dict, cell, label: str) -> float | None:
    values = results.get(cell, {}).get(label)
    return statistics.median(values) if values else None


def table_lines(results: dict, cells: list, notes: dict) -> list[str]:
    """Step times of all M members (ms), then the ratios, then why a column is empty."""
    head = f"{'opt':<9} {'M':>4} " + " ".join(f"{label:>11}" for label in LABELS)
    head += f" {'eager/torch':>12} {'graph/torch':>12} {'eager/M=1':>10}"
    lines = ["Stacked step, ms for all M members (median over rounds):", head, "-" * len(head)]
    for cell in cells:
        optimizer, members = cell
        times = {label: median_ms(results, cell, label) for label in LABELS}
        cols = [f"{t:>11.4f}" if t is not None else f"{'-':>11}" for t in times.values()]
        one = median_ms(results, (optimizer, 1), "eager")
        ratios = [
            _ratio(times["eager"], times["torch.func"], 12),
            _ratio(times["graph"], times["torch.func"], 12),
            _ratio(times["eager"], one, 10),
        ]
        lines.append(f"{optimizer:<9} {members:>4} " + " ".join(cols) + " " + " ".join(ratios))
    lines += target_lines(results, cells)
    if notes:
        lines += ["", "Notes:"] + [
            f"  {label}: not measured: {why}" for label, why in notes.items()
        ]
    return lines


def _ratio(top, bottom, width: int) -> str:
    return f"{top / bottom:>{width}.2f}" if top is not None and bottom else f"{'-':>{width}}"


def target_lines(results: dict, cells: list) -> list[str]:
    lines = []
    for optimizer in dict.fromkeys(opt for opt, _ in cells):
        many = median_ms(results, (optimizer, TARGET_M), "eager")
        one = median_ms(results, (optimizer, 1), "eager")
        if many is None or one is None:
            continue
        value = many / one
        met = "met" if value <= TARGET else "NOT met"
        lines.append(
            f"  {optimizer}: a stack of {TARGET_M} steps in {value:.2f}x the time of a stack of "
            f"one (target <={TARGET:.1f}: {met})"
        )
    return [""] + lines if lines else []


def main(argv=None, out=sys.stdout) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-dry-run", action="store_true", help="NumPy stand-ins, no GPU")
    parser.add_argument("--members", type=int, nargs="+")
    parser.add_argument("--optimizers", nargs="+", default=["momentum", "adam"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=4, help="samples per round")
    parser.add_argument("--min-sample-s", type=float, default=0.05)
    args = parser.parse_args(argv)
    cpu = args.cpu_dry_run
    members = args.members or ([1, 2, 4] if cpu else list(MEMBERS))
    where = "CPU DRY RUN (NumPy stand-ins)" if cpu else "GPU"
    print(f"GPU stacked table: digits 64-64-64-10, B=64, float32, {where}", file=out, flush=True)
    workers = start_workers(threads=None, device="cpu" if cpu else "cuda")
    try:
        for name, worker in workers.items():
            env = worker.env
            what = worker.unavailable or env.get("backend") or f"torch {env.get('torch')}"
            print(f"  {name}: {what}", file=out, flush=True)
        cells = [(opt, m) for opt in args.optimizers for m in members]
        options = {"batch_size": 64, "samples": args.samples, "warmup": 5,
                   "min_sample_s": args.min_sample_s}  # fmt: skip
        results, notes = measure(workers, cells, args.rounds, options, ENTRIES, out)
    finally:
        close_workers(workers)
    for line in table_lines(results, cells, notes):
        print(line, file=out)
    errors = [label for label, why in notes.items() if why.startswith("error:")]
    missing = [label for label in ("eager", "torch.func", "solo") if label in notes]
    return 1 if errors or (missing and not cpu) else 0


if __name__ == "__main__":
    sys.exit(main())
