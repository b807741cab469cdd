"""The record of one completed run (docs/design.md, "MLflow record of a run"), read back
from a real SQLite store: status and tags, params, per-epoch metrics, artifacts.

One run serves every test here: ``dataset=moons`` (2-D, so a decision boundary is drawn),
3 epochs, a small model, with values set on the command line so the params can be compared
with what was typed.
"""

from __future__ import annotations

import importlib.metadata
import json
import re

import numpy as np
import pytest
import yaml

import nnbench as nb
from nnbench.data import load_dataset

from .conftest import all_runs, artifact_paths, assert_none_running, client_for, history, nnbench

EPOCHS = 3
ARGS = (
    "dataset=moons",
    f"trainer.epochs={EPOCHS}",
    "model.hidden=[16,8]",
    "optimizer=adam",
    "optimizer.lr=0.02",
    "seed=3",
)
SUMMARY_METRIC = re.compile(r"(\w+/\w+) (-?\d+\.\d+)")
PER_EPOCH = (
    "train/loss",
    "train/acc",
    "val/loss",
    "val/acc",
    "time/epoch_s",
    "throughput/samples_per_s",
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """(client, run, stdout, artifact folder) of one completed moons run."""
    cwd = tmp_path_factory.mktemp("record")
    proc = nnbench(cwd, *ARGS)
    assert proc.returncode == 0, proc.stderr
    client = client_for(cwd)
    runs = all_runs(client)
    assert len(runs) == 1, [r.info.run_name for r in runs]
    run = runs[0]
    folder = cwd / "downloaded"
    folder.mkdir()
    client.download_artifacts(run.info.run_id, "", str(folder))
    return client, run, proc.stdout, folder


def test_run_finished_with_outcome_and_tags(finished):
    client, run, stdout, _ = finished
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["nnbench.outcome"] == "completed"
    assert tags["nnbench.backend"] == "numpy"
    assert tags["nnbench.device"] == "cpu"
    assert tags["nnbench.dtype"] == "float32"
    assert tags["nnbench.dataset"] == "moons"
    assert "nnbench.error" not in tags
    assert run.info.run_id in stdout  # the summary names the run
    assert_none_running(client)


def test_experiment_is_the_default_one(finished):
    client, run, _, _ = finished
    assert client.get_experiment(run.info.experiment_id).name == "nnbench"


def test_params_are_the_flattened_config(finished):
    """Dotted keys; the values typed on the command line come back as MLflow strings."""
    _, run, _, _ = finished
    params = run.data.params
    assert params["dataset.name"] == "moons"
    assert params["optimizer.name"] == "adam"
    assert float(params["optimizer.lr"]) == 0.02
    assert params["model.hidden"] == "[16, 8]"
    assert params["trainer.epochs"] == str(EPOCHS)
    assert params["seed"] == "3"
    assert params["tracking.name"] == "mlflow"
    assert not any(key.startswith("hydra") for key in params)
    assert all(isinstance(value, str) for value in params.values())


def test_one_metric_entry_per_epoch(finished):
    client, run, _, _ = finished
    for key in PER_EPOCH:
        steps = [step for step, _ in history(client, run.info.run_id, key)]
        assert steps == list(range(1, EPOCHS + 1)), key
    for key in ("train/acc", "val/acc"):
        assert all(0.0 <= v <= 1.0 for _, v in history(client, run.info.run_id, key))


def test_summary_values_match_the_store(finished):
    """The printed summary (4 decimals) and the store hold the same final values."""
    client, run, stdout, _ = finished
    run_id = run.info.run_id
    printed = {key: float(value) for key, value in SUMMARY_METRIC.findall(stdout)}
    assert printed["val/loss"] == pytest.approx(
        history(client, run_id, "val/loss")[-1][1], abs=6e-5
    )
    assert printed["test/acc"] == pytest.approx(run.data.metrics["test/acc"], abs=6e-5)


def test_test_metrics_logged_once(finished):
    client, run, _, _ = finished
    for key in ("test/acc", "test/loss"):
        assert len(history(client, run.info.run_id, key)) == 1, key
    assert 0.5 < run.data.metrics["test/acc"] <= 1.0  # moons is easy


def test_artifacts_listed(finished):
    client, run, _, _ = finished
    found = artifact_paths(client, run.info.run_id)
    expected = {
        "config.yaml",
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        ".hydra/hydra.yaml",
        "curves.png",
        "decision_boundary.png",
        "weights.npz",
        "environment.json",
    }
    assert expected <= found, expected - found
    assert "params_overflow.json" not in found  # nothing overflowed


def test_config_and_overrides_artifacts(finished):
    _, _, _, folder = finished
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["dataset"]["name"] == "moons"
    assert config["model"]["hidden"] == [16, 8]
    assert config["optimizer"]["lr"] == 0.02
    overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
    assert overrides == list(ARGS)


def test_pictures_are_png(finished):
    _, _, _, folder = finished
    for name in ("curves.png", "decision_boundary.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_environment_manifest(finished):
    _, _, _, folder = finished
    manifest = json.loads((folder / "environment.json").read_text())
    assert manifest["packages"]["mlflow"] == importlib.metadata.version("mlflow")
    assert manifest["packages"]["numpy"] == np.__version__
    kernels = manifest["backend"].pop("kernels")  # the C kernels, or why NumPy runs alone
    assert kernels.startswith(("C kernels (", "NumPy (C kernels off: "))
    assert manifest["backend"] == {"name": "numpy", "dtype": "float32", "device": "cpu"}


def test_weights_reproduce_the_logged_test_accuracy(finished):
    """The saved weights are the final model: loaded into a fresh MLP they classify the test
    split of the same data (moons, seed 3) with exactly the logged test/acc, counted here
    by hand as mean(1[logit > 0] == y)."""
    _, run, _, folder = finished
    with np.load(folder / "weights.npz", allow_pickle=False) as archive:
        state = {key: archive[key] for key in archive.files}
    shapes = {key: value.shape for key, value in state.items()}
    assert shapes == {
        "hidden.0.weight": (16, 2),
        "hidden.0.bias": (16,),
        "hidden.1.weight": (8, 16),
        "hidden.1.bias": (8,),
        "output.weight": (1, 8),
        "output.bias": (1,),
    }
    data = load_dataset(
        "moons", seed=3, val_fraction=0.15, test_fraction=0.15, samples=1000, noise=0.2
    )
    model = nb.MLP(
        in_features=2,
        hidden=[16, 8],
        out_features=1,
        seed=0,
        backend=nb.get_backend("numpy", "float32"),
    )
    model.load_state_dict(state)
    logits = np.asarray(model.forward(data.x_test, training=False))
    accuracy = float(np.mean((logits[:, 0] > 0) == (np.ravel(data.y_test) > 0.5)))
    assert accuracy == pytest.approx(run.data.metrics["test/acc"], abs=1e-12)
