"""``+sweep=backend_vs_reference`` end to end: every framework benchmarked in its own process,
one child run each under the sweep's parent run, the ones that cannot run here recorded as
failed runs with the reason as their error, and the report ranking them side by side.

The sweep runs once (a tiny network, two short samples per framework, one thread) against a
fresh SQLite store; the tests read what it recorded. What can run here is decided in this
process from what is installed: CuPy with a GPU, PyTorch (with CUDA), scikit-learn.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

import nnbench as nb
from nnbench import config
from nnbench.bench.flops import mlp_flops
from nnbench.bench.measure import FRAMEWORKS
from nnbench.report.runs import BENCH_METRIC, RunRow, default_metric, rank
from nnbench.report.table import markdown, terminal, write_csv
from tests.sweep_helpers import children_of, client_for, nnbench, parents, sweep_env

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")

SIZES, BATCH = (32, 64, 64, 4), 16
SWEEP = (
    "+sweep=backend_vs_reference",
    "bench.model=32-64-64-4",
    f"bench.batch_size={BATCH}",
    "bench.samples=2",
    "bench.warmup=1",
    "bench.min_sample_s=0",
    "bench.threads=1",
)
COMMON_METRICS = ("step_ms_median", "step_ms_spread", "samples_per_s", "gflops", "peak_host_mb")


def why_not(framework: str) -> str | None:
    """Why ``framework`` cannot run here (None: it can), found out independently."""
    library, place = FRAMEWORKS[framework]
    if place == "cupy":
        try:
            nb.get_backend("cupy")
        except nb.BackendUnavailableError as exc:
            return str(exc)
        return None
    if library != "nnbench" and importlib.util.find_spec(library) is None:
        return f"{library} is not installed"
    if place == "cuda":
        import torch

        return None if torch.cuda.is_available() else "no CUDA device"
    return None


UNAVAILABLE = {name: why_not(name) for name in FRAMEWORKS}
RUNNABLE = [name for name, reason in UNAVAILABLE.items() if reason is None]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The sweep, then ``python -m nnbench.report`` on its store: (sweep, report, client)."""
    cwd = tmp_path_factory.mktemp("bench_sweep")
    proc = nnbench(cwd, *SWEEP, timeout=240)
    report = subprocess.run(
        [sys.executable, "-m", "nnbench.report"],
        cwd=cwd,
        env=sweep_env(cwd),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc, report, client_for(cwd), cwd


def first_sweep(client):
    """The sweep's parent run (the resume test adds a second one)."""
    return parents(client)[0]


def by_framework(client) -> dict:
    runs = children_of(client, first_sweep(client))
    return {run.data.tags["nnbench.framework"]: run for run in runs}


def test_sweep_exits_0_with_one_line_per_job_and_no_traceback(sweep):
    proc, _, _, _ = sweep
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[job ")]
    assert len(lines) == len(FRAMEWORKS)
    for name, reason in UNAVAILABLE.items():
        (line,) = [line for line in lines if f"bench.framework={name} " in line]
        assert ": unavailable: " in line if reason else ": completed  step " in line, line


def test_parent_and_one_child_per_framework(sweep):
    _, _, client, _ = sweep
    parent = first_sweep(client)
    children = by_framework(client)
    assert sorted(children) == sorted(FRAMEWORKS)
    assert parent.info.status == "FINISHED"
    assert client.get_experiment(parent.info.experiment_id).name == "sweep-backend_vs_reference"
    for name, run in children.items():
        assert run.info.status == ("FAILED" if UNAVAILABLE[name] else "FINISHED"), name
        assert run.data.tags["nnbench.sweep"] == parent.info.run_id
        assert run.data.params["bench.framework"] == name
        assert run.data.params["bench.batch_size"] == str(BATCH)


def test_runnable_frameworks_have_bench_metrics_and_machine_tags(sweep):
    _, _, client, _ = sweep
    children = by_framework(client)
    assert "nnbench-numpy" in RUNNABLE
    for name in RUNNABLE:
        run = children[name]
        metrics, tags = run.data.metrics, run.data.tags
        assert tags["nnbench.outcome"] == "completed", name
        for key in COMMON_METRICS:
            assert metrics[f"bench/{key}"] > 0, (name, key)
        assert metrics["bench/samples"] == 2
        assert metrics["bench/flops_per_step"] == mlp_flops(SIZES, BATCH)["total"]
        assert tags["nnbench.threads"] == "1"
        assert tags["nnbench.env.blas_threads"] == "1", name  # limited in the worker
        assert tags["nnbench.env.cpu"] and tags["nnbench.env.blas"]
        assert tags["nnbench.dtype"] == "float32"
        has_floor = name.startswith("nnbench-")  # the GEMM-only floor is nnbench's own
        assert ("bench/step_over_floor" in metrics) == has_floor, name


def test_each_framework_ran_in_its_own_process(sweep):
    """Only the torch worker loaded PyTorch, only the sklearn worker scikit-learn."""
    _, _, client, _ = sweep
    children = by_framework(client)
    for name in RUNNABLE:
        tags = children[name].data.tags
        library, _ = FRAMEWORKS[name]
        assert ("nnbench.env.torch" in tags) == (library == "torch"), name
        assert ("nnbench.env.sklearn" in tags) == (library == "sklearn"), name


def test_torch_cpu_was_measured(sweep):
    if UNAVAILABLE["torch-cpu"]:
        pytest.skip(f"PyTorch is not installed here ({UNAVAILABLE['torch-cpu']})")
    _, _, client, _ = sweep
    run = by_framework(client)["torch-cpu"]
    assert run.data.tags["nnbench.outcome"] == "completed"
    assert run.data.metrics["bench/step_ms_median"] > 0
    assert run.data.tags["nnbench.backend"] == "torch"
    assert run.data.tags["nnbench.device"] == "cpu"
    assert run.data.tags["nnbench.env.torch_threads"] == "1"


def test_unavailable_frameworks_are_recorded_with_the_reason(sweep):
    unavailable = [name for name, reason in UNAVAILABLE.items() if reason]
    if not unavailable:
        pytest.skip("every framework runs here (CuPy with a GPU, PyTorch with CUDA)")
    _, _, client, _ = sweep
    children = by_framework(client)
    for name in unavailable:
        run = children[name]
        assert run.info.status == "FAILED", name
        assert run.data.tags["nnbench.outcome"] == "failed", name
        error = run.data.tags["nnbench.error"]
        assert error.startswith("unavailable here: ") and len(error) > 20, error
        assert "nnbench.unavailable" not in run.data.tags
        assert not [key for key in run.data.metrics if key.startswith("bench/")]
    if UNAVAILABLE["nnbench-cupy"]:
        error = children["nnbench-cupy"].data.tags["nnbench.error"]
        assert error == f"unavailable here: {UNAVAILABLE['nnbench-cupy']}"


def test_parent_summary_ranks_by_step_time(sweep):
    _, _, client, cwd = sweep
    parent = first_sweep(client)
    tags, metrics = parent.data.tags, parent.data.metrics
    assert tags["nnbench.summary.metric"] == BENCH_METRIC
    children = by_framework(client)
    fastest = min(RUNNABLE, key=lambda name: children[name].data.metrics[BENCH_METRIC])
    assert tags["nnbench.best.bench.framework"] == fastest
    assert metrics["runs/completed"] == len(RUNNABLE)
    assert metrics.get("runs/failed", 0) == len(FRAMEWORKS) - len(RUNNABLE)
    assert "runs/unavailable" not in metrics
    (summary,) = (cwd / "outputs" / "multirun").glob("*/*/summary/runs.md")
    assert f"Sorted by final `{BENCH_METRIC}` (lowest first)" in summary.read_text()


def test_report_shows_every_framework_ranked_unavailable_last_as_failed(sweep):
    _, report, _, _ = sweep
    assert report.returncode == 0, report.stderr
    out = report.stdout
    assert f"sorted by final {BENCH_METRIC}, lowest first" in out
    rows = [line.split() for line in out.splitlines()]
    rows = [row for row in rows if len(row) > 2 and row[1] in FRAMEWORKS]  # table rows
    assert sorted(row[1] for row in rows) == sorted(FRAMEWORKS)
    ranks = [row[0] for row in rows]
    assert ranks == [str(i) for i in range(1, len(RUNNABLE) + 1)] + ["-"] * (
        len(FRAMEWORKS) - len(RUNNABLE)
    )
    assert all(row[3] == "-" for row in rows)  # no epochs in a benchmark run
    for row in rows[len(RUNNABLE) :]:
        assert row[2:6] == ["failed", "-", "failed:", "unavailable"], row
    if UNAVAILABLE["nnbench-cupy"]:
        assert "failed: unavailable here: backend=cupy: CuPy is not installed" in out


def test_resumed_sweep_skips_measured_jobs_and_retries_unavailable(sweep):
    """Run again: what was measured stands (tracking.resume); what could not run failed, and
    a failed run is tried again."""
    _, _, _, cwd = sweep
    again = nnbench(cwd, *SWEEP, timeout=240)
    assert again.returncode == 0, again.stderr
    lines = [line for line in again.stdout.splitlines() if line.startswith("[job ")]
    for name, reason in UNAVAILABLE.items():
        (line,) = [line for line in lines if f"bench.framework={name} " in line]
        assert (": unavailable: " if reason else ": skipped, already completed") in line


def test_single_run_of_an_unavailable_framework_is_a_user_error(tmp_path):
    """Outside a multirun nothing else would be measured: one line, exit 2, no run."""
    unavailable = [name for name, reason in UNAVAILABLE.items() if reason]
    if not unavailable:
        pytest.skip("every framework runs here (CuPy with a GPU, PyTorch with CUDA)")
    name = unavailable[0]
    proc = nnbench(tmp_path, "+bench=default", f"bench.framework={name}", timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("nnbench: error: ")
    if name == "nnbench-cupy":  # the backend's own reason, word for word
        assert line == f"nnbench: error: {UNAVAILABLE[name]}"
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


# ------------------------------------------------------------------ config and ranking
def _bench_cfg(*overrides: str):
    config.register()
    with initialize_config_module("nnbench.conf", version_base="1.3"):
        return compose("config", overrides=["+bench=default", *overrides])


def test_bench_default_composes_and_passes_check():
    cfg = _bench_cfg()
    config.check(cfg)
    assert cfg.bench.framework == "nnbench-numpy" and cfg.bench.model == "784-256-256-10"
    assert (cfg.bench.batch_size, cfg.bench.optimizer) == (256, "sgd")


@pytest.mark.parametrize(("key", "ok", "allowed"), config.BENCH_RANGES)
def test_bench_range_rejects_a_bad_value(key, ok, allowed):
    cfg = _bench_cfg()
    OmegaConf.update(cfg, key, -1)
    with pytest.raises(ValueError, match=rf"^Invalid {key}: -1(\.0)? \("):
        config.check(cfg)


@pytest.mark.parametrize(("key", "choices"), config.BENCH_CHOICES)
def test_bench_choice_rejects_an_unknown_value(key, choices):
    cfg = _bench_cfg()
    for choice in choices:
        OmegaConf.update(cfg, key, choice)
        config.check(cfg)
    OmegaConf.update(cfg, key, "nope")
    with pytest.raises(ValueError, match=rf"^Invalid {key}: 'nope' \(allowed: "):
        config.check(cfg)


@pytest.mark.parametrize("model", ["784", "784-0-10", "784-x-10", ""])
def test_bench_model_must_be_layer_widths(model):
    cfg = _bench_cfg()
    OmegaConf.update(cfg, "bench.model", model)
    with pytest.raises(ValueError, match=r"^Invalid bench\.model: "):
        config.check(cfg)


def _row(name, outcome, metrics=None, start=0):
    return RunRow(name, name, outcome, {}, metrics or {}, start)


def test_default_metric_is_step_time_for_benchmarks_only():
    bench = [_row("a", "completed", {BENCH_METRIC: 1.0})]
    assert default_metric(bench) == BENCH_METRIC
    assert default_metric(bench + [_row("b", "completed", {"val/loss": 0.5})]) == "val/loss"
    assert default_metric([_row("c", "failed")]) == "val/loss"


def test_unavailable_framework_ranks_with_failed_runs_and_shows_why():
    """No outcome of its own: a failed run, after every ranked one, its error as the note."""
    rows = [
        _row("gone", "failed", start=9),
        _row("slow", "completed", {BENCH_METRIC: 2.0}),
        _row("blew", "diverged", start=7),
        _row("fast", "completed", {BENCH_METRIC: 1.0}),
    ]
    rows[0].error = "unavailable here: backend=cupy: CuPy is not installed; install it"
    ordered = rank(rows, BENCH_METRIC, descending=False)
    assert [row.name for row in ordered] == ["fast", "slow", "gone", "blew"]
    gone = ordered[2]
    assert gone.rank is None
    assert gone.note() == f"failed: {gone.error}"


def test_epochs_column_is_a_dash_for_runs_without_epoch_metrics(tmp_path):
    """A benchmark run has no epochs: ``-`` (an empty CSV cell), not 0. A training run that
    ended in its first epoch completed 0, which stays a number."""
    bench = _row("bench", "completed", {BENCH_METRIC: 1.0})
    trained = _row("trained", "completed", {BENCH_METRIC: 2.0})
    trained.params["trainer.epochs"] = "3"
    assert (bench.epochs, trained.epochs) == (None, 0)
    trained.curve = [(1, 0.9), (2, 0.5), (3, 0.4)]
    rows = rank([bench, trained], BENCH_METRIC, descending=False)
    lines = terminal(rows, [], [BENCH_METRIC]).splitlines()
    assert lines[0].split() == ["rank", "outcome", "epochs", BENCH_METRIC]
    cells = [line.split()[:3] for line in lines[2:]]
    assert cells == [["1", "completed", "-"], ["2", "completed", "3"]]
    table = markdown(rows, [], [BENCH_METRIC]).splitlines()
    assert [line.split(" | ")[:3] for line in table[2:]] == [
        ["| 1", "completed", "-"],
        ["| 2", "completed", "3"],
    ]
    csv_lines = write_csv(rows, [], tmp_path / "runs.csv").read_text().splitlines()
    assert csv_lines[0].split(",")[4] == "epochs"
    assert [line.split(",")[4] for line in csv_lines[1:]] == ["", "3"]
