"""Beyond one machine: a tracking server with a PostgreSQL backend store.

The setup of the README's "Beyond one machine" section, on 127.0.0.1 only: a fresh
PostgreSQL cluster in a temporary folder, a database in it, and ``mlflow server`` on that
database with a local artifact root that the server serves. A 4-job parallel sweep (joblib
launcher) is recorded through the server, and everything is read back through it: the
parent run, its 4 children, each child's epochs, and its artifacts. Both servers are stopped
at the end, whatever happened. Skipped, with the reason, where PostgreSQL is not installed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import clean_env, jobs, metrics

pytestmark = pytest.mark.server

PG_MISSING = "PostgreSQL not installed: apt-get install postgresql"
LRS = [0.001, 0.01, 0.1, 1.0]
EPOCHS = 3
START_TIMEOUT_S = 120  # generous: the server imports MLflow on a busy 2-core machine


def pg_bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and createdb: initdb's on PATH (links resolved),
    else Debian's newest /usr/lib/postgresql/<version>/bin."""
    tools = ("initdb", "pg_ctl", "createdb")
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    debian = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    debian = [d for d in debian if d.parent.name.isdigit()]
    candidates += sorted(debian, key=lambda d: int(d.parent.name), reverse=True)
    return next((d for d in candidates if all((d / t).is_file() for t in tools)), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_db_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its server tools as user postgres."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else ""


@contextlib.contextmanager
def postgres_database(bin_dir: Path):
    """A fresh cluster on 127.0.0.1 (socket in its own folder) with database ``mlflow``;
    yields its SQLAlchemy URI and stops the cluster on exit."""
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root but there is no postgres user to run PostgreSQL as")
    home = Path(tempfile.mkdtemp(prefix="nnbench-pg-"))  # /tmp: short socket path
    if os.geteuid() == 0:
        os.chown(home, owner.pw_uid, owner.pw_gid)
    data, log, port = home / "data", home / "postgres.log", free_port()
    try:
        subprocess.run(
            as_db_owner(
                [str(bin_dir / "initdb"), "-D", str(data), "-U", "nnbench", "-A", "trust"]
                + ["-E", "UTF8", "--no-sync"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {home} -c fsync=off"
        subprocess.run(
            as_db_owner(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options]
                + ["-w", "-t", "60", "start"]
            ),
            check=True,
            capture_output=True,
            timeout=90,
        )
        try:
            createdb = [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port)]
            subprocess.run([*createdb, "-U", "nnbench", "mlflow"], check=True, timeout=30)
            yield f"postgresql+psycopg://nnbench@127.0.0.1:{port}/mlflow"
        finally:
            stop = [str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "30", "stop"]
            done = subprocess.run(as_db_owner([*stop, "-m", "fast"]), capture_output=True)
            if done.returncode != 0:
                subprocess.run(as_db_owner([*stop, "-m", "immediate"]), capture_output=True)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"PostgreSQL did not start: {exc}\n{exc.stderr!r}\n{tail(log)}")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever of it is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # workers finish their shutdown after the parent
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@contextlib.contextmanager
def mlflow_server(store_uri: str, folder: Path):
    """``mlflow server`` on 127.0.0.1 with ``store_uri`` and artifacts under folder/artifacts,
    served by the server itself (mlflow-artifacts:/); yields its URL once /health answers."""
    port, log = free_port(), folder / "mlflow-server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no GenAI job runners here
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri]
    command += ["--artifacts-destination", str(folder / "artifacts")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not healthy(url):
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy after {START_TIMEOUT_S} s:\n{tail(log)}")
            time.sleep(0.5)
        yield url
    finally:
        stop_group(proc)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(URL, artifact root, store URI) of a tracking server backed by a fresh PostgreSQL."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        pytest.skip(PG_MISSING)
    pytest.importorskip("psycopg", reason="psycopg not installed: pip install 'nnbench[server]'")
    folder = tmp_path_factory.mktemp("tracking-server")
    with postgres_database(bin_dir) as store_uri, mlflow_server(store_uri, folder) as url:
        yield url, folder / "artifacts", store_uri


@pytest.fixture(scope="module")
def sweep(server, tmp_path_factory):
    """The README's parallel sweep, recorded through the server; returns its stdout."""
    url = server[0]
    cwd = tmp_path_factory.mktemp("sweep")
    proc = subprocess.run(
        [sys.executable, "-m", "nnbench", "+sweep=lr", "hydra/launcher=joblib"]
        + ["hydra.launcher.n_jobs=4", "optimizer.lr=" + ",".join(map(str, LRS))]
        + [f"trainer.epochs={EPOCHS}", f"tracking.uri={url}"],
        cwd=cwd,
        env=clean_env(cwd),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert not (cwd / "outputs" / "mlflow.db").exists(), "runs went to the local store"
    return proc.stdout


@pytest.fixture(scope="module")
def runs(server, sweep):
    """(parent run, children sorted by learning rate), read back through the server."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=server[0])
    experiment = client.get_experiment_by_name("sweep-lr")
    assert experiment is not None
    found = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    parent = parents[0]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    children.sort(key=lambda r: float(r.data.params["optimizer.lr"]))
    return client, parent, children


def test_parent_and_all_children_arrive(runs):
    client, parent, children = runs
    assert parent.info.status == "FINISHED"
    assert [float(c.data.params["optimizer.lr"]) for c in children] == LRS
    for child in children:
        assert child.info.status == "FINISHED", child.info.run_name
        assert child.data.tags["nnbench.outcome"] == "completed", child.info.run_name
        assert child.data.params["trainer.epochs"] == str(EPOCHS)


def test_every_epoch_of_every_child_arrives(runs, sweep):
    """Each child has val/loss and train/loss at steps 1..3, and its last val/loss is the
    one its job printed (4 decimals) - the store and the console agree."""
    client, _, children = runs
    printed = {}
    for line in jobs(sweep).values():
        lr = float(re.search(r"optimizer\.lr=([\d.e-]+)", line).group(1))
        printed[lr] = metrics(line)
    assert sorted(printed) == LRS
    for child in children:
        for key in ("train/loss", "val/loss"):
            history = client.get_metric_history(child.info.run_id, key)
            assert sorted(m.step for m in history) == [1, 2, 3], (child.info.run_name, key)
            assert all(np.isfinite(m.value) for m in history)
        last = max(client.get_metric_history(child.info.run_id, "val/loss"), key=lambda m: m.step)
        lr = float(child.data.params["optimizer.lr"])
        assert last.value == pytest.approx(printed[lr]["val/loss"], abs=6e-5)


def test_artifacts_are_served_from_the_local_root(runs, server, tmp_path):
    """Artifacts go through the server (mlflow-artifacts:/) into its local root, and come
    back through it: the weights load with allow_pickle=False."""
    client, _, children = runs
    artifact_root = server[1]
    for child in children:
        assert child.info.artifact_uri.startswith("mlflow-artifacts:"), child.info.artifact_uri
        names = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"config.yaml", "curves.png", "environment.json", "weights.npz"} <= names
        local = client.download_artifacts(child.info.run_id, "weights.npz", str(tmp_path))
        with np.load(local, allow_pickle=False) as weights:
            assert weights["output.weight"].shape == (10, 64)  # 10 classes, 64 hidden units
            assert weights["output.bias"].shape == (10,)
        on_disk = list(artifact_root.rglob(f"{child.info.run_id}/**/weights.npz"))
        assert len(on_disk) == 1, on_disk
        Path(local).unlink()


def test_records_are_in_postgresql(server, runs):
    """The server really keeps the runs in PostgreSQL: count them there directly."""
    import psycopg

    _, parent, children = runs
    dsn = server[2].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        n_runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        n_val = conn.execute("SELECT count(*) FROM metrics WHERE key = 'val/loss'").fetchone()[0]
    assert n_runs == 1 + len(LRS)
    assert n_val == EPOCHS * len(LRS)
