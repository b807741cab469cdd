"""Everything a finished run leaves behind, written to a folder and logged in one call:
resolved config, Hydra's .hydra/ folder, curves, decision boundary, weights, manifest."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from nnbench.manifest import environment_manifest
from nnbench.tracking import plots
from nnbench.tracking.params import OVERFLOW_ARTIFACT
from nnbench.weights import save_weights


def write_run_artifacts(folder: Path, *, config_yaml, hydra_dir, overflow, run, title) -> None:
    """Fill ``folder`` with the run's artifacts (``run`` is what cli.train returns)."""
    (folder / "config.yaml").write_text(config_yaml)
    if hydra_dir is not None and Path(hydra_dir).is_dir():
        shutil.copytree(hydra_dir, folder / ".hydra")
    if overflow:
        (folder / OVERFLOW_ARTIFACT).write_text(json.dumps(overflow, indent=1))
    model, data = run["model"], run["data"]
    (folder / "environment.json").write_text(
        json.dumps(environment_manifest(model.backend), indent=1, default=str)
    )
    save_weights(folder / "weights.npz", model.state_dict())
    plots.learning_curves(run["result"].history, folder / "curves.png", title)
    if run["result"].outcome == "completed":
        plots.decision_boundary(
            model, data.x_test, data.y_test, folder / "decision_boundary.png", title
        )


def log_run_artifacts(recorder, **kwargs) -> None:
    with tempfile.TemporaryDirectory(prefix="nnbench-artifacts-") as tmp:
        write_run_artifacts(Path(tmp), **kwargs)
        recorder.client.log_artifacts(recorder.run_id, tmp)
