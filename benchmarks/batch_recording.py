#!/usr/bin/env python
"""What recording a sweep's runs costs: a batch (`nnbench.tracking.batch.RecorderBatch`, the
stacked sweep's members on one agent connection) against one `AgentRecorder` run after
another (a sweep's jobs run one by one), through the warm tracking agent on a real SQLite
store.

    python benchmarks/batch_recording.py                 # 24 runs x 20 epochs, 3 rounds
    python benchmarks/batch_recording.py --runs 96 --rounds 1
    python benchmarks/batch_recording.py --train-s 1.2   # with the sweep's 1.2 s of training

Every run records what a digits job records (20 epochs of train/loss, train/acc, val/loss,
val/acc, time/epoch_s and throughput/samples_per_s; its params and tags; test metrics, the
outcome and the artifacts through `nnbench.flow.close_record`), from one real training
replayed for every run; ``--train-s`` spreads that much waiting ("training") over the
epochs of the sweep, as the stack trains (per epoch, all members) or the jobs one after
another (per epoch of each). Each variant runs in a process of its own, in interleaved rounds
(A B, then B A, ...), after a round that warms the agent up; the table gives the median
over rounds of:

- training side: the wall time of the training process's recording calls (for the batch,
  until its last member's ``end``: what the training waits for; one run after another
  waits for each run's end, so it is the total);
- total: until everything is recorded (the batch's ``close`` has returned).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

VARIANTS = ("single", "batch")


def compose_cfg(epochs: int):
    from hydra import compose, initialize_config_module

    from nnbench import config

    config.register()
    with initialize_config_module("nnbench.conf", version_base="1.3"):
        return compose("config", overrides=["dataset=digits", f"trainer.epochs={epochs}"])


def jobs(parent: dict, count: int, tmp: Path) -> list:
    """The sweep's jobs: one learning rate each."""
    from nnbench.tracking import Job

    return [
        Job(
            True,
            i,
            (f"optimizer.lr={lr}",),
            (f"optimizer.lr={lr}",),
            {"sweep": "lr"},
            str(tmp),
            str(tmp / str(i)),
            None,
            f"hash{i}",
            parent,
        )  # fmt: skip
        for i, lr in enumerate(10 ** (-4 + 4.5 * k / max(count - 1, 1)) for k in range(count))
    ]


def record_single(cfg, jobs_, run, train_s: float) -> tuple[float, float]:
    """One AgentRecorder run after another, as the basic launcher records its jobs."""
    from nnbench.flow import close_record, run_start
    from nnbench.tracking.agent_client import AgentRecorder

    epoch_s = train_s / len(jobs_) / len(run.result.history)
    start = time.perf_counter()
    for job in jobs_:
        recorder = AgentRecorder.start(**run_start(cfg, job, run.parts.backend))
        _ = recorder.run_id
        for record in run.result.history:
            time.sleep(epoch_s)
            recorder.log_epoch(record)
        close_record(cfg, job, recorder, run)
        recorder.end("FINISHED")
    seconds = time.perf_counter() - start
    return seconds, seconds


def record_batch(cfg, jobs_, run, train_s: float) -> tuple[float, float]:
    """Every run at once through one RecorderBatch, epoch by epoch, as a stack logs them."""
    from nnbench.flow import close_record, run_start
    from nnbench.tracking.batch import RecorderBatch

    epoch_s = train_s / len(run.result.history)
    start = time.perf_counter()
    batch = RecorderBatch.start([run_start(cfg, job, run.parts.backend) for job in jobs_])
    _ = batch.recorders[0].run_id
    for record in run.result.history:
        time.sleep(epoch_s)
        for recorder in batch.recorders:
            recorder.log_epoch(record)
    for job, recorder in zip(jobs_, batch.recorders, strict=True):
        close_record(cfg, job, recorder, run)
        recorder.end("FINISHED")
    training = time.perf_counter() - start
    batch.close("FINISHED")
    return training, time.perf_counter() - start


def child(args) -> None:
    """One variant, in this process: train once, then time its recording."""
    from nnbench.flow import fit_and_test
    from nnbench.parts import build

    cfg = compose_cfg(args.epochs)
    run = fit_and_test(cfg, build(cfg), None, before=True)
    parent = json.loads(args.parent)
    record = record_batch if args.variant == "batch" else record_single
    training, total = record(cfg, jobs(parent, args.runs, Path(args.tmp)), run, args.train_s)
    print(json.dumps({"training_s": training, "total_s": total}))


def make_parent(uri: str) -> dict:
    """The store (created once, here) and a sweep's parent run."""
    from nnbench.tracking import store

    client = store.client(uri)
    experiment_id = store.experiment_id(client, "batch-recording", uri)
    run_id = client.create_run(experiment_id, run_name="sweep").info.run_id
    return {"uri": uri, "experiment_id": experiment_id, "parent_run_id": run_id,
            "sweep_id": run_id, "swept": ["optimizer.lr"]}  # fmt: skip


def run_variant(variant: str, args, parent: dict, tmp: Path) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--parent", json.dumps(parent),
               "--tmp", str(tmp), "--runs", str(args.runs), "--epochs", str(args.epochs),
               "--train-s", str(args.train_s)]  # fmt: skip
    env = {**os.environ, "NNBENCH_DATA": str(tmp / "cache")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{variant} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def check_recorded(uri: str, parent: dict, expected: int) -> None:
    """Every run recorded and FINISHED: a fast variant that records nothing is no result."""
    from nnbench.tracking import store

    client = store.client(uri)
    runs = client.search_runs([parent["experiment_id"]], max_results=10000)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    statuses = {r.info.status for r in children}
    if len(children) != expected or statuses != {"FINISHED"}:
        sys.exit(f"expected {expected} FINISHED runs, found {len(children)}: {statuses}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-s", type=float, default=0.0)
    parser.add_argument("--child", choices=VARIANTS)
    parser.add_argument("--parent")
    parser.add_argument("--tmp")
    args = parser.parse_args()
    if args.child:
        args.variant = args.child
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="nnbench-batch-") as folder:
        tmp = Path(folder)
        agents = tmp / "agents"  # the benchmark's own warm agent, stopped at its end
        agents.mkdir(mode=0o700)
        os.environ["NNBENCH_AGENT_DIR"] = str(agents)
        try:
            times = measure(args, tmp)
        finally:
            from nnbench.tracking.daemon import stop

            stop(agents)
    report(times, args)


def measure(args, tmp: Path) -> dict:
    """Every round of both variants on one store (created here, once)."""
    uri = f"sqlite:///{tmp}/mlflow.db"
    parent = make_parent(uri)
    times: dict = {v: [] for v in VARIANTS}
    for round_ in range(args.rounds + 1):  # round 0 warms the agent up
        order = VARIANTS if round_ % 2 else VARIANTS[::-1]
        for variant in order:
            result = run_variant(variant, args, parent, tmp)
            if round_:
                times[variant].append(result)
    check_recorded(uri, parent, 2 * (args.rounds + 1) * args.runs)
    return times


def report(times: dict, args) -> None:
    print(f"{args.runs} runs x {args.epochs} epochs, {args.train_s:g} s of training in all,"
          f" median of {args.rounds} rounds (warm agent, SQLite)")  # fmt: skip
    medians = {
        v: {k: statistics.median(r[k] for r in times[v]) for k in ("training_s", "total_s")}
        for v in VARIANTS
    }
    head = ("variant", "training side", "of it recording", "total", "per run")
    print("{:<8} {:>14} {:>16} {:>8} {:>9}".format(*head))
    for variant, m in medians.items():
        per_run = m["total_s"] / args.runs * 1e3
        recording = m["training_s"] - args.train_s
        print(f"{variant:<8} {m['training_s']:>12.2f} s {recording:>14.2f} s"
              f" {m['total_s']:>6.2f} s {per_run:>6.1f} ms")  # fmt: skip
    single, batch = medians["single"], medians["batch"]
    print(f"batch / single: training side {batch['training_s'] / single['training_s']:.3f}, "
          f"total {batch['total_s'] / single['total_s']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
