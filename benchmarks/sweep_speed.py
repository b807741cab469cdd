#!/usr/bin/env python
"""How fast a whole sweep runs: Hydra's basic launcher, joblib with 2 jobs and the stacked
launcher, and stacked training step by step against its floor, a solo model and torch.func.

    python benchmarks/sweep_speed.py            # everything (about 25 minutes on 2 cores)
    python benchmarks/sweep_speed.py --quick    # a short check (about 3 minutes)

Whole sweeps: the wall time of ``python -m nnbench +sweep=lr`` with the grid as its sweeper
params (digits, the default model 64-64-64-10, plain SGD, 20 epochs), each sample its own
process: the 24-point learning-rate grid (log-spaced 1e-4 to 3.16), then the 96-point grid
(x weight_decay 0, 1e-4, 1e-3, 1e-2), each with ``tracking=none`` and tracked in a SQLite store
in a scratch folder (created, and the warm tracking agent started, by an unmeasured first
sweep of each variant), the variants interleaved round by round (A B C, then C B A). Beside
each: the sweep's arithmetic floor, its training FLOPs at the float32 GEMM peak measured
here (a 1024^3 product; the faster of one thread and all cores). Training only: the
per-member step of `nnbench.stack.Stack` at M = 8, 32, 128 (B = 64, float32, SGD with
momentum and Adam) against its batched products alone, a solo nnbench step and PyTorch's
torch.func ensemble (stack_module_state + vmap), each framework in its own process with the
same thread count. Ratios are medians of per-round
ratios; the issue's targets are printed beside them, never asserted. The result is also
recorded in MLflow (experiment ``sweep_speed``; ``--no-track`` to skip).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

from nnbench.bench import sweep_report as report  # noqa: E402
from nnbench.bench.sweep_args import parse  # noqa: E402


def machine_summary(workers: dict, peaks: dict, threads) -> tuple[list[str], dict]:
    env = workers["nnbench"].env
    torch = workers["torch-func"]
    torch_text = torch.unavailable or f"torch {torch.env.get('torch')}"
    lines = [
        f"machine: {env.get('cpu')}, {env.get('cpu_count')} CPUs (shared with other work: "
        f"load average {os.getloadavg()[0]:.1f} at the start), {env.get('blas')} "
        f"kernel {env.get('blas_kernel')}, numpy {env.get('numpy')}, {torch_text}",
        f"float32 GEMM peak (1024^3): {peaks['one']:.0f} GFLOP/s on {threads} thread(s), "
        f"{peaks['all']:.0f} GFLOP/s on {os.cpu_count()} (the floors below use the faster)",
    ]
    tags = {k: env.get(k) for k in ("cpu", "cpu_count", "python", "numpy", "blas", "blas_kernel")}
    tags.update(kernels=env.get("kernels"), torch=torch.env.get("torch"), threads=threads)
    return lines, tags


def measure_peaks(workers: dict) -> dict:
    from nnbench.bench.stack_bench import StackWorkerProcess

    everyone = StackWorkerProcess("nnbench", os.cpu_count())
    try:
        return {
            "one": workers["nnbench"].ask(op="peak")["gflops"],
            "all": everyone.ask(op="peak")["gflops"],
        }
    finally:
        everyone.close()


def sweep_floor(grid, epochs: int, peak_gflops: float) -> dict:
    from nnbench.bench.stack_bench import DIGITS
    from nnbench.bench.stack_floor import sweep_flops
    from nnbench.data import load_dataset

    data = load_dataset("digits", seed=0)
    flops = sweep_flops(DIGITS, grid.jobs, epochs, len(data.x_train), len(data.x_val))
    return {"gflop": flops / 1e9, "peak_gflops": peak_gflops, "floor_s": flops / 1e9 / peak_gflops}


def run_sweeps(args, timer, peak) -> tuple[list, list, list]:
    from nnbench.bench.sweep_runs import lr_grid, lr_wd_grid, make_entries

    lines, rows, ratios = [], [], []
    grids = [(lr_grid(24), args.rounds)]
    if args.rounds_96:
        grids.append((lr_wd_grid(24), args.rounds_96))
    for grid, rounds in grids:
        entries = make_entries(args.variants, args.tracking)
        print(f"{grid.name}: warm-up sweeps (not measured)", file=sys.stderr, flush=True)
        timer.warm_up(grid, entries)
        timer.measure(grid, entries, rounds)
        floor = sweep_floor(grid, args.epochs, peak)
        grid_rows = report.sweep_rows(grid.name, grid.jobs, entries, floor["floor_s"])
        grid_ratios = report.sweep_ratios(grid.name, grid.jobs, entries)
        failed = {e.label: e.failed for e in entries if e.failed}
        text = report.sweep_lines(grid.name, grid_rows, grid_ratios, floor, failed)
        print("\n".join(["", *text]), flush=True)
        lines += ["", *text]
        rows += grid_rows
        ratios += grid_ratios
    return lines, rows, ratios


def run_training(args, workers) -> tuple[list, list, dict]:
    from nnbench.bench.stack_bench import measure

    cells = [(opt, m) for opt in args.optimizers for m in args.members]
    options = {
        "batch_size": 64,
        "samples": args.samples,
        "warmup": 5,
        "min_sample_s": args.min_sample_s,
    }
    results, notes = measure(workers, cells, args.rounds_training, options)
    rows = [report.training_row(opt, m, results[(opt, m)]) for opt, m in cells]
    setup = {"model": "64-64-64-10", "batch_size": 64, "dtype": "float32", "threads": args.threads}
    text = report.training_lines(
        rows, f"digits 64-64-64-10, B=64, float32, {args.threads} thread(s)", notes
    )
    print("\n".join(["", *text]), flush=True)
    return ["", *text], rows, setup


def main(argv=None) -> int:
    args = parse(argv, __doc__.split("\n\n")[0])
    from nnbench.bench.stack_bench import close_workers, start_workers
    from nnbench.bench.sweep_runs import SweepTimer

    start = time.perf_counter()
    workers = start_workers(args.threads)
    try:
        peaks = measure_peaks(workers)
        lines, machine = machine_summary(workers, peaks, args.threads)
        print("\n".join(lines), flush=True)
        rows, ratios, training, setup = [], [], [], {}
        if "sweeps" in args.parts:
            with tempfile.TemporaryDirectory(prefix="nnbench-sweep-speed-") as tmp:
                timer = SweepTimer(Path(tmp), args.epochs, args.max_wait)
                try:
                    more, rows, ratios = run_sweeps(args, timer, max(peaks.values()))
                finally:
                    timer.stop_agent()
                busy = f"sweeps started while other processes kept the CPUs busy: {timer.busy}"
                print(f"{busy} of {timer.timed}", flush=True)
                lines += [*more, f"{busy} of {timer.timed}"]
        if "training" in args.parts:
            more, training, setup = run_training(args, workers)
            lines += more
    finally:
        close_workers(workers)
    everything = report.all_ratios(ratios, training)
    count, total = report.targets_met(everything)
    lines += [
        f"\nTargets met: {count} of {total}",
        f"(measured in {time.perf_counter() - start:.0f} s)",
    ]
    print("\n".join(lines[-2:]), flush=True)
    if not args.no_track:
        record(args, rows, ratios, training, setup, everything, machine, peaks, lines)
    if args.json:
        args.json.write_text(json.dumps({"sweeps": rows, "ratios": ratios, "training": training}))
    return 0


def record(args, rows, ratios, training, setup, everything, machine, peaks, lines) -> None:
    from nnbench.bench.sweep_record import log_sweep_speed, sweep_children, training_children

    children = sweep_children(rows, ratios) + training_children(training, setup)
    run_id = log_sweep_speed(
        children,
        everything,
        machine=machine,
        table="\n".join(lines) + "\n",
        metrics={"peak_gflops_1_thread": peaks["one"], "peak_gflops_all": peaks["all"]},
        uri=args.tracking_uri,
        experiment=args.experiment,
    )
    print(f"Recorded in MLflow: experiment {args.experiment!r}, run {run_id}")


if __name__ == "__main__":
    sys.exit(main())
