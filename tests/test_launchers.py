"""Sweeps through Hydra's launchers all land in one MLflow store, and each job finds its
sweep's parent run however it was started.

End to end (``python -m nnbench`` in a fresh folder, read back with an MlflowClient): a
2-job sweep through joblib (worker processes), submitit_local (one subprocess per job) and
Ray (a local Ray instance; marker ``slow``, skipped without ``pip install 'nnbench[ray]'``)
records one parent run and one FINISHED child per job, with every epoch.

In-process: how a job finds the parent run (nnbench.tracking.sweep.find_parent) when it
gets the environment variable, only the sweep file, or only a tracking store; that a job on
another host never writes to the sweep's SQLite file; and which GPU a cupy job takes
(nnbench.backend.devices; on a machine with GPUs the device itself is checked).
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from nnbench.backend import _cupy, devices
from nnbench.errors import TrackingUnavailableError
from nnbench.tracking import sweep
from tests.sweep_helpers import children_of, client_for, nnbench, parents, steps

# MLflow's SQLAlchemy store triggers SQLAlchemy's own deprecation warning: not ours.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
RATES = ("0.01", "0.1")
EPOCHS = 2


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def needs(module: str, extra: str):
    return pytest.mark.skipif(
        not has(module), reason=f"{module} is not installed (pip install 'nnbench[{extra}]')"
    )


LAUNCHERS = {
    "stacked": ["hydra/launcher=stacked"],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"],
    # A local Ray instance on this machine's cores, without its dashboard.
    "ray": [
        "hydra/launcher=ray",
        "+hydra.launcher.ray.init.num_cpus=2",
        "+hydra.launcher.ray.init.include_dashboard=false",
    ],
}
LAUNCHER_PARAMS = [
    pytest.param("stacked"),
    pytest.param("joblib", marks=needs("hydra_plugins.hydra_joblib_launcher", "test")),
    pytest.param("submitit_local", marks=needs("hydra_plugins.hydra_submitit_launcher", "slurm")),
    pytest.param("ray", marks=[pytest.mark.slow, needs("hydra_plugins.hydra_ray_launcher", "ray")]),
]


# ---------------------------------------------------------------- end to end, per launcher
@pytest.mark.parametrize("launcher", LAUNCHER_PARAMS)
def test_sweep_records_every_run(tmp_path, launcher):
    proc = nnbench(
        tmp_path,
        "+sweep=lr",
        f"optimizer.lr={','.join(RATES)}",
        f"trainer.epochs={EPOCHS}",
        *LAUNCHERS[launcher],
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = client_for(tmp_path)
    (parent,) = parents(client)
    assert parent.info.status == "FINISHED"
    children = children_of(client, parent)
    assert sorted(c.data.params["optimizer.lr"] for c in children) == sorted(RATES)
    for child in children:
        assert child.info.status == "FINISHED", child.info.run_name
        assert child.data.tags["nnbench.outcome"] == "completed"
        assert child.data.tags["nnbench.sweep"] == parent.info.run_id
        assert child.info.experiment_id == parent.info.experiment_id
        assert steps(client, child.info.run_id) == list(range(1, EPOCHS + 1))
        assert "test/acc" in child.data.metrics
    assert parent.data.metrics["runs/total"] == len(RATES)  # the summary saw every job
    assert len({c.data.tags["nnbench.config_hash"] for c in children}) == len(RATES)


# ---------------------------------------------------------------- finding the parent run
def info(sweep_dir: str, uri: str = "sqlite:////nowhere/mlflow.db", host=None) -> dict:
    """What the sweep callback hands its jobs, written out."""
    return {
        "uri": uri,
        "experiment_id": "7",
        "parent_run_id": "p" * 32,
        "sweep_id": "p" * 32,
        "sweep_dir": sweep_dir,
        "host": host or sweep.socket.gethostname(),
    }


def test_parent_from_the_environment(monkeypatch, tmp_path):
    """A job whose working directory differs from the launcher's (no sweep file there)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NNBENCH_SWEEP", json.dumps(info("outputs/multirun/a")))
    assert sweep.find_parent("outputs/multirun/a", None, "sweep-lr") == info("outputs/multirun/a")


def test_environment_of_another_sweep_is_ignored(monkeypatch, tmp_path):
    """A variable left over from another sweep does not capture this one's jobs: the sweep
    file next to the job wins."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NNBENCH_SWEEP", json.dumps(info("outputs/multirun/old")))
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "nnbench_sweep.json").write_text(json.dumps(info("new")))
    assert sweep.find_parent("new", None, "sweep-lr")["sweep_dir"] == "new"


def test_no_parent_anywhere_is_an_error(monkeypatch, tmp_path):
    """Without the variable, the file or a configured store, recording the job as a run of
    its own would hide it from the sweep: the job stops and says what to do."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NNBENCH_SWEEP", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(TrackingUnavailableError, match="tracking server"):
        sweep.find_parent("outputs/multirun/a", None, "sweep-lr")
    assert not (tmp_path / "outputs").exists()  # no stray default store created


def test_sqlite_store_of_another_host_is_refused(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NNBENCH_SWEEP", json.dumps(info("d", host="head-node")))
    with pytest.raises(TrackingUnavailableError, match="SQLite store is for one machine"):
        sweep.find_parent("d", None, "sweep-lr")


def test_server_store_of_another_host_is_fine(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    remote = info("d", uri="http://127.0.0.1:5000", host="head-node")
    monkeypatch.setenv("NNBENCH_SWEEP", json.dumps(remote))
    assert sweep.find_parent("d", None, "sweep-lr") == remote


def test_parent_looked_up_in_the_store(monkeypatch, tmp_path):
    """Neither variable nor file (a Ray cluster's worker): the running sweep run tagged with
    this sweep directory, in the store named by tracking.uri."""
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NNBENCH_SWEEP", raising=False)
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    (tmp_path / "store").mkdir()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("sweep-lr")
    tags = {"nnbench.role": "sweep", "nnbench.sweep": "outputs/multirun/x"}
    ended = client.create_run(experiment, tags=tags).info.run_id
    client.set_terminated(ended, "FINISHED")  # an earlier sweep into the same folder
    running = client.create_run(experiment, tags=tags).info.run_id
    client.create_run(experiment, tags={**tags, "nnbench.sweep": "outputs/multirun/y"})

    found = sweep.find_parent("outputs/multirun/x", uri, "sweep-lr")
    assert (found["parent_run_id"], found["experiment_id"], found["uri"]) == (
        running,
        experiment,
        uri,
    )


# ---------------------------------------------------------------- one job per GPU
def test_cpu_backends_never_touch_a_gpu(monkeypatch):
    monkeypatch.setattr(_cupy, "device_count", lambda: pytest.fail("asked for GPUs"))
    assert devices.use_job_gpu("numpy", 5) is None
    assert devices.use_job_gpu("strict", 0) is None


@pytest.mark.parametrize(("job", "expected"), [(0, 0), (1, 1), (2, 2), (3, 0), (7, 1)])
def test_job_n_runs_on_gpu_n_mod_count(monkeypatch, job, expected):
    """Three GPUs: jobs 0, 1, 2 on GPUs 0, 1, 2; job 3 back on 0; job 7 on 1."""
    used = []
    monkeypatch.setattr(_cupy, "device_count", lambda: 3)
    monkeypatch.setattr(_cupy, "use_device", used.append)
    assert devices.use_job_gpu("cupy", job) == expected
    assert devices.use_job_gpu("auto", job) == expected
    assert used == [expected, expected]


def test_no_gpu_leaves_the_choice_to_the_backend(monkeypatch):
    """backend=cupy without a GPU: no device is chosen here; get_backend says why."""
    monkeypatch.setattr(_cupy, "device_count", lambda: 0)
    assert devices.use_job_gpu("cupy", 2) is None
    assert devices.parallel_jobs() == 1


@pytest.mark.parametrize("count", [1, 4])
def test_joblib_gpus_runs_one_job_per_gpu(monkeypatch, count):
    """hydra/launcher=joblib_gpus is the joblib launcher with n_jobs = the GPU count."""
    from hydra import compose, initialize_config_module

    from nnbench import cli  # registers the schema and the nnbench.gpus resolver

    monkeypatch.setattr(_cupy, "device_count", lambda: count)
    with initialize_config_module("nnbench.conf", version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["hydra/launcher=joblib_gpus", "backend=cupy"],
            return_hydra_config=True,
        )
    assert cli.OmegaConf.select(cfg, "hydra.launcher.n_jobs") == count
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")


GPUS = _cupy.device_count()


@pytest.mark.skipif(GPUS == 0, reason="needs CuPy and an NVIDIA GPU (pip install 'nnbench[gpu]')")
def test_job_gpu_is_the_backends_device():
    """On a GPU machine: the job's arrays go to GPU job mod count, as its device tag says."""
    import nnbench as nb

    for job in range(GPUS + 1):
        assert devices.use_job_gpu("cupy", job) == job % GPUS
        backend = nb.get_backend("cupy")
        assert backend.device.startswith(f"cuda:{job % GPUS} ")
        assert backend.xp.zeros(3).device.id == job % GPUS
