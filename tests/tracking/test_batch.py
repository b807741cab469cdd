"""Many runs recorded at once through one agent connection (nnbench.tracking.batch), read
back from a real SQLite store: each member's run is what a run of its own records (the same
params, per-epoch metrics, tags, artifacts and outcome), a child of the sweep's parent run;
one member's bad record fails that member only; a training process killed outright leaves
no run RUNNING.

The members are real trainings (moons, a few epochs, through nnbench.flow's own functions),
logged epoch by epoch side by side as a stacked sweep logs them; one batch, recorded once,
serves most tests here.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from nnbench import config
from nnbench.flow import _params, close_record, fit_and_test, run_start
from nnbench.parts import build
from nnbench.tracking import Job, Recorder, daemon, store
from nnbench.tracking.agent_client import AgentRecorder, AgentStopped, TrackingError
from nnbench.tracking.batch import RecorderBatch
from nnbench.tracking.names import run_name
from nnbench.tracking.run import ERROR_TAG, OUTCOME_TAG

from .conftest import artifact_paths, client_for, history, wait_for
from .conftest import assert_none_running as assert_none_running_at_all
from .conftest import run_env as sweep_env

PARENT = "mlflow.parentRunId"
BAD_KEY = "bad!key"
# member -> (overrides, what happens to it): a stacked sweep's members ending differently
MEMBERS = [
    (("optimizer.lr=0.05",), "finished"),
    (("optimizer.lr=100",), "finished"),  # diverges in epoch 2
    (("optimizer.lr=0.1",), "left open"),  # ended KILLED by the batch's close
    (("optimizer.lr=0.2",), "bad record"),  # a metric the store refuses
    (("optimizer.lr=0.3", "trainer.epochs=3"), "finished"),  # ends mid-stack
    (("optimizer.lr=0.05", "seed=7"), "finished"),
]
EPOCHS, OPEN_EPOCHS = 5, 3
PER_EPOCH = ("train/loss", "train/acc", "val/loss", "val/acc", "time/epoch_s")


@dataclass
class Member:
    cfg: object
    job: Job
    run: object  # nnbench.flow.RunResult
    fate: str


def assert_none_running(client, parent: dict) -> None:
    """No run but the sweep's parent (ended by its sweep, later) is left RUNNING."""
    client.set_terminated(parent["parent_run_id"], "FINISHED")
    assert_none_running_at_all(client)


def compose_cfg(overrides) -> object:
    config.register()
    with initialize_config_module("nnbench.conf", version_base="1.3"):
        base = ["dataset=moons", f"trainer.epochs={EPOCHS}", "model.hidden=[8]"]
        return compose("config", overrides=[*base, *overrides])


def make_parent(uri: str) -> dict:
    """A sweep's parent run, as nnbench.tracking.sweep makes it."""
    client = store.client(uri)
    experiment_id = store.experiment_id(client, "sweep-batch", uri)
    run = client.create_run(experiment_id, run_name="batch", tags={"nnbench.role": "sweep"})
    run_id = run.info.run_id
    return {"uri": uri, "experiment_id": experiment_id, "parent_run_id": run_id,
            "sweep_id": run_id, "sweep_dir": "sweep", "swept": ["optimizer.lr"]}  # fmt: skip


def make_member(num: int, overrides, fate: str, parent: dict, tmp) -> Member:
    """A trained job of the sweep (its numbers recorded later, as the stack logs them)."""
    cfg = compose_cfg(overrides)
    job = Job(True, num, tuple(overrides), tuple(overrides), {"sweep": "batch"}, "sweep",
              str(tmp / str(num)), None, "hash", parent)  # fmt: skip
    parts = build(cfg)
    return Member(cfg, job, fit_and_test(cfg, parts, None, before=True), fate)


def record_batch(members: list[Member], draw_apart: bool):
    """Record every member through one batch, epoch by epoch side by side; a member whose
    training ended is closed (close_record) and ended while the others go on. Returns the
    batch and the error its close raised."""
    starts = [run_start(m.cfg, m.job, m.run.parts.backend) for m in members]
    batch = RecorderBatch.start(starts, draw_apart=draw_apart)
    recorders = batch.recorders
    for epoch in range(1, EPOCHS + 1):
        for member, recorder in zip(members, recorders, strict=True):
            history = member.run.result.history
            if member.fate == "left open" and epoch > OPEN_EPOCHS:
                continue
            if epoch <= len(history):
                recorder.log_epoch(history[epoch - 1])
            if member.fate == "bad record" and epoch == 2:
                recorder.flush()
                recorder.log_metrics({BAD_KEY: 1.0}, epoch)
                recorder.flush()  # alone: MLflow refuses a whole log_batch with it
            if epoch == max(len(history), 1) and member.fate != "left open":
                close_record(member.cfg, member.job, recorder, member.run)
                recorder.end("FINISHED")
    try:
        batch.close("KILLED")
    except Exception as exc:
        return batch, exc
    return batch, None


def record_alone(member: Member) -> str:
    """The same calls through a run of its own (AgentRecorder): the reference."""
    recorder = AgentRecorder.start(**run_start(member.cfg, member.job, member.run.parts.backend))
    for record in member.run.result.history:
        recorder.log_epoch(record)
    close_record(member.cfg, member.job, recorder, member.run)
    recorder.end("FINISHED")
    return recorder.run_id


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict:
    """A store (created once, before any agent opens it) with a sweep's parent run."""
    tmp = tmp_path_factory.mktemp("batch")
    parent = make_parent(f"sqlite:///{tmp}/outputs/mlflow.db")
    return {"tmp": tmp, "parent": parent, "client": client_for(tmp)}


@pytest.fixture(scope="module", params=[True, False], ids=["drawn apart", "drawn by the agent"])
def recorded(sweep, request):
    tmp, parent = sweep["tmp"], sweep["parent"]
    members = [make_member(i, o, fate, parent, tmp) for i, (o, fate) in enumerate(MEMBERS)]
    batch, error = record_batch(members, draw_apart=request.param)
    reference = record_alone(members[0])
    return {**sweep, "batch": batch, "error": error, "members": members, "reference": reference}


def small_starts(parent: dict, count: int, name: str = "m") -> list[dict]:
    return [{"uri": parent["uri"], "experiment": "e", "run_name": f"{name}{i}",
             "params": {"i": str(i)}, "tags": {OUTCOME_TAG: "running"}, "parent": parent}
            for i in range(count)]  # fmt: skip


def runs_of(recorded) -> list:
    client = recorded["client"]
    return [client.get_run(r.run_id) for r in recorded["batch"].recorders]


def test_each_member_is_a_recorder(recorded):
    assert all(isinstance(r, Recorder) for r in recorded["batch"].recorders)


def test_members_are_children_of_the_parent_with_their_params(recorded):
    parent_id = recorded["parent"]["parent_run_id"]
    for member, run in zip(recorded["members"], runs_of(recorded), strict=True):
        assert run.data.tags[PARENT] == parent_id
        assert run.data.tags["nnbench.sweep"] == parent_id
        assert run.data.params == _params(member.cfg)[0]
        assert run.info.experiment_id == recorded["parent"]["experiment_id"]
        assert run.info.run_name == run_name(list(member.job.changed), ["optimizer.lr"])


def test_a_member_records_what_a_run_of_its_own_records(recorded, tmp_path):
    client = recorded["client"]
    member = client.get_run(recorded["batch"].recorders[0].run_id)
    alone = client.get_run(recorded["reference"])
    assert member.data.params == alone.data.params
    assert member.data.tags == alone.data.tags
    assert member.data.metrics == alone.data.metrics
    assert set(member.data.metrics) >= {*PER_EPOCH, "test/loss", "test/acc"}
    for key in member.data.metrics:
        got = history(client, member.info.run_id, key)
        assert got == history(client, alone.info.run_id, key), key
    assert (member.info.status, alone.info.status) == ("FINISHED", "FINISHED")
    found = artifact_paths(client, member.info.run_id)
    assert found == artifact_paths(client, alone.info.run_id)
    assert {"curves.png", "decision_boundary.png", "environment.json", "weights.npz"} <= found
    pictures = [client.download_artifacts(r.info.run_id, "curves.png", str(tmp_path / str(i)))
                for i, r in enumerate((member, alone))]  # fmt: skip
    assert Path(pictures[0]).read_bytes() == Path(pictures[1]).read_bytes()


def test_each_member_ends_as_its_training_did(recorded):
    client = recorded["client"]
    runs = runs_of(recorded)
    outcomes = [(r.info.status, r.data.tags[OUTCOME_TAG]) for r in runs]
    assert outcomes == [
        ("FINISHED", "completed"),
        ("FINISHED", "diverged"),
        ("KILLED", "interrupted"),
        ("FAILED", "failed"),
        ("FINISHED", "completed"),
        ("FINISHED", "completed"),
    ]
    diverged = recorded["members"][1].run.result
    assert runs[1].data.tags["nnbench.diverged_at"] == diverged.message.removeprefix("diverged at ")
    assert runs[1].data.metrics["diverged/epoch"] == diverged.diverged_at[0]
    steps = {i: [s for s, _ in history(client, r.info.run_id, "train/loss")] for i, r in
             enumerate(runs)}  # fmt: skip
    assert steps[1] == [1]  # the diverged member: its finite epoch
    assert steps[2] == [1, 2, 3]  # the killed member keeps its epochs
    assert steps[4] == [1, 2, 3] and steps[0] == steps[5] == list(range(1, EPOCHS + 1))
    assert_none_running(client, recorded["parent"])


def test_a_bad_record_fails_its_member_only(recorded):
    runs, error, batch = runs_of(recorded), recorded["error"], recorded["batch"]
    assert error is not None and BAD_KEY in str(error) and "\n" not in str(error)
    assert list(batch.errors) == [3]
    assert BAD_KEY in runs[3].data.tags[ERROR_TAG]
    client = recorded["client"]
    assert [s for s, _ in history(client, runs[3].info.run_id, "val/loss")] == [1, 2, 3, 4, 5]
    assert artifact_paths(client, runs[3].info.run_id) == set()  # as a failed run of its own
    assert all(ERROR_TAG not in r.data.tags for i, r in enumerate(runs) if i != 3)


def test_every_finished_member_has_its_artifacts(recorded):
    client = recorded["client"]
    for member, run in zip(recorded["members"], runs_of(recorded), strict=True):
        found = artifact_paths(client, run.info.run_id)
        if member.fate in ("left open", "bad record"):
            assert found == set()
            continue
        assert {"curves.png", "environment.json", "config.yaml", "weights.npz"} <= found
        drawn = "decision_boundary.png" in found
        assert drawn == (member.run.result.outcome == "completed"), found


def test_metrics_wait_for_a_flush_and_nonfinite_values_are_dropped(sweep):
    batch = RecorderBatch.start(small_starts(sweep["parent"], 3, "batched"), flush_interval=3600)
    sent, write = [], batch.channel._write
    batch.channel._write = lambda data: (sent.append(json.loads(data)["op"]), write(data))
    for epoch in (1, 2):
        for recorder in batch.recorders:
            recorder.log_epoch({"epoch": epoch, "train/loss": 1.0 / epoch, "val/loss": math.nan})
    assert {i: len(entries) for i, entries in batch._pending.items()} == {0: 2, 1: 2, 2: 2}
    batch.flush()  # all of it, one command
    assert batch._pending == {}
    batch.close("FINISHED")
    assert sent == ["batch_metrics", "batch_end"]
    client = sweep["client"]
    for recorder in batch.recorders:
        assert history(client, recorder.run_id, "train/loss") == [(1, 1.0), (2, 0.5)]
        assert history(client, recorder.run_id, "val/loss") == []
        assert client.get_run(recorder.run_id).info.status == "FINISHED"


def test_a_member_whose_run_cannot_start_raises_its_error_and_the_others_record(sweep):
    starts = small_starts(sweep["parent"], 3, "unstarted")
    starts[1]["params"] = {BAD_KEY: "1"}  # MLflow refuses the param: the run ends FAILED
    batch = RecorderBatch.start(starts)
    with pytest.raises(TrackingError, match=re.escape(BAD_KEY)):
        _ = batch.recorders[1].run_id
    for recorder in batch.recorders:
        recorder.log_epoch({"epoch": 1, "train/loss": 0.5})
        recorder.end("FINISHED")
    with pytest.raises(TrackingError, match=re.escape(BAD_KEY)):
        batch.close()
    client = sweep["client"]
    for recorder in (batch.recorders[0], batch.recorders[2]):
        run = client.get_run(recorder.run_id)
        assert run.info.status == "FINISHED"
        assert history(client, recorder.run_id, "train/loss") == [(1, 0.5)]
    (failed,) = client.search_runs(
        [sweep["parent"]["experiment_id"]], "attributes.run_name = 'unstarted1'", max_results=1
    )
    assert (failed.info.status, failed.data.tags[OUTCOME_TAG]) == ("FAILED", "failed")


@pytest.mark.parametrize(
    ("raised", "status", "outcome"),
    [
        (None, "FINISHED", "running"),
        (KeyboardInterrupt, "KILLED", "interrupted"),
        (ValueError, "FAILED", "failed"),
    ],  # fmt: skip
)
def test_the_batch_as_a_block_ends_its_open_members_as_the_block_ended(
    sweep, raised, status, outcome
):
    """As `nnbench.tracking.recording` ends one run: FINISHED, KILLED for Ctrl-C or
    SIGTERM, FAILED with the message for an exception (which still propagates)."""
    with pytest.raises(raised) if raised else nullcontext():
        with RecorderBatch.start(small_starts(sweep["parent"], 2)) as batch:
            batch.recorders[0].log_epoch({"epoch": 1, "train/loss": 0.5})
            if raised:
                raise raised("the training broke")
    client = sweep["client"]
    for recorder in batch.recorders:
        run = client.get_run(recorder.run_id)
        assert (run.info.status, run.data.tags[OUTCOME_TAG]) == (status, outcome)
    if raised is ValueError:
        assert run.data.tags[ERROR_TAG] == "ValueError: the training broke"
    assert history(client, batch.recorders[0].run_id, "train/loss") == [(1, 0.5)]


def test_a_warm_agent_killed_mid_batch_leaves_no_member_running(sweep, agents, monkeypatch):
    """After a SIGKILL of the warm agent, an agent of our own ends the members FAILED,
    saying why (SIGTERM has the agent end them KILLED itself, as when the training process
    dies: below). `close` says in one line that the agent is gone."""
    monkeypatch.setenv("NNBENCH_AGENT_DIR", str(agents))
    client = sweep["client"]
    batch = RecorderBatch.start(small_starts(sweep["parent"], 3))
    for recorder in batch.recorders:
        recorder.log_epoch({"epoch": 1, "train/loss": 0.5})
    batch.flush()
    run_ids = [r.run_id for r in batch.recorders]
    logged = lambda: all(history(client, r, "train/loss") for r in run_ids)  # noqa: E731
    wait_for(logged, 60, "every member's epoch")
    (pid,) = daemon.running_agents(agents)
    os.kill(pid, signal.SIGKILL)
    batch.recorders[0].end("FINISHED")  # queued: the agent is gone, nothing waits
    with pytest.raises(AgentStopped, match="tracking agent") as raised:
        batch.close()
    assert "\n" not in str(raised.value)
    for run_id in run_ids:
        run = client.get_run(run_id)
        assert (run.info.status, run.data.tags[OUTCOME_TAG]) == ("FAILED", "failed")
        assert history(client, run_id, "train/loss") == [(1, 0.5)]
        assert "tracking agent" in run.data.tags[ERROR_TAG]


# A training process that starts a batch, sends two epochs of every member, and waits to be
# killed.
KILLED_MIDWAY = """
import json, sys, time
from nnbench.tracking.batch import RecorderBatch
from nnbench.tracking.names import run_name
starts = json.loads(sys.argv[1])
batch = RecorderBatch.start(starts)
for epoch in (1, 2):
    for recorder in batch.recorders:
        recorder.log_epoch({"epoch": epoch, "train/loss": 1.0 / epoch})
batch.flush()
print(json.dumps([r.run_id for r in batch.recorders]), flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("agent", ["warm", "process"])
def test_sigkill_mid_batch_leaves_every_member_killed(tmp_path, agent):
    uri = f"sqlite:///{tmp_path}/outputs/mlflow.db"
    parent = make_parent(uri)
    starts = small_starts(parent, 5)
    env = {**sweep_env(tmp_path), "NNBENCH_AGENT": agent}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_MIDWAY), json.dumps(starts)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        run_ids = json.loads(proc.stdout.readline())
        client = client_for(tmp_path)

        def logged():
            return all(len(history(client, r, "train/loss")) == 2 for r in run_ids)

        wait_for(logged, 60, "every member's two epochs", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        ended = lambda: all(client.get_run(r).info.status != "RUNNING" for r in run_ids)  # noqa: E731
        wait_for(ended, 60, "the agent to end every member")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for run_id in run_ids:
        run = client.get_run(run_id)
        assert (run.info.status, run.data.tags[OUTCOME_TAG]) == ("KILLED", "interrupted")
        assert run.data.tags[PARENT] == parent["parent_run_id"]
        assert history(client, run_id, "train/loss") == [(1, 1.0), (2, 0.5)]
    assert_none_running(client, parent)
