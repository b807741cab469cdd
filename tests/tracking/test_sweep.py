"""A parallel sweep on a store that does not exist yet: Hydra's joblib launcher runs 4 jobs
at once, each a child run of the sweep's parent run, and every epoch of every job lands
(no "database is locked", no race through the store's schema migrations)."""

from __future__ import annotations

import pytest

from .conftest import all_runs, artifact_paths, assert_none_running, client_for, history, nnbench

pytest.importorskip("hydra_plugins.hydra_joblib_launcher")

RATES = ("0.001", "0.01", "0.1", "1.0")
EPOCHS = 3


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("sweep")
    assert not (cwd / "outputs").exists()  # a fresh store
    proc = nnbench(
        cwd,
        "+sweep=lr",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=4",
        f"optimizer.lr={','.join(RATES)}",
        f"trainer.epochs={EPOCHS}",
        timeout=180,
    )
    return proc, client_for(cwd)


def test_exits_cleanly_without_store_errors(sweep):
    proc, _ = sweep
    assert proc.returncode == 0, proc.stderr
    output = (proc.stdout + proc.stderr).lower()
    for symptom in ("database is locked", "alembic", "_alembic_tmp", "traceback"):
        assert symptom not in output, symptom


def test_parent_and_one_child_per_job(sweep):
    _, client = sweep
    runs = all_runs(client)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    (parent,) = parents
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(RATES) and len(runs) == len(RATES) + 1
    assert sorted(float(c.data.params["optimizer.lr"]) for c in children) == sorted(
        float(rate) for rate in RATES
    )
    assert client.get_experiment(parent.info.experiment_id).name == "sweep-lr"
    assert {c.info.experiment_id for c in children} == {parent.info.experiment_id}
    assert {c.data.tags["nnbench.sweep"] for c in children} == {parent.info.run_id}
    assert parent.info.status == "FINISHED"
    assert_none_running(client)


def test_every_child_has_all_its_epochs(sweep):
    _, client = sweep
    children = [r for r in all_runs(client) if "mlflow.parentRunId" in r.data.tags]
    for child in children:
        assert child.info.status == "FINISHED", child.info.run_name
        outcome = child.data.tags["nnbench.outcome"]
        assert outcome in ("completed", "diverged"), outcome
        steps = [step for step, _ in history(client, child.info.run_id, "val/loss")]
        if outcome == "completed":
            assert steps == list(range(1, EPOCHS + 1)), child.info.run_name
            assert "test/acc" in child.data.metrics


def test_digits_children_have_no_decision_boundary(sweep):
    """digits has 64 inputs: no decision-boundary picture, the other artifacts are there."""
    _, client = sweep
    children = [r for r in all_runs(client) if "mlflow.parentRunId" in r.data.tags]
    for child in children:
        found = artifact_paths(client, child.info.run_id)
        assert {"config.yaml", "curves.png", "weights.npz", "environment.json"} <= found
        assert "decision_boundary.png" not in found
