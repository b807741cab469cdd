"""Resumable sweeps: run the same multirun again and only what is not done yet runs.

One sweep of three jobs (optimizer.lr 0.01 and 0.1 complete, 10.0 diverges: a diverged run
is a result, so it counts as done), then, in the same folder and store:

    again      the same command: all three skipped, their earlier runs in the summary
    repaired   one run marked FAILED, one deleted: only those two jobs run again
    longer     trainer.epochs changed: the config hash differs, all three run

In-process: tracking.resume=false and a single run never look for an earlier run. The
config hash (tag nnbench.config_hash) is checked against SHA-256 of canonical JSON written
out by hand.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from omegaconf import OmegaConf

from nnbench.tracking import Job
from nnbench.tracking.resume import config_hash
from tests.sweep_helpers import children_of, client_for, nnbench, parents

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")

SWEEP = ("+sweep=lr", "optimizer.lr=0.01,0.1,10.0", "trainer.epochs=2")
SKIPPED = re.compile(r"^\[job (\d+)\] optimizer\.lr=(\S+) .*: skipped, already (\w+) in run (\w+)$")


def skipped(stdout: str) -> dict[str, tuple[str, str]]:
    """{lr: (outcome, run id)} of the "skipped, already ..." job lines."""
    found = {}
    for line in stdout.splitlines():
        match = SKIPPED.match(line)
        if match:
            found[match.group(2)] = (match.group(3), match.group(4))
    return found


def by_lr(runs) -> dict[str, str]:
    """{optimizer.lr: run id}."""
    return {run.data.params["optimizer.lr"]: run.info.run_id for run in runs}


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """Every stage run in order; for each, the process and the sweep's parent run; and the
    first sweep's {lr: (run id, outcome)}."""
    cwd = tmp_path_factory.mktemp("resume")
    client = client_for(cwd)
    stages = {}

    def sweep(name, *args):
        proc = nnbench(cwd, *args)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        stages[name] = (proc, parents(client)[-1])

    sweep("first", *SWEEP)
    first_runs = children_of(client, stages["first"][1])
    outcomes = {r.data.params["optimizer.lr"]: r.data.tags["nnbench.outcome"] for r in first_runs}
    first = by_lr(first_runs)
    sweep("again", *SWEEP)
    client.set_terminated(first["0.1"], status="FAILED")
    client.delete_run(first["10.0"])
    sweep("repaired", *SWEEP)
    sweep("longer", "+sweep=lr", "optimizer.lr=0.01,0.1,10.0", "trainer.epochs=3")
    return client, stages, first, outcomes


def test_first_sweep_runs_everything(story):
    _, stages, first, outcomes = story
    proc, _ = stages["first"]
    assert sorted(first) == ["0.01", "0.1", "10.0"]
    assert skipped(proc.stdout) == {}
    assert outcomes == {"0.01": "completed", "0.1": "completed", "10.0": "diverged"}


def test_rerun_skips_every_done_job(story):
    client, stages, first, _ = story
    proc, parent = stages["again"]
    assert skipped(proc.stdout) == {
        "0.01": ("completed", first["0.01"]),
        "0.1": ("completed", first["0.1"]),
        "10.0": ("diverged", first["10.0"]),
    }
    assert children_of(client, parent) == []  # nothing ran
    assert "nnbench: skipped 3 job(s) already done" in proc.stdout
    assert parent.info.status == "FINISHED"
    # The summary still compares the whole sweep: the earlier runs stand in.
    assert parent.data.metrics["runs/total"] == 3
    assert parent.data.metrics["runs/completed"] == 2
    assert parent.data.metrics["runs/diverged"] == 1
    assert parent.data.tags["nnbench.best_run_id"] == first["0.1"]


def test_failed_and_deleted_runs_run_again(story):
    client, stages, first, _ = story
    proc, parent = stages["repaired"]
    assert skipped(proc.stdout) == {"0.01": ("completed", first["0.01"])}
    rerun = children_of(client, parent)
    assert sorted(by_lr(rerun)) == ["0.1", "10.0"]
    assert {r.info.status for r in rerun} == {"FINISHED"}
    assert parent.data.metrics["runs/total"] == 3


def test_changed_config_runs_everything(story):
    client, stages, _, _ = story
    proc, parent = stages["longer"]
    assert skipped(proc.stdout) == {}
    assert sorted(by_lr(children_of(client, parent))) == ["0.01", "0.1", "10.0"]


# ---------------------------------------------------------------- when resuming applies
def job_cfg(*overrides: str):
    from hydra import compose, initialize_config_module

    from nnbench import config

    config.register()
    with initialize_config_module("nnbench.conf", version_base="1.3"):
        return compose("config", overrides=["+sweep=lr", *overrides])


# A parent run in a store that does not exist: looking at it would fail the test.
NOWHERE = {"uri": "sqlite:////nonexistent/mlflow.db", "experiment_id": "1", "parent_run_id": "p"}


def _job(**fields) -> Job:
    values = {"multirun": True, "num": 0, "overrides": (), "changed": (), "choices": {}}
    values.update(sweep_dir="nowhere", output_dir="nowhere", hydra_dir=None)
    return Job(**{**values, **fields})


def test_resume_false_forces_a_rerun():
    from nnbench import flow

    cfg = job_cfg("tracking.resume=false")
    assert flow.earlier_run(cfg, _job(parent=NOWHERE, config_hash="h")) is None


def test_single_run_always_runs():
    """A single run has no sweep parent: nothing is looked up, it trains."""
    from nnbench import flow

    cfg = job_cfg()
    job = flow.prepare_tracking(cfg, _job(multirun=False, num=None))
    assert job.parent is None
    assert flow.earlier_run(cfg, job) is None
    assert job.config_hash == config_hash(
        OmegaConf.to_container(cfg, resolve=True)
    )  # recorded on the run all the same


# ---------------------------------------------------------------- the config hash
def test_hash_is_sha256_of_canonical_json():
    """Keys sorted, no spaces: {"b":[1,2],"a":0.5} hashes as '{"a":0.5,"b":[1,2]}'."""
    expected = hashlib.sha256(b'{"a":0.5,"b":[1,2]}').hexdigest()
    assert config_hash({"b": [1, 2], "a": 0.5}) == expected


def test_hash_ignores_what_does_not_change_the_result():
    base = {"seed": 0, "trainer": {"epochs": 2, "progress": "auto"}, "dataset": {"name": "mnist"}}
    noisy = {
        "seed": 0,
        "trainer": {"epochs": 2, "progress": "none"},
        "dataset": {"name": "mnist", "root": "/cache", "download": True, "verify": False},
        "tracking": {"name": "mlflow", "uri": "http://127.0.0.1:5000", "resume": False},
    }
    expected = hashlib.sha256(b'{"dataset":{"name":"mnist"},"seed":0,"trainer":{"epochs":2}}')
    assert config_hash(base) == config_hash(noisy) == expected.hexdigest()


def test_hash_changes_with_what_does():
    base = {"seed": 0, "trainer": {"epochs": 2}}
    assert config_hash(base) != config_hash({"seed": 1, "trainer": {"epochs": 2}})
    assert config_hash(base) != config_hash({"seed": 0, "trainer": {"epochs": 3}})
