"""The same command twice with the same seed, on NumPy, gives bit-identical metrics and
weights; ``seed=0`` really seeds (a falsy seed must not mean "unseeded"); another seed gives
other weights, another split and other metrics.

Three runs of ``python -m nnbench`` (dropout on, so the backend's RNG is exercised too), each
in its own folder with its own MLflow store, read back through MLflow: every per-epoch metric
except wall-clock timings, and the ``weights.npz`` artifact.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnbench.data import load_dataset

ARGS = ("trainer.epochs=3", "model.dropout=0.2", "trainer.progress=none")
TIMINGS = ("time/", "throughput/")  # wall-clock: never reproducible
# MLflow 3.17's SQLAlchemy store, read back here, warns about its own loader options.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")


def _start(folder: Path, seed: int) -> subprocess.Popen:
    folder.mkdir()
    dropped = ("HYDRA_FULL_ERROR", "MLFLOW_", "NNBENCH_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["NNBENCH_DATA"] = str(folder / "data")
    env["NNBENCH_AGENT_DIR"] = os.environ["NNBENCH_AGENT_DIR"]  # the session's warm agents
    return subprocess.Popen(
        [sys.executable, "-m", "nnbench", f"seed={seed}", *ARGS],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _record(folder: Path) -> dict:
    """The one run in folder's store: {"metrics": {key: [(step, value), ...]}, "weights",
    "params"}."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'outputs' / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    [run] = client.search_runs(experiments)
    metrics = {
        key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        for key in run.data.metrics
        if not key.startswith(TIMINGS)
    }
    [weights_file] = (folder / "outputs").glob("mlartifacts/**/weights.npz")
    with np.load(weights_file, allow_pickle=False) as archive:
        weights = {key: archive[key] for key in archive.files}
    return {"metrics": metrics, "weights": weights, "params": run.data.params}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """seed=0 twice and seed=1 once, run side by side."""
    root = tmp_path_factory.mktemp("reproducibility")
    procs = {name: _start(root / name, seed) for name, seed in [("a", 0), ("b", 0), ("c", 1)]}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"run {name}:\n{out}"
        assert "completed 3 epochs" in out, out
    return {name: _record(root / name) for name in procs}


def test_runs_recorded_every_epoch(runs):
    for record in runs.values():
        assert [step for step, _ in record["metrics"]["train/loss"]] == [1, 2, 3]
        assert {"val/loss", "val/acc", "test/acc"} <= set(record["metrics"])
    assert runs["a"]["params"]["seed"] == "0" and runs["c"]["params"]["seed"] == "1"
    assert runs["a"]["params"]["model.dropout"] == "0.2"


def test_same_seed_bit_identical_metrics(runs):
    """Every logged value, at every step, equal as floats (no tolerance)."""
    assert runs["a"]["metrics"] == runs["b"]["metrics"]


def test_same_seed_bit_identical_weights(runs):
    a, b = runs["a"]["weights"], runs["b"]["weights"]
    assert a.keys() == b.keys() and a
    for key in a:
        assert a[key].dtype == b[key].dtype
        assert a[key].tobytes() == b[key].tobytes(), key


def test_other_seed_other_weights_and_metrics(runs):
    a, c = runs["a"], runs["c"]
    assert a["weights"].keys() == c["weights"].keys()
    for key in ("hidden.0.weight", "output.weight"):
        assert not np.array_equal(a["weights"][key], c["weights"][key]), key
    for key in ("train/loss", "val/loss"):
        assert a["metrics"][key] != c["metrics"][key], key


def test_seed_fixes_the_split():
    """The split the CLI trains on (load_dataset with the run's seed): seed 0 twice is the
    same split, seed 1 another one of the same sizes."""
    first, again, other = (load_dataset("digits", seed=s) for s in (0, 0, 1))
    for part in ("x_train", "y_train", "x_val", "x_test"):
        assert np.array_equal(getattr(first, part), getattr(again, part)), part
    assert first.x_train.shape == other.x_train.shape
    assert not np.array_equal(first.y_train, other.y_train)
    assert not np.array_equal(first.x_test, other.x_test)
