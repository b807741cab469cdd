"""The warm tracking agent (nnbench.tracking.daemon): the first tracked run starts it, later
runs of the same setup are served by it, it stops when idle or told to, it never serves a
store it holds stale, and where it cannot live each run gets an agent of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from nnbench.tracking import daemon

from .conftest import (
    all_runs,
    artifact_paths,
    assert_none_running,
    client_for,
    history,
    wait_for,
)
from .conftest import run_env as sweep_env
from .test_outcomes import LONG, first_run_with_epochs

QUICK = ("dataset=moons", "trainer.epochs=2")


def env_for(cwd, agents, **extra) -> dict:
    env = sweep_env(cwd)
    env["NNBENCH_AGENT_DIR"] = str(agents)
    env.update(extra)
    return env


def run(cwd, agents, *args, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nnbench", *args],
        cwd=cwd,
        env=env_for(cwd, agents, **extra),
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_later_runs_are_served_by_the_agent_the_first_one_started(tmp_path, agents):
    started = run(tmp_path, agents, *QUICK)
    assert started.returncode == 0
    notice = "tracking agent: started in the background for the next runs; it stops after 10"
    assert notice in started.stdout  # the run that leaves a process running says so
    (first,) = daemon.running_agents(agents)
    second = run(tmp_path, agents, *QUICK, "optimizer.lr=0.05")
    assert second.returncode == 0, second.stderr
    assert "tracking agent" not in second.stdout
    assert daemon.running_agents(agents) == [first]
    client = client_for(tmp_path)
    runs = all_runs(client)
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    for r in runs:  # every epoch and artifact of both runs, written before each command ended
        assert [s for s, _ in history(client, r.info.run_id, "val/loss")] == [1, 2]
        assert {"curves.png", "environment.json", "weights.npz"} <= artifact_paths(
            client, r.info.run_id
        )


def test_a_store_deleted_between_runs_is_created_again(tmp_path, agents):
    """The warm agent keeps its stores open: it must notice that the file is another one."""
    assert run(tmp_path, agents, *QUICK).returncode == 0
    subprocess.run(["rm", "-rf", str(tmp_path / "outputs")], check=True)
    proc = run(tmp_path, agents, *QUICK)
    assert proc.returncode == 0, proc.stderr
    assert len(daemon.running_agents(agents)) == 1
    (only,) = all_runs(client_for(tmp_path))
    assert only.info.status == "FINISHED"


def test_an_idle_agent_exits_and_the_next_run_starts_another(tmp_path, agents):
    assert run(tmp_path, agents, *QUICK, NNBENCH_AGENT_IDLE_S="1").returncode == 0
    (pid,) = daemon.running_agents(agents)
    wait_for(lambda: not daemon.running_agents(agents), 30, "the idle agent to exit")
    assert not list(agents.glob("*.sock"))  # its socket went with it
    assert run(tmp_path, agents, *QUICK).returncode == 0
    (another,) = daemon.running_agents(agents)
    assert another != pid


def test_another_tracking_setup_gets_an_agent_of_its_own(tmp_path, agents):
    assert run(tmp_path, agents, *QUICK).returncode == 0
    assert run(tmp_path, agents, *QUICK, MLFLOW_HTTP_REQUEST_TIMEOUT="17").returncode == 0
    assert len(daemon.running_agents(agents)) == 2
    assert len(list(agents.glob("*.sock"))) == 2


@pytest.mark.parametrize("how", ["NNBENCH_AGENT=process", "a folder others can enter"])
def test_without_a_warm_agent_each_run_has_its_own(tmp_path, agents, how):
    extra = {"NNBENCH_AGENT": "process"} if how.startswith("NNBENCH") else {}
    if not extra:
        agents.chmod(0o777)
    proc = run(tmp_path, agents, *QUICK, **extra)
    assert proc.returncode == 0, proc.stderr
    assert not list(agents.iterdir())  # no socket, no lock, no log
    (only,) = all_runs(client_for(tmp_path))
    assert only.info.status == "FINISHED"


@pytest.mark.parametrize(
    "sig, status, outcome",
    [(signal.SIGTERM, "KILLED", "interrupted"), (signal.SIGKILL, "FAILED", "failed")],
    ids=["SIGTERM", "SIGKILL"],
)
def test_an_agent_stopped_mid_run_leaves_no_run_running(tmp_path, agents, sig, status, outcome):
    """SIGTERM to the warm agent (what ``--stop`` sends) ends the open run KILLED; after a
    SIGKILL the training process has an agent of its own end it FAILED, saying why. Either
    way the epochs logged are kept, and the training process says in one line that its
    agent is gone and exits with status 2."""
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nnbench", *LONG],
            cwd=tmp_path,
            env=env_for(tmp_path, agents),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        run_id = wait_for(lambda: first_run_with_epochs(tmp_path), 120, "an epoch", proc)
        client = client_for(tmp_path)
        wait_for(lambda: len(history(client, run_id, "train/loss")) >= 2, 60, "2 epochs", proc)
        (pid,) = daemon.running_agents(agents)
        os.kill(pid, sig)
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    ended = client.get_run(run_id)
    assert ended.info.status == status
    assert ended.data.tags["nnbench.outcome"] == outcome
    if sig == signal.SIGKILL:
        assert "tracking agent" in ended.data.tags["nnbench.error"]
    assert len(history(client, run_id, "train/loss")) >= 2
    assert code == 2
    stderr = (tmp_path / "stderr.txt").read_text()
    assert "nnbench: error: the tracking agent at" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    assert_none_running(client)


def test_a_second_agent_of_a_setup_exits_and_leaves_the_first_ones_pid(tmp_path, agents):
    """Two runs starting at once may both start an agent: the second finds the lock held,
    exits, and the first stays findable (its pid intact in the lock file)."""
    assert run(tmp_path, agents, *QUICK).returncode == 0
    (first,) = daemon.running_agents(agents)
    (sock,) = agents.glob("*.sock")
    second = subprocess.run(
        [sys.executable, "-m", "nnbench.tracking.daemon", str(sock)],
        env=env_for(tmp_path, agents),
        timeout=60,
    )
    assert second.returncode == 0
    assert daemon.running_agents(agents) == [first]
    assert daemon.stop(agents) == [first]


def test_stop_names_no_finished_agent(tmp_path, agents):
    """A lock file left by an agent that exited names a pid that may be someone else's now:
    `stop` signals only agents that still hold their lock."""
    (agents / "agent-0000000000000000.lock").write_text(str(os.getpid()))
    assert daemon.running_agents(agents) == []
    assert daemon.stop(agents) == []


def test_the_runtime_folder_must_be_private(tmp_path, monkeypatch):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    monkeypatch.setenv("NNBENCH_AGENT_DIR", str(folder))
    with pytest.raises(daemon.UnsafeDirectory, match="only you can enter"):
        daemon.runtime_dir()
    folder.chmod(0o700)
    assert daemon.runtime_dir() == folder


def test_nnbench_own_mlflow_defaults_do_not_split_the_agents(monkeypatch):
    """A sweep's launcher sets nnbench's MLflow defaults (MLFLOW_HTTP_REQUEST_*) in its
    environment before its jobs start; a single run has not: both share one agent. A value
    of the user's own is another setup."""
    from nnbench.tracking.store import HTTP_DEFAULTS

    for key in HTTP_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    single = daemon.setup_key()
    for key, value in HTTP_DEFAULTS.items():
        monkeypatch.setenv(key, value)
    assert daemon.setup_key() == single
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "17")
    assert daemon.setup_key() != single


def test_a_single_run_and_a_sweep_share_one_agent(tmp_path, agents):
    assert run(tmp_path, agents, *QUICK).returncode == 0
    (first,) = daemon.running_agents(agents)
    sweep = run(tmp_path, agents, *QUICK, "+sweep=lr", "optimizer.lr=0.1,1.0")
    assert sweep.returncode == 0, sweep.stderr
    assert daemon.running_agents(agents) == [first]


def test_stop_leaves_no_agent_and_no_socket(tmp_path, agents):
    """``--stop`` stops what it says it stopped: the agents have exited when it returns,
    and their sockets are gone, so that no new run connects to one that is stopping."""
    assert run(tmp_path, agents, *QUICK).returncode == 0
    (pid,) = daemon.running_agents(agents)
    assert daemon.stop(agents) == [pid]
    assert daemon.running_agents(agents) == []
    assert not list(agents.glob("*.sock"))
    assert not running(pid)


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie has: nobody reaped it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
