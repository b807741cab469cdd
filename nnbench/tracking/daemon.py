"""The warm tracking agent: one long-lived agent serving every run of a user's setup.

A run's agent spends about 1.5 s importing MLflow, SQLAlchemy and matplotlib and opening the
store, more than the 50-epoch run it records. So the first tracked run starts this agent in
the background; it listens on a Unix socket, keeps its imports, stores and fonts warm, and
serves every later run (each connection speaks `nnbench.tracking.agent`'s protocol) until it
has had no connection for ``NNBENCH_AGENT_IDLE_S`` seconds (default 600). Then it exits.

    python -m nnbench.tracking.daemon <socket path>     (started by nnbench, not by hand)
    python -m nnbench.tracking.daemon --stop            (stop the warm agents now)

- One per setup: the socket's name is a digest of the interpreter, nnbench's source files,
  the installed packages' folders and the MLflow/credential environment variables
  (`setup_key`), so an edited checkout, a ``pip install`` or another tracking configuration
  gets an agent of its own instead of a stale one.
- Private: the socket lives in ``$NNBENCH_AGENT_DIR``, else ``$XDG_RUNTIME_DIR/nnbench``,
  else ``/tmp/nnbench-<uid>``, a folder only its owner can enter (checked, or no agent).
- One command at a time per store: a lock per store serializes the commands of the runs
  that record there (parallel jobs of a sweep share the agent, and the store sees one
  writer), while runs on other stores go on beside them: a slow or broken store holds up
  only its own runs.
- Nothing lost: a connection that closes with a run open ends it KILLED, as a companion
  process does. SIGTERM first removes the socket (no new run connects to a stopping
  agent), then ends every open run KILLED whose store answers within `STOP_WAIT_S`, and
  exits; a run it could not end is ended FAILED by its training process.
- ``NNBENCH_AGENT=process`` gives each training process its own agent instead (no socket).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import hashlib
import json
import os
import signal
import socket
import stat
import sys
import threading
import time
from pathlib import Path

IDLE_S = 600.0
STOP_WAIT_S = 5.0  # how long a stopping agent waits for each store to end its open runs
# Environment that changes what the agent does: the store, its credentials and transport.
KEY_ENV_PREFIXES = ("MLFLOW_", "AWS_", "AZURE_", "GOOGLE_", "NNBENCH_AGENT")
KEY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
KEY_ENV += ("CUDA_VISIBLE_DEVICES", "PYTHONPATH")


class UnsafeDirectory(OSError):
    """The agent's folder could be entered by someone else: no agent lives there."""


def runtime_dir() -> Path:
    """The private folder of the agents' sockets (created with mode 0700 if missing)."""
    chosen = os.environ.get("NNBENCH_AGENT_DIR")
    if chosen:
        folder = Path(chosen)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        folder = Path(os.environ["XDG_RUNTIME_DIR"]) / "nnbench"
    else:
        folder = Path("/tmp") / f"nnbench-{os.getuid()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise UnsafeDirectory(f"{folder} must be a folder of yours that only you can enter")
    return folder


def setup_key() -> str:
    """A digest of everything a warm agent could hold stale (see the module docstring)."""
    package = Path(__file__).resolve().parents[1]
    parts = [sys.executable, sys.version]
    for source in sorted(package.rglob("*.py")):
        info = source.stat()
        parts.append(f"{source}:{info.st_mtime_ns}:{info.st_size}")
    for entry in sys.path:
        if entry.endswith("-packages"):
            with contextlib.suppress(OSError):
                parts.append(f"{entry}:{os.stat(entry).st_mtime_ns}")
    for name, value in sorted(key_environment().items()):
        parts.append(f"{name}={value}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def key_environment() -> dict[str, str]:
    """The environment that makes an agent's setup, with nnbench's own MLflow defaults
    filled in: the agent sets them itself (`nnbench.tracking.store.mlflow_defaults`), so a
    process that has set them already (a sweep's) shares the agent of one that has not."""
    from nnbench.tracking.store import HTTP_DEFAULTS

    environment = {**HTTP_DEFAULTS, **os.environ}
    return {
        name: value
        for name, value in environment.items()
        if name.startswith(KEY_ENV_PREFIXES) or name in KEY_ENV
    }


SOCKET_PATH_MAX = 100  # bytes: AF_UNIX addresses hold 108 on Linux, 104 on macOS


def socket_path() -> Path:
    """This setup's socket (OSError when `runtime_dir` cannot hold one)."""
    path = runtime_dir() / f"agent-{setup_key()}.sock"
    if len(os.fsencode(path)) > SOCKET_PATH_MAX:
        raise OSError(f"{path}: too long a path for a Unix socket")
    return path


def idle_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("NNBENCH_AGENT_IDLE_S", IDLE_S)))
    except ValueError:
        return IDLE_S


class Server:
    """Accepts connections on ``path`` and serves each in a thread of its own."""

    def __init__(self, path: Path, idle_s: float):
        self.path, self.idle_s = path, idle_s
        self.lock = threading.Lock()  # guards `agents` and `stores`
        self.stores: dict = {}  # store URI (None: no store yet) -> its commands' lock
        self.agents: set = set()
        self.connections = 0
        self.last_seen = time.monotonic()
        self._count = threading.Lock()

    def claim(self) -> bool:
        """Hold ``<socket>.lock`` for life; False when another agent holds it already."""
        # "a": a loser of the race must not empty the winner's pid before it finds out.
        self._lock_file = open(self.path.with_suffix(".lock"), "a")  # noqa: SIM115 (held)
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            return False
        self._lock_file.truncate(0)
        self._lock_file.write(str(os.getpid()))
        self._lock_file.flush()
        return True

    def listen(self) -> socket.socket:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a dead agent's socket: we hold the lock, so it is dead
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        listener.listen(64)
        listener.settimeout(1.0)
        return listener

    def serve_forever(self, listener: socket.socket) -> None:
        """Serve until idle: no connection for ``idle_s``. Then the socket's name goes first
        (a new client starts a new agent), the connections already queued are served, and
        the agent returns once they are done."""
        threading.Thread(target=self.retry_ends, daemon=True).start()
        while True:
            try:
                self.accept(listener.accept()[0])
            except TimeoutError:
                if self.idle():
                    break
        self.remove()
        listener.setblocking(False)
        with contextlib.suppress(BlockingIOError, OSError):
            while True:
                self.accept(listener.accept()[0])
        while not self.idle(quiet_s=0.0):
            time.sleep(0.05)

    def retry_ends(self) -> None:
        """Every second, end the runs whose end a store refused (a full disk), in a thread
        of its own: a store that still hangs holds up no connection."""
        from nnbench.tracking.agent import Agent, retry_unended

        while True:
            time.sleep(1.0)
            if Agent.unended:
                retry_unended(self.store_lock)

    def idle(self, quiet_s: float | None = None) -> bool:
        quiet_s = self.idle_s if quiet_s is None else quiet_s
        with self._count:
            return self.connections == 0 and time.monotonic() - self.last_seen >= quiet_s

    def accept(self, conn: socket.socket) -> None:
        with self._count:
            self.connections += 1
        threading.Thread(target=self.serve_connection, args=(conn,), daemon=True).start()

    def store_lock(self, uri: str | None) -> threading.Lock:
        """The lock of the commands on store ``uri``: one command at a time per store."""
        with self.lock:
            return self.stores.setdefault(uri, threading.Lock())

    def serve_connection(self, conn: socket.socket) -> None:
        from nnbench.tracking.agent import Agent

        conn.settimeout(None)
        writer = threading.Lock()

        def answer(message: dict) -> None:
            with writer:
                with contextlib.suppress(OSError):  # the training process is gone
                    conn.sendall(json.dumps(message).encode() + b"\n")

        agent = Agent(answer)
        with self.lock:
            self.agents.add(agent)
        try:
            for line in conn.makefile("rb"):
                if line.strip():
                    command = json.loads(line)
                    with self.store_lock(agent.store_of(command)):
                        agent.handle(command)
        except (OSError, ValueError):
            pass  # a broken connection or line: the run ends KILLED below
        finally:
            with self.store_lock(agent.store):
                agent.orphaned()
            with self.lock:
                self.agents.discard(agent)
            conn.close()
            with self._count:
                self.connections -= 1
                self.last_seen = time.monotonic()

    def terminate(self, *_) -> None:
        """SIGTERM: no new connection (the socket goes first), every open run ended KILLED
        where its store answers within `STOP_WAIT_S`, then exit. A run on a store that
        hangs is left to its training process, which has it ended FAILED when it finds
        the agent gone (`nnbench.tracking.agent_client.AgentRecorder`)."""
        self.remove()
        with self.lock:
            agents = list(self.agents)
        for agent in agents:
            lock = self.store_lock(agent.store)
            if lock.acquire(timeout=STOP_WAIT_S):
                try:
                    agent.orphaned()
                finally:
                    lock.release()
        sys.stderr.flush()
        os._exit(0)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def running_agents(folder: Path) -> list[int]:
    """The process ids of the warm agents living in ``folder`` (each holds its lock file;
    a lock nobody holds is a finished agent's, whatever pid it names)."""
    pids = []
    for lock in sorted(folder.glob("agent-*.lock")):
        try:
            with open(lock) as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except OSError:  # held: its agent is alive
                    pids.append(int(handle.read().strip() or 0))
        except (OSError, ValueError):
            continue
    return [pid for pid in pids if pid > 0]


def stop(folder: Path | None = None, wait_s: float = 3 * STOP_WAIT_S) -> list[int]:
    """Stop every warm agent in ``folder`` (default: `runtime_dir`): SIGTERM, which ends
    their open runs KILLED, then SIGKILL for any still alive after ``wait_s`` seconds (stuck
    on a store that does not answer). Returns the process ids stopped; each has exited."""
    folder = runtime_dir() if folder is None else folder
    pids = running_agents(folder)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while set(pids) & set(running_agents(folder)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in set(pids) & set(running_agents(folder)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    while set(pids) & set(running_agents(folder)) and time.monotonic() < deadline + 5:
        time.sleep(0.05)
    return pids


def main(argv: list[str] | None = None) -> None:
    from nnbench.tracking.agent import quiet_libraries

    args = sys.argv[1:] if argv is None else argv
    if args == ["--stop"]:  # python -m nnbench.tracking.daemon --stop
        pids = stop()
        print(f"stopped {len(pids)} warm tracking agent(s) in {runtime_dir()}")
        return
    server = Server(Path(args[0]), idle_seconds())
    if not server.claim():
        return  # another agent serves this setup: the client connects to it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, server.terminate)
    listener = server.listen()  # before the imports: a client may connect and queue now
    quiet_libraries()
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (the store's 1 s of imports)

    from nnbench.tracking.agent import Agent

    Agent(lambda message: None).prepare()  # matplotlib, its fonts, the installed packages
    # A million objects are loaded now and live as long as the agent: out of the collector's
    # sight, so that a full collection (100+ ms over all of them) never lands in a run's end.
    gc.collect()
    gc.freeze()
    try:
        server.serve_forever(listener)
    finally:
        server.remove()
    log = server.path.with_suffix(".log")
    with contextlib.suppress(OSError):
        if log.stat().st_size == 0:
            log.unlink()
    sys.stderr.flush()
    os._exit(0)  # skip the teardown of MLflow, SQLAlchemy and matplotlib


if __name__ == "__main__":
    main()
