"""``hydra/launcher=stacked`` records what the basic launcher records, job for job.

In-process: how jobs are grouped (`nnbench.stack_plan`): only values may differ inside a
stack, anything else starts another group and is named; a group larger than
hydra.launcher.max_members is cut into even stacks; benchmark and CUDA-graph jobs train alone.

End to end (``python -m nnbench`` in a fresh folder): the same sweep through the basic and
the stacked launcher prints the same job lines (learning rates with a divergence; seeds x
dropout x L2 x batch normalization, two stacks) and, tracked, leaves the same runs: params,
every logged value of every epoch, tags, outcome, artifacts. A job with an invalid config
ends the sweep with one line and exit status 2 once the others are recorded; a second run of
the sweep skips every job.
"""

from __future__ import annotations

import math

import pytest
import yaml
from omegaconf import OmegaConf

from nnbench.stack_plan import plan_stacks
from tests.cli_helpers import jobs, run_nnbench
from tests.sweep_helpers import children_of, client_for, nnbench, parents

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
STACKED = ("hydra/launcher=stacked",)
LR_SWEEP = ("+sweep=lr", "optimizer.lr=0.01,0.3,10.0", "trainer.epochs=3")
# Timing, not results: they differ between any two runs.
TIMING = ("time/epoch_s", "throughput/samples_per_s")
# What names the run or the sweep rather than the job's result.
IDENTITY_TAGS = ("mlflow.parentRunId", "nnbench.sweep", "mlflow.runName", "nnbench.stack")


def config(**values):
    base = {
        "seed": 0,
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "model": {"hidden": [64], "dropout": 0.0, "batchnorm": False, "l2": 0.0},
        "trainer": {"epochs": 3, "cuda_graph": False},
        "bench": None,
        "hydra": {"job": {"num": 0}},
    }
    return OmegaConf.merge(base, OmegaConf.from_dotlist([f"{k}={v}" for k, v in values.items()]))


# ---------------------------------------------------------------------- grouping
def test_values_share_a_stack():
    configs = [config(**{"optimizer.lr": lr, "seed": s}) for lr in (0.1, 1) for s in (0, 1)]
    configs.append(config(**{"model.dropout": 0.5, "model.l2": 0.01, "optimizer.momentum": 0}))
    plan = plan_stacks(configs, max_members=64)
    assert plan.stacks == [[0, 1, 2, 3, 4]]
    assert plan.line == "5 jobs in 1 stack"


def test_shapes_and_kinds_start_another_stack():
    configs = [
        config(**{"model.batchnorm": bn, "optimizer.lr": lr}) for lr in (1, 2) for bn in (0, 1)
    ]
    configs.append(config(**{"model.hidden": "[32]"}))
    plan = plan_stacks(configs, max_members=64)
    assert plan.stacks == [[0, 2], [1, 3], [4]]
    assert plan.line == "5 jobs in 3 stacks (model.batchnorm, model.hidden differ)"


def test_large_groups_are_cut_evenly():
    plan = plan_stacks([config(**{"optimizer.lr": k + 1}) for k in range(9)], max_members=4)
    assert [len(stack) for stack in plan.stacks] == [3, 3, 3]
    assert sum(plan.stacks, []) == list(range(9))
    assert plan.line == "9 jobs in 3 stacks (at most 4 members a stack: hydra.launcher.max_members)"


def test_benchmark_and_cuda_graph_jobs_train_alone():
    configs = [config(), config(), config(**{"trainer.cuda_graph": True}), config()]
    configs[3].bench = {"framework": "nnbench"}
    plan = plan_stacks(configs, max_members=64)
    assert plan.stacks == [[0, 1], [2], [3]]


# ---------------------------------------------------------------------- end to end
def lines(proc) -> dict[int, str]:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return jobs(proc.stdout)


def job_folders(cwd) -> list:
    (sweep,) = (cwd / "outputs" / "multirun").glob("*/*")
    return sorted(path for path in sweep.iterdir() if path.is_dir())


def hydra_files(folder) -> dict:
    """A job's .hydra/ files, read, without what names the launcher or the sweep's time."""
    files = {p.name: yaml.safe_load(p.read_text()) for p in (folder / ".hydra").iterdir()}
    hydra = files["hydra.yaml"]["hydra"]
    runtime = hydra["runtime"]
    for node, key in (
        (hydra, "launcher"),
        (hydra["overrides"], "hydra"),
        (runtime["choices"], "hydra/launcher"),
        (runtime, "output_dir"),
        (runtime, "cwd"),
    ):
        node.pop(key)
    return files


def test_lr_sweep_lines_and_job_folders_equal_the_basic_launchers(tmp_path):
    (tmp_path / "basic").mkdir()
    (tmp_path / "stacked").mkdir()
    basic = lines(run_nnbench(tmp_path / "basic", *LR_SWEEP))
    stacked_proc = run_nnbench(tmp_path / "stacked", *LR_SWEEP, *STACKED)
    assert lines(stacked_proc) == basic
    assert "diverged at epoch" in basic[2]
    assert "Launching 3 jobs stacked: 3 jobs in 1 stack" in stacked_proc.stdout
    # Each job's folder and .hydra/ (config, overrides, Hydra's config) as Hydra writes them.
    folders = job_folders(tmp_path / "stacked")
    expected = job_folders(tmp_path / "basic")
    assert [f.name for f in folders] == [f.name for f in expected] == ["0", "1", "2"]
    for got, want in zip(folders, expected, strict=True):
        assert hydra_files(got) == hydra_files(want)


def test_an_invalid_job_ends_the_sweep_once_the_others_are_done(tmp_path):
    proc = run_nnbench(tmp_path, "+sweep=lr", "optimizer.lr=0.1,-1,0.01", *STACKED)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "nnbench: error: Invalid optimizer.lr: -1.0 (must be > 0)"
    )
    done = jobs(proc.stdout)
    assert "completed" in done[0] and "completed" in done[2]
    assert done[1].endswith("not run: Invalid optimizer.lr: -1.0 (must be > 0)")


def test_max_members_must_be_a_positive_integer(tmp_path):
    proc = run_nnbench(tmp_path, *LR_SWEEP, *STACKED, "hydra.launcher.max_members=0")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "nnbench: error: Invalid hydra.launcher.max_members: 0 (must be an integer >= 1)"
    )


# ---------------------------------------------------------------------- tracked
def record(client, run) -> dict:
    """What a run records about its job: params, every value of every metric, tags, how it
    ended and its artifacts; not what names the run or times it."""
    histories = {
        key: [
            (m.step, m.value)
            for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        ]
        for key in run.data.metrics
        if key not in TIMING
    }
    tags = {
        k: v
        for k, v in run.data.tags.items()
        if k not in IDENTITY_TAGS and not k.startswith("mlflow.")
    }
    artifacts = sorted(a.path for a in client.list_artifacts(run.info.run_id))
    return {
        "status": run.info.status,
        "params": run.data.params,
        "metrics": histories,
        "tags": tags,
        "artifacts": artifacts,
    }


def sweep_records(cwd, *args) -> tuple[dict, object]:
    proc = nnbench(cwd, *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = client_for(cwd)
    (parent,) = parents(client)
    children = children_of(client, parent)
    by_job = {c.data.tags["nnbench.overrides"]: record(client, c) for c in children}
    return by_job, parent, proc.stdout


def largest_difference(a: dict, b: dict) -> float:
    worst = 0.0
    for key in a:
        for (step_a, x), (step_b, y) in zip(a[key], b[key], strict=True):
            assert step_a == step_b, key
            if x != y:
                worst = max(worst, abs(x - y) / max(abs(x), abs(y)))
    return worst


# The three sweeps, small: learning rates (one diverges), and seeds x dropout x
# L2 x batch normalization with Adam (two stacks).
TRACKED_SWEEPS = {
    "lr": (LR_SWEEP, ["completed", "completed", "diverged"], "3 jobs in 1 stack"),
    "seeds-regularization": (
        (
            "+sweep=regularization",
            "model.dropout=0.0,0.5",
            "model.l2=0.0,0.01",
            "model.batchnorm=false,true",
            "seed=0,1",
            "optimizer=adam",
            "optimizer.lr=0.01",
            "trainer.epochs=2",
        ),
        ["completed"] * 16,
        "16 jobs in 2 stacks (model.batchnorm differs)",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("sweep", list(TRACKED_SWEEPS))
def test_tracked_stack_records_what_the_basic_launcher_records(tmp_path, sweep):
    """Every child run: the same params, tags, outcome, artifacts and status, and every
    logged value of every epoch equal (checked to 1e-9 relative; on NumPy they are
    bit-identical, which the engine's own tests assert)."""
    args, outcomes, grouping = TRACKED_SWEEPS[sweep]
    (tmp_path / "basic").mkdir()
    (tmp_path / "stacked").mkdir()
    basic, _, basic_out = sweep_records(tmp_path / "basic", *args)
    stacked, parent, stacked_out = sweep_records(tmp_path / "stacked", *args, *STACKED)
    assert jobs(stacked_out) == jobs(basic_out)  # the job lines too
    assert f"Launching {len(outcomes)} jobs stacked: {grouping}" in stacked_out
    assert sorted(stacked) == sorted(basic)
    for job, expected in basic.items():
        got = stacked[job]
        assert got["metrics"].keys() == expected["metrics"].keys(), job
        assert largest_difference(got["metrics"], expected["metrics"]) <= 1e-9, job
        assert {k: v for k, v in got.items() if k != "metrics"} == {
            k: v for k, v in expected.items() if k != "metrics"
        }, job
    assert sorted(r["tags"]["nnbench.outcome"] for r in stacked.values()) == outcomes
    assert parent.data.metrics["runs/total"] == len(outcomes)
    assert not math.isnan(parent.data.metrics.get("runs/completed", math.nan))
    if sweep == "lr":  # run again, the stacked sweep skips every job it did
        again = nnbench(tmp_path / "stacked", *args, *STACKED)
        assert again.returncode == 0, again.stderr[-3000:]
        done = jobs(again.stdout)
        assert len(done) == 3 and all("skipped, already" in line for line in done.values())


def test_one_progress_line_per_stack(tmp_path):
    """trainer.progress=bar (what a terminal gets): the stack's line, redrawn in place,
    then wiped before the job lines."""
    proc = run_nnbench(
        tmp_path,
        "+sweep=lr",
        "optimizer.lr=0.01,10.0",
        "trainer.epochs=2",
        "trainer.progress=bar",
        *STACKED,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # lr=10 diverges in its first epoch and leaves the stack before that epoch's line
    assert "\rstack 1/1: epoch 1/2, 1 of 2 members training\033[K" in proc.stderr
    assert "\rstack 1/1: epoch 2/2, 1 of 2 members training\033[K" in proc.stderr
    assert proc.stderr.rstrip("\n").endswith("\r\033[K")
