"""Fault injection: what goes wrong around a run, not in it, with the real program, store
and warm tracking agent.

A store that is not a database or cannot be written, a store locked or deleted during a
sweep, SIGINT and SIGTERM to a run, a sweep and the agent at random (seeded) moments, and
a full disk under the outputs: each ends in one line (no traceback, no hang), keeps what
was logged before the fault, and leaves no run RUNNING. A store that hangs holds up only
the runs that use it. Marker ``faults``; part of the default suite (about three minutes
on two cores). The full-disk tests mount a small tmpfs and are skipped where mounting is not
permitted (not root).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnbench.tracking import daemon
from tests.sweep_helpers import all_runs, client_for, sweep_env

pytestmark = pytest.mark.faults

LONG = ("trainer.epochs=2000", "trainer.batch_size=8", "trainer.progress=none")
SWEEP = ("+sweep=lr", "optimizer.lr=0.001,0.01,0.1", "dataset=moons", "trainer.progress=none")
TERMINAL = {"FINISHED", "FAILED", "KILLED"}


# ---------------------------------------------------------------------- helpers
class Program:
    """``python -m nnbench ARGS`` in the background in ``cwd``, its output in files."""

    def __init__(self, cwd: Path, *args: str, agents: Path | None = None, name="nnbench"):
        self.cwd = cwd
        self.out, self.err = cwd / f"{name}.out", cwd / f"{name}.err"
        env = sweep_env(cwd)
        if agents is not None:
            env["NNBENCH_AGENT_DIR"] = str(agents)
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nnbench", *args],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=err,
            )

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def wait(self, timeout: float = 180) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"the program hung: {self.stderr()[-2000:]}")

    def wait_for(self, predicate, what: str, timeout: float = 120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.proc.poll() is not None:
                pytest.fail(
                    f"the program ended ({self.proc.returncode}) before {what}: "
                    f"{self.stderr()[-2000:]}"
                )
            time.sleep(0.1)
        self.proc.kill()
        pytest.fail(f"timed out waiting for {what}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def one_line_or_none(program: Program) -> str | None:
    """stderr, checked to be at most one line and no traceback; that line, or None."""
    text = program.stderr() + program.stdout()
    assert "Traceback" not in text, text[-3000:]
    lines = [line for line in program.stderr().splitlines() if line.strip()]
    assert len(lines) <= 1, program.stderr()
    return lines[0] if lines else None


def store_of(cwd: Path) -> Path:
    return cwd / "outputs" / "mlflow.db"


def reader(cwd: Path):
    """A client on ``cwd``'s store; on a full disk, where nnbench refuses the store, one
    that only reads it (the store exists by then: no migration to race)."""
    from mlflow.tracking import MlflowClient

    from nnbench.errors import TrackingUnavailableError

    try:
        return client_for(cwd)
    except TrackingUnavailableError:
        return MlflowClient(tracking_uri=f"sqlite:///{store_of(cwd)}")


def runs(cwd: Path) -> list:
    return all_runs(reader(cwd)) if store_of(cwd).exists() else []


def assert_none_running(cwd: Path) -> None:
    states = {r.info.run_id: r.info.status for r in runs(cwd)}
    assert all(status in TERMINAL for status in states.values()), states


def epochs_of(cwd: Path, run_id: str) -> int:
    return len(reader(cwd).get_metric_history(run_id, "train/loss"))


def training_run_with_epochs(cwd: Path) -> str | None:
    """The newest training run (not a sweep's parent) with an epoch logged, else None."""
    if not store_of(cwd).exists():
        return None
    for run in reversed(runs(cwd)):
        if run.data.tags.get("nnbench.role") != "sweep" and epochs_of(cwd, run.info.run_id):
            return run.info.run_id
    return None


# ---------------------------------------------------------------------- stores
class HangingServer:
    """A tracking server that is up (its /health answers) but never answers a request of
    MLflow's API until `release`: a store that hangs. On 127.0.0.1, a free port."""

    def __init__(self):
        import http.server
        import threading

        self.released = threading.Event()
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server interface)
                if self.path.startswith("/health"):
                    self._answer(200, b"OK")
                    return
                outer.requests += 1
                outer.released.wait()
                self._answer(503, b"released")

            do_POST = do_GET  # noqa: N815

            def _answer(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        """Answer the waiting requests (503) and stop: nothing listens afterwards."""
        if self.released.is_set():
            return
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_store_that_hangs_holds_up_only_its_own_runs(tmp_path, agents):
    """Run A records to a tracking server that hangs; run B, on a SQLite store, is served by
    the same warm agent meanwhile and completes while A still waits. ``--stop`` then stops
    the agent for real (it does not wait on A's store); A, whose run did not exist yet,
    sends it to a new agent, and ends with one line once its store is gone."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    server = HangingServer()
    # Both runs share the agent (same MLflow settings): MLflow waits up to 10 minutes here.
    setting = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "600"}
    a = b = None
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in setting.items():
                patch.setenv(key, value)
            a = Program(tmp_path / "a", *LONG, f"tracking.uri={server.uri}", agents=agents)
            a.wait_for(lambda: server.requests, "run A to reach the hanging store")
            b = Program(tmp_path / "b", "dataset=moons", "trainer.epochs=3", agents=agents)
            assert b.wait() == 0, b.stderr()
        assert a.proc.poll() is None, a.stderr()  # A is still held up by its store
        (only,) = daemon.running_agents(agents)  # and B was served by A's agent
        (run,) = runs(tmp_path / "b")
        assert run.info.status == "FINISHED"
        assert epochs_of(tmp_path / "b", run.info.run_id) == 3
        assert daemon.stop(agents) == [only]
        assert only not in daemon.running_agents(agents)
        # A sends its start to a new agent; the store, gone now, gives it one line.
        server.release()
        assert a.wait() in (1, 2)
        line = one_line_or_none(a)
        assert line and line.startswith("nnbench: error: "), line
        assert server.uri in line or "recording the run failed" in line, line
    finally:
        server.release()
        for program in (a, b):
            if program is not None:
                program.kill()


def test_a_store_locked_by_another_process(tmp_path, agents):
    """A SQLite store that another process keeps locked: one line within seconds, before
    training, instead of minutes of MLflow's retries."""
    blocked = tmp_path / "blocked.db"
    connection = sqlite3.connect(blocked, isolation_level=None, timeout=0)
    connection.execute("PRAGMA journal_mode=DELETE")
    connection.execute("PRAGMA user_version=1")  # a real database file, no tables yet
    connection.execute("BEGIN EXCLUSIVE")
    try:
        program = Program(tmp_path, *LONG, f"tracking.uri=sqlite:///{blocked}", agents=agents)
        assert program.wait() == 2
    finally:
        connection.rollback()
        connection.close()
    line = one_line_or_none(program)
    assert f"Invalid tracking.uri: 'sqlite:///{blocked}'" in line, line
    assert "locked by another process" in line
    assert not (tmp_path / "outputs" / "runs").exists() or "epoch" not in program.stdout()


@pytest.mark.parametrize("fault", ["deleted", "locked"])
def test_store_deleted_or_locked_mid_sweep(tmp_path, agents, fault):
    """The sweep either records every job or stops with one line; it never hangs, never
    prints a traceback, and leaves nothing RUNNING. A locked store keeps every job logged
    before the lock."""
    sweep = Program(tmp_path, *SWEEP, "trainer.epochs=300", agents=agents)
    sweep.wait_for(lambda: "[job 0]" in sweep.stdout(), "the first job")
    before = {r.info.run_id: epochs_of(tmp_path, r.info.run_id) for r in runs(tmp_path)}
    lock = None
    if fault == "deleted":
        for path in store_of(tmp_path).parent.glob("mlflow.db*"):
            path.unlink()
    else:
        lock = sqlite3.connect(store_of(tmp_path), isolation_level=None, timeout=30)
        lock.execute("BEGIN EXCLUSIVE")
        time.sleep(random.Random(fault).uniform(2.0, 8.0))
        lock.rollback()
        lock.close()
    code = sweep.wait()
    line = one_line_or_none(sweep)
    assert code in (0, 1), sweep.stderr()
    if code == 1:
        assert line.startswith("nnbench: error: recording the run failed"), line
    assert_none_running(tmp_path)
    if fault == "locked":  # what was logged before the fault is all there
        after = {r.info.run_id: epochs_of(tmp_path, r.info.run_id) for r in runs(tmp_path)}
        assert all(after[run_id] >= count for run_id, count in before.items())


# ---------------------------------------------------------------------- signals
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}


TARGETS = {
    "run": LONG,
    "sweep": (*SWEEP, *LONG),
    "stack": (*SWEEP, *LONG, "hydra/launcher=stacked"),
}


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("name", list(SIGNALS))
def test_signal_to_a_run_or_a_sweep(tmp_path, target, name):
    """At a random (seeded) moment after the first epoch: one line, exit 128 + the signal,
    every epoch logged before the signal kept, the run KILLED (a stack's every member),
    nothing RUNNING."""
    rng = random.Random(f"{target}-{name}")
    args = TARGETS[target]
    program = Program(tmp_path, *args)  # the session's warm agent
    try:
        run_id = program.wait_for(lambda: training_run_with_epochs(tmp_path), "an epoch")
        time.sleep(rng.uniform(0.0, 2.0))
        logged = epochs_of(tmp_path, run_id)
        program.proc.send_signal(SIGNALS[name])
        code = program.wait()
    finally:
        program.kill()
    assert code == 128 + SIGNALS[name]
    line = one_line_or_none(program)
    assert line.startswith("nnbench: interrupted"), line
    run = client_for(tmp_path).get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["nnbench.outcome"] == "interrupted"
    assert epochs_of(tmp_path, run_id) >= logged
    assert_none_running(tmp_path)
    if target == "stack":  # every member was training: each ends KILLED, its epochs kept
        members = [r for r in runs(tmp_path) if r.data.tags.get("nnbench.role") != "sweep"]
        assert len(members) == 3
        for member in members:
            assert member.info.status == "KILLED"
            assert member.data.tags["nnbench.outcome"] == "interrupted"
            assert epochs_of(tmp_path, member.info.run_id) >= 1


@pytest.mark.parametrize("name", ["SIGTERM", "SIGKILL"])
def test_the_agent_stopped_during_a_sweep(tmp_path, agents, name):
    """The warm agent stopped at a random (seeded) moment of a sweep: the sweep stops with
    one line, the open run ends (KILLED by the agent, or FAILED for a SIGKILL), the epochs
    logged are kept, and nothing is RUNNING."""
    rng = random.Random(name)
    program = Program(tmp_path, *SWEEP, *LONG, agents=agents)
    try:
        run_id = program.wait_for(lambda: training_run_with_epochs(tmp_path), "an epoch")
        time.sleep(rng.uniform(0.0, 2.0))
        logged = epochs_of(tmp_path, run_id)
        (pid,) = daemon.running_agents(agents)
        os.kill(pid, getattr(signal, name))
        code = program.wait()
    finally:
        program.kill()
    assert code == 2
    line = one_line_or_none(program)
    assert "the tracking agent" in line and "stopped" in line, line
    assert epochs_of(tmp_path, run_id) >= logged
    assert client_for(tmp_path).get_run(run_id).info.status in ("KILLED", "FAILED")
    assert_none_running(tmp_path)


# ---------------------------------------------------------------------- a full disk
@pytest.fixture
def small_disk(tmp_path):
    """``tmp_path/outputs`` on a tmpfs of 8 MiB (skipped where mounting is not permitted)."""
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(outputs)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    yield outputs
    subprocess.run(["umount", "-l", str(outputs)], check=True)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last page; the filler file."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    os.write(descriptor, bytes(size))
            except OSError:
                pass
    finally:
        os.close(descriptor)
    return filler


def test_outputs_on_a_full_disk(tmp_path, small_disk, agents):
    """Nothing fits: one line that names the disk being full, a non-zero exit, no run."""
    fill(small_disk)
    program = Program(tmp_path, "dataset=moons", "trainer.epochs=2", agents=agents)
    code = program.wait()
    line = one_line_or_none(program)
    assert code != 0 and line, program.stdout()
    assert "No space left on device" in line, line


def test_the_disk_fills_during_a_run(tmp_path, small_disk, agents):
    """The store's disk fills after the first epochs: the run stops with one line (or is
    interrupted, if SQLite still finds room); once there is room again the warm agent ends
    the run (it retries what the store refused), nothing is RUNNING, and the epochs logged
    before the disk filled are kept."""
    rng = random.Random("full disk")
    program = Program(tmp_path, *LONG, agents=agents)
    try:
        run_id = program.wait_for(lambda: training_run_with_epochs(tmp_path), "an epoch")
        logged = epochs_of(tmp_path, run_id)
        filler = fill(small_disk)
        time.sleep(rng.uniform(1.0, 3.0))
        if program.proc.poll() is None:
            program.proc.send_signal(signal.SIGINT)
        code = program.wait()
    finally:
        program.kill()
    line = one_line_or_none(program)
    assert code in (1, 130), (code, line)
    filler.unlink()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(r.info.status == "RUNNING" for r in runs(tmp_path)):
        time.sleep(0.5)
    assert_none_running(tmp_path)
    assert epochs_of(tmp_path, run_id) >= logged


def test_an_end_the_store_refused_is_retried(tmp_path):
    """The store refuses a run's end (here: another process holds its write lock for longer
    than MLflow's SQLite sessions wait, as a full disk would refuse it): the agent keeps
    the run, and ends
    it once the store takes writes again (`retry_unended`, which the warm agent calls every
    second). The epochs logged before are kept; the run ends FAILED, saying why."""
    from nnbench.tracking import agent as agent_module
    from nnbench.tracking.agent import Agent, retry_unended

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    answers: list = []
    agent = Agent(answers.append)
    agent.handle(
        {
            "op": "start",
            "uri": uri,
            "experiment": "faults",
            "run_name": "r",
            "params": {"a": "1"},
            "tags": {},
            "parent": None,
        }
    )
    run_id = answers[-1]["run_id"]
    metrics = [["train/loss", 1.0 / step, step, 0] for step in (1, 2, 3)]
    agent.handle({"op": "metrics", "metrics": metrics})
    lock = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # MLflow's SQLite sessions wait 20 s, then fail
        agent.handle({"op": "end", "status": "FINISHED"})
        assert answers[-1] == {"op": "ended"}
        assert answers[-2]["op"] == "error", answers
        assert len(Agent.unended) == 1
    finally:
        lock.rollback()
        lock.close()
    retry_unended()
    assert agent_module.Agent.unended == []
    client = client_for_uri(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["nnbench.outcome"] == "failed"
    assert run.data.tags["nnbench.error"].startswith("the store refused the run's end")
    assert "database is locked" in run.data.tags["nnbench.error"]
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")][:3] == [1, 2, 3]


def client_for_uri(uri: str):
    from nnbench.tracking.store import client

    return client(uri)
