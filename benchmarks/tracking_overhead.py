#!/usr/bin/env python
"""What MLflow tracking adds to a 50-epoch digits run, against ``tracking=none``.

    python benchmarks/tracking_overhead.py               # 5 rounds of everything
    python benchmarks/tracking_overhead.py --rounds 7
    python benchmarks/tracking_overhead.py --quick       # 2 rounds, 5 epochs: a smoke run

Three views, each measured in interleaved rounds (A B, then B A, ...) and reported as the
median over rounds:

(a) Whole process: wall time of ``python -m nnbench trainer.epochs=50`` with
    ``tracking=none`` against tracking on: served by the warm agent on an existing store
    (the usual case: an earlier run started the agent, and outputs/mlflow.db exists), by
    the warm agent on a fresh store, by an agent that the run itself starts (the first run
    of a session), and with an agent per run (``NNBENCH_AGENT=process``).
(b) Inside a run, in one process, with a warm agent on a real SQLite store: the steps
    ``flow.train`` takes (wait for the run to exist, train and test with the recorder's
    ``log_epoch`` as callback, then ``close_record`` and ending the run, which waits until
    the agent has recorded everything) against training and testing with no callback and
    with the NullRecorder, on the same data, seed and initial weights. Free of the start-up
    noise of (a): their sum is what tracking puts on a run's critical path.
(c) What the tracking agent does, each step measured cold in a fresh process per round:
    ``import mlflow``, ``import matplotlib.pyplot``, the store client (fresh store: schema
    migrations; existing store), the experiment, the run with its params and tags, the
    final metrics and tags, the artifacts (manifest, weights, curves), uploading them, and
    ending the run. The agent does this on another core while the training process starts
    up and trains, so (a) pays only what is left of it after training ends.
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
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no INFO lines in the table

DIGITS_ARGS = ("dataset=digits",)  # the default experiment, spelled out


def child_env(cwd: Path) -> dict[str, str]:
    drop = ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["NNBENCH_DATA"] = str(cwd / "cache")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


# --------------------------------------------------------------------- (a) whole process
VARIANTS_A = {
    # short name: (row label, store, environment of the run)
    "none": ("none", "none", {}),
    "warm": ("mlflow, warm agent", "existing", {}),
    "fresh": ("mlflow, warm agent, fresh store", "fresh", {}),
    "cold": ("mlflow, agent started by the run", "existing", {"cold": "1"}),
    "process": ("mlflow, agent per run (process)", "existing", {"NNBENCH_AGENT": "process"}),
}


def time_process(cwd: Path, epochs: int, tracking: str, env: dict | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "nnbench", f"trainer.epochs={epochs}", f"tracking={tracking}"]
        + list(DIGITS_ARGS),
        cwd=cwd,
        env={**child_env(cwd), **(env or {})},
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"nnbench tracking={tracking} failed:\n{proc.stderr}")
    return elapsed


def part_a(rounds: int, epochs: int, tmp: Path, chosen: list[str]) -> dict[str, list[float]]:
    """The variants of VARIANTS_A in interleaved rounds. The warm agent lives in a folder of
    this benchmark's (started by an unmeasured first run); "agent started by the run" gets a
    new, empty agent folder each round, so that its run starts the agent (the first run of
    a session); every agent is stopped at the end."""
    from nnbench.tracking import daemon

    agents = tmp / "agents"
    agents.mkdir(mode=0o700)
    existing = tmp / "existing"
    existing.mkdir()
    warm_env = {"NNBENCH_AGENT_DIR": str(agents)}
    time_process(existing, 1, "mlflow", warm_env)  # the store and the warm agent; not measured
    variants = [VARIANTS_A[key] for key in ["none", *chosen]]
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    try:
        for r in range(rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for name, store, env in order:
                env = dict(env)
                cold = env.pop("cold", None)
                folder = tmp / f"agents-{r}" if cold else agents
                folder.mkdir(mode=0o700, exist_ok=True)
                env.setdefault("NNBENCH_AGENT_DIR", str(folder))
                cwd = existing if store == "existing" else tmp / f"{store}-{r}"
                cwd.mkdir(exist_ok=True)
                tracking = "none" if store == "none" else "mlflow"
                times[name].append(time_process(cwd, epochs, tracking, env))
                if cold:  # gone before the next variant runs
                    daemon.stop(folder)
            print(f"  (a) round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    finally:
        for folder in tmp.glob("agents*"):
            daemon.stop(folder)
    return times


# ------------------------------------------------------------------ (b) the training loop
def compose(epochs: int):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    import nnbench.cli  # noqa: F401  (registers the schema)

    with initialize_config_module("nnbench.conf", version_base="1.3"):
        return hydra_compose("config", overrides=[f"trainer.epochs={epochs}", *DIGITS_ARGS])


def part_b(rounds: int, epochs: int, tmp: Path) -> dict[str, list[float]]:
    """What tracking adds inside a run, timed in this process around the very calls
    ``flow.train`` makes, with a warm agent (the rows after the first two are the run's
    tracking steps, whose sum is what a tracked run pays on its critical path)."""
    from omegaconf import OmegaConf

    from nnbench import tracking
    from nnbench.flow import close_record, fit_and_test
    from nnbench.parts import build
    from nnbench.tracking import Job, daemon
    from nnbench.tracking.agent_client import AgentRecorder, prestart
    from nnbench.tracking.params import to_params

    agents = tmp / "agents-b"
    agents.mkdir(mode=0o700)
    os.environ["NNBENCH_AGENT_DIR"] = str(agents)
    cfg = compose(epochs)
    uri = f"sqlite:///{tmp / 'loop' / 'mlflow.db'}"
    params, _ = to_params(OmegaConf.to_container(cfg, resolve=True))
    job = Job(False, None, (), ("overhead",), {}, "", "", None)
    keys = ("no tracking", "NullRecorder", "wait for the run", "training with AgentRecorder")
    keys += ("final metrics, tags, artifacts, end",)
    times: dict[str, list[float]] = {key: [] for key in keys}
    fit_and_test(cfg, build(cfg), None)  # warm-up: imports, BLAS, caches
    prestart(uri)  # the agent of this process, as `python -m nnbench` starts it
    try:
        for r in range(rounds + 1):  # round 0 creates the store: not counted
            order = ["none", "null", "agent"] if r % 2 == 0 else ["agent", "null", "none"]
            for variant in order:
                parts = build(cfg)  # same seed: the same initial weights, data and batches
                if variant == "none":
                    start = time.perf_counter()
                    fit_and_test(cfg, parts, None)
                    lap = {"no tracking": time.perf_counter() - start}
                elif variant == "null":
                    start = time.perf_counter()
                    fit_and_test(cfg, parts, tracking.NullRecorder().log_epoch)
                    lap = {"NullRecorder": time.perf_counter() - start}
                else:
                    lap = tracked_run(cfg, parts, job, uri, params, r, AgentRecorder, close_record)
                if r > 0:
                    for key, value in lap.items():
                        times[key].append(value)
    finally:
        daemon.stop(agents)
    return times


def tracked_run(cfg, parts, job, uri, params, r, recorder_class, close_record) -> dict:
    from nnbench.flow import fit_and_test

    laps, start = {}, time.perf_counter()
    recorder = recorder_class.start(
        uri=uri, experiment="overhead", run_name=f"run {r}", params=params, tags={}
    )
    _ = recorder.run_id
    laps["wait for the run"] = time.perf_counter() - start
    start = time.perf_counter()
    run = fit_and_test(cfg, parts, recorder.log_epoch)
    laps["training with AgentRecorder"] = time.perf_counter() - start
    start = time.perf_counter()
    close_record(cfg, job, recorder, run)
    recorder.end("FINISHED")
    laps["final metrics, tags, artifacts, end"] = time.perf_counter() - start
    return laps


def summary_b(b: dict[str, list[float]]) -> str:
    base = median(b["no tracking"])
    added = median(b["wait for the run"]) + median(b["final metrics, tags, artifacts, end"])
    added += median(b["training with AgentRecorder"]) - base
    return f"  tracking adds to the run's critical path: {1000 * added:+.1f} ms"


# -------------------------------------------------------------------- (c) the fixed costs
def phase_worker(folder: Path, epochs: int) -> None:
    """One cold run of every tracking phase, in this fresh process; prints JSON. The store
    is ``folder/outputs/mlflow.db``: fresh when it does not exist yet."""
    timings = {}

    def timed(name, fn):
        start = time.perf_counter()
        value = fn()
        timings[name] = time.perf_counter() - start
        return value

    from omegaconf import OmegaConf

    cfg = compose(epochs)
    from nnbench.flow import fit_and_test
    from nnbench.parts import build

    parts = build(cfg)
    timed("import mlflow", lambda: __import__("mlflow"))
    timed("import matplotlib.pyplot", lambda: __import__("matplotlib.pyplot"))
    from nnbench import tracking
    from nnbench.manifest import environment_manifest, git_state
    from nnbench.tracking import store
    from nnbench.tracking.curves import draw_curves
    from nnbench.tracking.params import to_params
    from nnbench.weights import save_weights

    uri = store.default_uri(folder / "outputs")
    client = timed("store client", lambda: store.client(uri))

    def experiment():
        return store.experiment_id(client, "overhead", uri)

    experiment_id = timed("experiment", experiment)
    params, _ = timed("params (flatten)", lambda: to_params(OmegaConf.to_container(cfg)))
    timed("git commit (tag)", git_state)

    def start():
        return tracking.RunRecorder.start(
            client, experiment_id, "phases", params, {"nnbench.outcome": "running"}
        )

    recorder = timed("create run + params + tags", start)
    run = fit_and_test(cfg, parts, recorder.log_epoch)

    def finish():
        test = {k: v for k, v in run.metrics.items() if k.startswith("test/")}
        recorder.log_metrics(test, run.result.epochs)
        recorder.set_tags({tracking.OUTCOME_TAG: run.result.outcome})
        recorder.flush()

    timed("final metrics, tags, flush", finish)
    artifacts = Path(tempfile.mkdtemp(dir=folder))
    model = run.model
    timed(
        "artifact: environment.json",
        lambda: (artifacts / "environment.json").write_text(
            json.dumps(environment_manifest(model.backend), default=str)
        ),
    )
    timed("artifact: weights.npz", lambda: save_weights(artifacts / "w.npz", model.state_dict()))
    timed(
        "artifact: curves.png",
        lambda: draw_curves(run.result.history, artifacts / "curves.png"),
    )
    timed("upload artifacts", lambda: client.log_artifacts(recorder.run_id, str(artifacts)))
    timed("end run", lambda: recorder.end("FINISHED"))
    print(json.dumps(timings))


def run_phase_worker(folder: Path, epochs: int) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--phase-worker", str(folder), "--epochs", str(epochs)],
        cwd=folder,
        env=child_env(folder),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"phase worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def part_c(rounds: int, epochs: int, tmp: Path) -> dict[str, dict[str, list[float]]]:
    """{phase: {"existing store": [...], "fresh store": [...]}}"""
    existing = tmp / "phases-existing"
    existing.mkdir()
    run_phase_worker(existing, 1)  # creates the store; not measured
    times: dict[str, dict[str, list[float]]] = {}
    for r in range(rounds):
        fresh = tmp / f"phases-fresh-{r}"
        fresh.mkdir()
        kinds = [("existing store", existing), ("fresh store", fresh)]
        for kind, folder in kinds if r % 2 == 0 else kinds[::-1]:
            for phase, value in run_phase_worker(folder, epochs).items():
                times.setdefault(phase, {}).setdefault(kind, []).append(value)
        print(f"  (c) round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return times


def table_c(times: dict[str, dict[str, list[float]]]) -> str:
    kinds = ("existing store", "fresh store")
    lines = [
        "(c) fixed costs, each cold in a fresh process (median s over rounds)",
        f"  {'':36s} {kinds[0]:>15s} {kinds[1]:>15s}",
    ]
    for phase, by_kind in times.items():
        lines.append(
            f"  {phase:36s} {median(by_kind[kinds[0]]):15.4f} {median(by_kind[kinds[1]]):15.4f}"
        )
    totals = [sum(median(by_kind[k]) for by_kind in times.values()) for k in kinds]
    lines.append(f"  {'sum':36s} {totals[0]:15.4f} {totals[1]:15.4f}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ output
def median(values: list[float]) -> float:
    return statistics.median(values)


def table(title: str, times: dict[str, list[float]], base: str | None = None) -> str:
    lines = [title, f"  {'':36s} {'median s':>10s} {'min s':>9s} {'max s':>9s} {'ratio':>7s}"]
    for name, values in times.items():
        ratio = f"{median(values) / median(times[base]):7.3f}" if base else ""
        lines.append(
            f"  {name:36s} {median(values):10.4f} {min(values):9.4f} {max(values):9.4f} {ratio}"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--loop-rounds", type=int, default=15, help="rounds of (b), cheap")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 5 epochs")
    parser.add_argument("--skip", default="", help="parts to skip, e.g. 'a' or 'ac'")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS_A),
        help=f"(a)'s variants, compared with none: {', '.join(VARIANTS_A)}",
    )
    parser.add_argument("--phase-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs = 2, 5
    if args.phase_worker is not None:
        phase_worker(args.phase_worker, args.epochs)
        return
    import mlflow

    print(
        f"tracking overhead: digits, {args.epochs} epochs, {args.rounds} rounds; "
        f"mlflow {mlflow.__version__}, python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="nnbench-overhead-") as name:
        tmp = Path(name)
        if "a" not in args.skip:
            chosen = [v for v in args.variants.split(",") if v != "none"]
            a = part_a(args.rounds, args.epochs, tmp, chosen)
            print(table("(a) whole process, python -m nnbench", a, "none"))
            base = median(a["none"])
            print("  added to tracking=none (median over rounds of the round's difference):")
            for variant in list(a)[1:]:
                extra = median([t - n for t, n in zip(a[variant], a["none"], strict=True)])
                print(f"    {variant:34s} {extra:+.3f} s ({100 * extra / base:+.1f}%)")
        if "b" not in args.skip:
            b = part_b(max(args.rounds, args.loop_rounds), args.epochs, tmp)
            print(table("(b) inside a run (training and test), warm agent", b, "no tracking"))
            print(summary_b(b))
        if "c" not in args.skip:
            print(table_c(part_c(args.rounds, args.epochs, tmp)))


if __name__ == "__main__":
    main()
