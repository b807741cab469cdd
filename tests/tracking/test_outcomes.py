"""How a run ends, as the store records it: diverged (FINISHED), an exception (FAILED with
the message), SIGTERM (KILLED, the epochs logged so far kept). No run is left RUNNING."""

from __future__ import annotations

import math
import re
import signal

import pytest

from .conftest import (
    all_runs,
    assert_none_running,
    client_for,
    history,
    nnbench,
    wait_for,
)

# Plain SGD at lr 0.1 on sine with batches of 256: a few finite epochs, then a non-finite
# loss (at epoch 3 today). A run that diverges in its first epoch would log no epoch metric
# at all and make "no non-finite value was recorded" vacuous.
DIVERGING = (
    "dataset=sine",
    "optimizer=sgd",
    "optimizer.lr=0.1",
    "trainer.batch_size=256",
    "trainer.epochs=20",
)
# Long enough to be interrupted mid-training: 2000 epochs of digits in batches of 8.
LONG = ("trainer.epochs=2000", "trainer.batch_size=8")


def all_metric_values(client, run_id: str) -> dict[str, list[float]]:
    run = client.get_run(run_id)
    return {key: [v for _, v in history(client, run_id, key)] for key in run.data.metrics}


def test_divergence_is_finished_diverged_without_nonfinite_values(tmp_path):
    proc = nnbench(tmp_path, *DIVERGING)
    assert proc.returncode == 0, proc.stderr
    client = client_for(tmp_path)
    (run,) = all_runs(client)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["nnbench.outcome"] == "diverged"
    found = re.fullmatch(r"epoch (\d+), step (\d+)", tags["nnbench.diverged_at"])
    assert found, tags["nnbench.diverged_at"]
    epoch = int(found[1])
    assert epoch >= 2, "pick a setting that diverges after a finite epoch"
    values = all_metric_values(client, run.info.run_id)
    assert values, "the finite epochs before the divergence are recorded"
    assert all(math.isfinite(v) for series in values.values() for v in series), values
    steps = [step for step, _ in history(client, run.info.run_id, "train/loss")]
    assert steps == list(range(1, epoch))  # the diverged epoch itself is not a number
    assert not any(key.startswith("test/") for key in values)
    # when it diverged, as metrics at its last finite epoch: what the UI's charts can show
    assert history(client, run.info.run_id, "diverged/epoch") == [(epoch - 1, epoch)]
    assert history(client, run.info.run_id, "diverged/step") == [(epoch - 1, int(found[2]))]
    # its last finite values are its last epoch's: no pre-training value at step 0
    assert [s for s, _ in history(client, run.info.run_id, "val/loss")] == list(range(1, epoch))
    assert "nnbench.error" not in tags
    assert_none_running(client)


def test_exception_in_a_job_is_failed_with_its_message(tmp_path):
    """A genuine failure that is not the user's doing, without a hook in the library: the
    artifact folder of the default store (outputs/mlartifacts) is a plain file, so logging
    the artifacts at the end of the run raises NotADirectoryError inside the job. The run
    is FAILED with that message, the epochs it logged are kept, the exit code is non-zero
    (and not 2, which means a user error)."""
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "mlartifacts").write_text("in the way\n")
    proc = nnbench(tmp_path, "trainer.epochs=2")
    assert proc.returncode not in (0, 2), (proc.returncode, proc.stderr)
    assert "NotADirectoryError" in proc.stderr
    client = client_for(tmp_path)
    (run,) = all_runs(client)
    assert run.info.status == "FAILED"
    assert run.data.tags["nnbench.outcome"] == "failed"
    error = run.data.tags["nnbench.error"]
    assert error.startswith("NotADirectoryError: ") and "mlartifacts" in error, error
    assert [s for s, _ in history(client, run.info.run_id, "val/loss")] == [1, 2]
    assert_none_running(client)


def epochs_logged(client, run_id: str) -> int:
    return len(history(client, run_id, "train/loss"))


def first_run_with_epochs(cwd, child: bool = False):
    """The run id of the first (child) run with at least one epoch recorded, else None."""
    if not (cwd / "outputs" / "mlflow.db").exists():
        return None
    client = client_for(cwd)
    for run in all_runs(client):
        if child and "mlflow.parentRunId" not in run.data.tags:
            continue
        if epochs_logged(client, run.info.run_id) >= 1:
            return run.info.run_id
    return None


def terminate(proc, timeout: float = 60) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def test_sigterm_kills_the_run_and_keeps_its_epochs(tmp_path, spawn):
    proc = spawn(tmp_path, *LONG)
    run_id = wait_for(lambda: first_run_with_epochs(tmp_path), 90, "a run with epochs", proc)
    code = terminate(proc)
    assert code != 0
    client = client_for(tmp_path)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["nnbench.outcome"] == "interrupted"
    logged = history(client, run_id, "train/loss")
    assert len(logged) >= 1
    assert [s for s, _ in logged] == list(range(1, len(logged) + 1))
    assert len(logged) < 2000
    assert_none_running(client)


def test_sigterm_to_a_sweep_kills_parent_and_child(tmp_path, spawn):
    """The launcher of a (sequential) multirun is terminated while its first job trains:
    the job's run and the sweep's parent run both end KILLED, neither stays RUNNING, and
    the second job never starts."""
    proc = spawn(tmp_path, "+sweep=lr", "optimizer.lr=0.01,0.1", *LONG)
    child_id = wait_for(
        lambda: first_run_with_epochs(tmp_path, child=True), 90, "a child run with epochs", proc
    )
    code = terminate(proc)
    assert code != 0
    client = client_for(tmp_path)
    runs = all_runs(client)
    child = client.get_run(child_id)
    parent_id = child.data.tags["mlflow.parentRunId"]
    parent = client.get_run(parent_id)
    assert {r.info.run_id for r in runs} == {parent_id, child_id}
    assert child.info.status == "KILLED"
    assert child.data.tags["nnbench.outcome"] == "interrupted"
    assert epochs_logged(client, child_id) >= 1
    assert parent.info.status == "KILLED"
    assert parent.data.tags["nnbench.outcome"] == "interrupted"
    assert_none_running(client)


def test_sigterm_early_in_a_sweep_leaves_nothing_running(tmp_path, spawn):
    """SIGTERM as soon as the parent run exists, while the first job is still being set up
    (composing, loading data, creating its run): no run may stay RUNNING."""
    proc = spawn(tmp_path, "+sweep=lr", "optimizer.lr=0.01,0.1", *LONG)

    def parent_exists():
        if not (tmp_path / "outputs" / "mlflow.db").exists():
            return None
        return all_runs(client_for(tmp_path))

    wait_for(parent_exists, 90, "the parent run", proc)
    terminate(proc)
    client = client_for(tmp_path)
    runs = all_runs(client)
    assert runs
    assert_none_running(client)
    for run in runs:
        assert run.info.status == "KILLED", (run.info.run_name, run.info.status)
        assert run.data.tags["nnbench.outcome"] == "interrupted", run.info.run_name


def test_sigterm_to_a_parallel_sweep_kills_every_run(tmp_path, spawn):
    """With the joblib launcher the jobs run in worker processes, which joblib kills (not
    signals) when the launcher is interrupted: the launcher ends their runs KILLED, with
    the epochs they had flushed kept."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    proc = spawn(
        tmp_path,
        "+sweep=lr",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "optimizer.lr=0.01,0.1",
        *LONG,
    )

    def both_children_have_epochs():
        if not (tmp_path / "outputs" / "mlflow.db").exists():
            return None
        client = client_for(tmp_path)
        children = [r for r in all_runs(client) if "mlflow.parentRunId" in r.data.tags]
        with_epochs = [r for r in children if epochs_logged(client, r.info.run_id) >= 1]
        return len(with_epochs) == 2

    wait_for(both_children_have_epochs, 120, "two child runs with epochs", proc)
    assert terminate(proc) != 0
    client = client_for(tmp_path)
    runs = all_runs(client)
    assert len(runs) == 3
    for run in runs:
        assert run.info.status == "KILLED", (run.info.run_name, run.info.status)
        assert run.data.tags["nnbench.outcome"] == "interrupted", run.info.run_name
        if "mlflow.parentRunId" in run.data.tags:
            assert epochs_logged(client, run.info.run_id) >= 1
    assert_none_running(client)
