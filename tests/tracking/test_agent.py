"""The tracking agent (nnbench.tracking.agent): the training process hands every MLflow call
to a companion process, never imports MLflow or matplotlib itself, and a run is never left
RUNNING, even when the training process is killed outright."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from nnbench.tracking.agent_client import AgentRecorder, AgentStopped, planned_store
from nnbench.tracking.store import default_uri

from .conftest import (
    all_runs,
    artifact_paths,
    assert_none_running,
    client_for,
    history,
    nnbench,
    wait_for,
)
from .conftest import run_env as sweep_env
from .test_outcomes import LONG, first_run_with_epochs

# A tracked single run that reports, at exit, which heavy modules the process imported.
PROBE = """
import atexit, sys
heavy = ("mlflow", "matplotlib", "sqlalchemy", "alembic")
atexit.register(lambda: print("IMPORTED", [m for m in heavy if m in sys.modules]))
sys.argv = ["nnbench", *sys.argv[1:]]
from nnbench.__main__ import main
main()
"""


def test_the_training_process_imports_neither_mlflow_nor_matplotlib(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "dataset=moons", "trainer.epochs=2"],
        cwd=tmp_path,
        env=sweep_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert "IMPORTED []" in proc.stdout, proc.stdout
    client = client_for(tmp_path)
    (run,) = all_runs(client)
    assert run.info.status == "FINISHED"
    assert [s for s, _ in history(client, run.info.run_id, "val/loss")] == [1, 2]
    found = artifact_paths(client, run.info.run_id)
    assert {"curves.png", "decision_boundary.png", "environment.json"} <= found, found


def test_sigkill_of_the_training_process_leaves_the_run_killed(tmp_path, spawn):
    """SIGKILL cannot be caught: the agent sees its input close and ends the run KILLED,
    keeping the epochs it had received."""
    proc = spawn(tmp_path, *LONG)
    run_id = wait_for(lambda: first_run_with_epochs(tmp_path), 90, "a run with epochs", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    client = client_for(tmp_path)
    wait_for(
        lambda: client.get_run(run_id).info.status != "RUNNING", 60, "the agent to end the run"
    )
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["nnbench.outcome"] == "interrupted"
    assert len(history(client, run_id, "train/loss")) >= 1
    assert_none_running(client)


def test_a_store_that_cannot_be_created_is_one_error_and_no_run(tmp_path):
    """The agent's failure reaches the training process as an exception with its message."""
    (tmp_path / "outputs").write_text("a file where the store's folder should be\n")
    recorder = AgentRecorder.start(
        uri=default_uri(tmp_path / "outputs"),
        experiment="e",
        run_name="r",
        params={},
        tags={},
    )
    with pytest.raises(Exception, match="outputs") as raised:
        _ = recorder.run_id
    assert not isinstance(raised.value, AgentStopped)
    recorder.end("FAILED")  # nothing to end: returns once the agent has answered


def test_metrics_are_batched_and_nonfinite_values_dropped(tmp_path):
    uri = default_uri(tmp_path / "outputs")
    recorder = AgentRecorder.start(uri=uri, experiment="e", run_name="r", params={}, tags={})
    for epoch in (1, 2, 3):
        recorder.log_epoch({"epoch": epoch, "train/loss": 1.0 / epoch, "val/loss": float("nan")})
    assert len(recorder._pending) == 3  # NaN dropped; nothing sent until the interval or end
    recorder.end("FINISHED")
    client = client_for(tmp_path)
    run = client.get_run(recorder.run_id)
    assert run.info.status == "FINISHED"
    assert history(client, run.info.run_id, "train/loss") == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert history(client, run.info.run_id, "val/loss") == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "default"),
        (["optimizer=adam", "+experiment=xor_mlp"], "default"),
        (["tracking.uri=http://127.0.0.1:5000"], "http://127.0.0.1:5000"),
        (["tracking=none"], None),
        (["+sweep=lr"], None),
        (["+bench=default"], None),
        (["--multirun", "optimizer.lr=0.1,0.01"], None),
        (["--cfg", "job"], None),
        (["hydra.mode=MULTIRUN"], None),
    ],
)
def test_planned_store_guesses_only_for_tracked_single_runs(argv, expected, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    expected = default_uri() if expected == "default" else expected
    assert planned_store(argv) == expected


def test_agent_answers_are_json_lines(tmp_path):
    """The protocol by hand: warm, start, metrics, end; stdin closing ends the agent."""
    uri = default_uri(tmp_path / "outputs")
    commands = [
        {"op": "warm", "uri": uri},
        {"op": "start", "uri": uri, "experiment": "e", "run_name": "r", "params": {"a": "1"},
         "tags": {"t": "v"}, "parent": None},
        {"op": "metrics", "metrics": [["m", 2.5, 1, 0]]},
        {"op": "end", "status": "FINISHED"},
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "nnbench.tracking.agent"],
        input="".join(json.dumps(c) + "\n" for c in commands),
        cwd=tmp_path,
        env=sweep_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [a["op"] for a in answers] == ["started", "ended"], answers
    run = client_for(tmp_path).get_run(answers[0]["run_id"])
    assert (run.data.params, run.data.tags["t"], run.data.metrics) == ({"a": "1"}, "v", {"m": 2.5})


def test_a_store_that_cannot_be_created_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "blocked").write_text("a file, not a folder\n")
    uri = f"sqlite:///{tmp_path}/blocked/sub/mlflow.db"
    proc = nnbench(tmp_path, "trainer.epochs=1", f"tracking.uri={uri}")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nnbench: error: "), proc.stderr
    assert f"Invalid tracking.uri: '{uri}'" in lines[0], lines[0]
    assert f"{tmp_path}/blocked is a file, not a folder" in lines[0], lines[0]
