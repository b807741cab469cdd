"""The training process's side of the tracking agent (nnbench.tracking.agent).

`AgentRecorder` has the recorder's interface (`log_epoch`, `log_metrics`, `set_tags`,
`flush`, `end`, `run_id`) and turns each call into a command for the agent, which does the
MLflow work in its own process. Sending a command costs microseconds; nothing here waits for
the agent except `run_id` (the run exists: `nnbench.flow.train` asks before it trains) and
`end`. So the agent's start-up (importing MLflow and matplotlib, opening the store)
overlaps the training process's own start-up (Hydra, the data), and the training itself
shares no core with it.

One agent serves a process (a multirun's jobs in one process share it); `prestart` starts it
as early as possible, before the config is even composed.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from nnbench.errors import TrackingUnavailableError
from nnbench.tracking.run import FLUSH_INTERVAL_S, finite
from nnbench.tracking.store import resolve_uri

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
SINGLE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class TrackingError(RuntimeError):
    """The tracking agent failed on something other than an unreachable store."""


class AgentStopped(TrackingError, TrackingUnavailableError):
    """The tracking agent is gone: nothing more can be recorded (one line, exit status 2)."""


class AgentChannel:
    """Commands to an agent as JSON lines, its answers back the same way. Answers are read
    unbuffered, so that a poll never misses one already received."""

    def __init__(self):
        self.pid = os.getpid()
        self._buffer = b""
        self._answers: deque = deque()

    def send(self, op: str, **fields) -> None:
        try:
            self._write(json.dumps({"op": op, **fields}).encode() + b"\n")
        except (OSError, ValueError) as exc:
            raise self.stopped() from exc

    def poll(self) -> dict | None:
        """The next answer if one has arrived, without waiting."""
        return self._next(wait=False)

    def wait(self) -> dict:
        """The next answer, waiting for it."""
        return self._next(wait=True)

    def _next(self, wait: bool) -> dict | None:
        while not self._answers:
            if not wait and not select.select([self.fileno()], [], [], 0)[0]:
                return None
            try:
                chunk = self._read()
            except OSError:
                chunk = b""
            if not chunk:
                raise self.stopped()
            self._buffer += chunk
            *lines, self._buffer = self._buffer.split(b"\n")
            self._answers.extend(json.loads(line) for line in lines if line.strip())
        return self._answers.popleft()


class AgentProcess(AgentChannel):
    """An agent of our own: ``python -m nnbench.tracking.agent`` on pipes."""

    def __init__(self):
        super().__init__()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nnbench.tracking.agent"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=agent_env(),
            start_new_session=True,  # Ctrl-C goes to the training process, which ends the run
        )

    def alive(self) -> bool:
        return self.pid == os.getpid() and self.proc.poll() is None

    def fileno(self) -> int:
        return self.proc.stdout.fileno()

    def _write(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def _read(self) -> bytes:
        return os.read(self.fileno(), 1 << 16)

    def stopped(self) -> AgentStopped:
        code = self.proc.poll()
        return AgentStopped(
            f"the tracking agent (python -m nnbench.tracking.agent) stopped"
            f"{'' if code is None else f' with exit code {code}'}; its errors are above"
        )

    def close(self) -> None:
        """Close its stdin: it ends an open run KILLED, then exits."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()


class AgentConnection(AgentChannel):
    """A connection to the warm agent (`nnbench.tracking.daemon`) on its Unix socket."""

    def __init__(self, sock: socket.socket, path: Path):
        super().__init__()
        self.sock, self.path = sock, path

    @classmethod
    def open(cls, path: Path, timeout: float = 0.0, starting=None):
        """Connected to the agent at ``path``, trying until ``timeout`` (or until the agent
        process ``starting`` has exited without anyone listening); None if none."""
        deadline = time.monotonic() + timeout
        while True:
            gone = starting is not None and starting.poll() is not None
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                return cls(sock, path)
            except OSError:
                sock.close()
                if gone or time.monotonic() >= deadline:
                    return None
                time.sleep(0.01)

    def alive(self) -> bool:
        """Ours (not a fork's) and not closed by the agent."""
        if self.pid != os.getpid() or self.sock.fileno() < 0:
            return False
        if self._answers or not select.select([self.sock], [], [], 0)[0]:
            return True
        try:
            return bool(self.sock.recv(1, socket.MSG_PEEK))
        except OSError:
            return False

    def fileno(self) -> int:
        return self.sock.fileno()

    def _write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self) -> bytes:
        return self.sock.recv(1 << 16)

    def stopped(self) -> AgentStopped:
        return AgentStopped(
            f"the tracking agent at {self.path} stopped (its log: "
            f"{self.path.with_suffix('.log')}); what the run recorded before is kept"
        )

    def close(self) -> None:
        """Hang up: the agent ends an open run KILLED."""
        with contextlib.suppress(OSError):
            self.sock.close()


def agent_env() -> dict[str, str]:
    """An agent's environment: this nnbench importable, one BLAS/OpenMP thread (the agent
    multiplies no matrices, and idle pool threads spinning in it would take the cores from
    the training process's BLAS threads)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    env.update(dict.fromkeys(SINGLE_THREAD, "1"))
    return env


def warm_agent() -> AgentConnection | None:
    """A connection to this setup's warm agent, started in the background if there is none
    yet; None where there can be none (``NNBENCH_AGENT=process``, no private folder)."""
    from nnbench.tracking import daemon

    if os.environ.get("NNBENCH_AGENT", "warm") == "process":
        return None
    try:
        path = daemon.socket_path()
    except OSError:  # no private folder for the socket: an agent of our own instead
        return None
    connection = AgentConnection.open(path)
    if connection is not None:
        return connection
    with open(path.with_suffix(".log"), "ab") as log:
        starting = subprocess.Popen(
            [sys.executable, "-m", "nnbench.tracking.daemon", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=agent_env(),
            cwd=path.parent,
            start_new_session=True,  # outlives us, and Ctrl-C does not reach it
        )
    # It listens before its imports: a connection is accepted within a fraction of a second
    # (or it exits at once, when another agent of this setup started first and listens).
    connection = AgentConnection.open(path, timeout=10.0, starting=starting)
    if connection is not None and starting.poll() is None:
        global started_agent
        started_agent = path  # ours: the run's summary says that it keeps running
    return connection


started_agent: Path | None = None  # the socket of a warm agent this process started


_agent: AgentChannel | None = None


def agent() -> AgentChannel:
    """This process's agent: the warm one, else one of our own; started or reconnected if
    there is none (or it died, or we were forked)."""
    global _agent
    if _agent is None or not _agent.alive():
        _agent = warm_agent() or AgentProcess()
    return _agent


def prestart(uri: str) -> None:
    """Start the agent now and have it import MLflow and open ``uri`` while we start up."""
    agent().send("warm", uri=uri)


class AgentRecorder:
    """A run recorded by the agent. Metrics are buffered here and sent in one command at
    most every ``flush_interval`` seconds; an error the agent reports is raised at the next
    call (once)."""

    def __init__(self, process: AgentChannel, flush_interval: float = FLUSH_INTERVAL_S):
        self.process = process
        self.flush_interval = flush_interval
        self._pending: list = []
        self._last_flush = time.monotonic()
        self._run_id: str | None = None
        self._ended = False
        self.store: str | None = None  # the store holding the run
        self._start: dict = {}  # the start command, sent again to a new agent if need be
        self._restarted = False

    @classmethod
    def start(cls, *, uri, experiment, run_name, params, tags, parent=None):
        recorder = cls(agent())
        recorder.store = parent["uri"] if parent else uri
        recorder._start = {
            "uri": uri,
            "experiment": experiment,
            "run_name": run_name,
            "params": params,
            "tags": tags,
            "parent": parent,
        }
        try:
            recorder.process.send("start", **recorder._start)
        except AgentStopped:
            recorder._restart()
        return recorder

    @property
    def run_id(self) -> str:
        """The run's id (waits for the agent to have created the run). A warm agent that
        stopped before it answered (it was stopping as we connected) is replaced once."""
        while self._run_id is None:
            try:
                answer = self.process.wait()
            except AgentStopped:
                if self._restarted:
                    raise
                self._restart()
                continue
            self._take(answer)
        return self._run_id

    def _restart(self) -> None:
        """Send the run's start to a new agent (the one we had is gone)."""
        global _agent
        self._restarted = True
        if _agent is self.process:
            _agent = None
        self.process = agent()
        self.process.send("start", **self._start)

    def _take(self, answer: dict) -> dict:
        if answer["op"] == "started":
            self._run_id = answer["run_id"]
        elif answer["op"] == "error":
            unavailable = answer["unavailable"]
            raise (TrackingUnavailableError if unavailable else TrackingError)(answer["message"])
        return answer

    def _check(self) -> None:
        """Raise an error the agent has reported since the last call."""
        while (answer := self.process.poll()) is not None:
            self._take(answer)

    def log_metrics(self, metrics: dict, step: int) -> None:
        """Queue finite metrics for ``step``; a non-finite value is never logged as a number."""
        stamp = int(time.time() * 1000)
        self._pending.extend([k, v, step, stamp] for k, v in finite(metrics).items())
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def log_epoch(self, record: dict) -> None:
        """`fit`'s per-epoch record as metrics at step = epoch."""
        self.log_metrics({k: v for k, v in record.items() if k != "epoch"}, record["epoch"])

    def flush(self) -> None:
        self._check()
        if self._pending:
            metrics, self._pending = self._pending, []
            self.process.send("metrics", metrics=metrics)
        self._last_flush = time.monotonic()

    def set_tags(self, tags: dict) -> None:
        self._check()
        self.process.send("tags", tags={k: str(v)[:8000] for k, v in tags.items()})

    def draw_artifacts(self, folder: Path, *, history: list, title: str, trainer: dict) -> None:
        """Have the agent draw the curves and write the manifest into ``folder`` now, while
        we write our own files there (`nnbench.tracking.artifacts.log_run_artifacts`)."""
        self._check()
        self.process.send("draw", folder=str(folder), history=history, title=title, trainer=trainer)

    def log_artifacts(self, folder: Path, *, title: str) -> None:
        """Hand ``folder`` over to the agent, which completes it, logs it and deletes it
        (after the metrics sent so far)."""
        self.flush()
        self.process.send("artifacts", folder=str(folder), title=title)

    def end(self, status: str) -> None:
        """Send what is pending, end the run, and wait until the agent has done all of it;
        raise the first error it reported that was not raised yet."""
        if self._ended:
            return
        self._ended = True
        try:
            self._end(status)
        except AgentStopped as stopped:
            self._abandon(stopped)
            raise

    def _end(self, status: str) -> None:
        pending, self._pending = self._pending, []
        if pending:
            self.process.send("metrics", metrics=pending)
        self.process.send("end", status=status)
        error = None
        while True:
            try:
                if self._take(self.process.wait())["op"] == "ended":
                    break
            except AgentStopped:
                raise
            except (TrackingError, TrackingUnavailableError) as exc:
                error = error or exc
        if error is not None:
            raise error

    def _abandon(self, stopped: AgentStopped) -> None:
        """Our agent died with the run open (a warm agent killed outright): `abandon` it."""
        if self._run_id is not None and self.store is not None:
            abandon(self.store, [self._run_id], str(stopped))


def abandon(store: str, run_ids: list[str], message: str) -> None:
    """Runs whose agent died with them open: an agent of our own ends each FAILED with
    ``message``, unless it has ended already. No run is left RUNNING."""
    helper = AgentProcess()
    try:
        for run_id in run_ids:
            helper.send("abandon", uri=store, run_id=run_id, message=message)
        for _ in run_ids:
            while helper.wait()["op"] != "ended":
                pass
    except AgentStopped:
        pass
    finally:
        helper.close()


def planned_store(argv: list[str]) -> str | None:
    """The store a single training run with these command-line arguments records to, or
    None when it may record nothing through the agent (tracking=none, a sweep, a benchmark,
    a Hydra flag such as --cfg or --multirun). A guess made before the config is composed:
    a wrong one costs only an idle agent."""
    uri = None
    for arg in argv:
        if arg.startswith("-"):
            return None
        key, _, value = arg.partition("=")
        key = key.lstrip("+~")
        if (key, value) == ("tracking", "none") or key in ("sweep", "bench", "hydra.mode"):
            return None
        if key == "tracking.uri":
            uri = value
    return resolve_uri(uri or None)


def prestart_for(argv: list[str]) -> None:
    """`prestart` the agent when these arguments make a tracked single run."""
    uri = planned_store(argv)
    if uri is None:
        return
    from nnbench.tracking.store import check_store

    try:
        check_store(uri, wait_s=0)  # one that cannot record: the run says so, no agent
    except TrackingUnavailableError:
        return
    prestart(uri)
