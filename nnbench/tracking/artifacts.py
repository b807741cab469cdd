"""Everything a finished run leaves behind, gathered in a folder and logged in one call.

The training process writes what only it has (resolved config, Hydra's .hydra/ folder, the
weights, the numbers behind the decision boundary, its backend and threads); whoever logs
the folder (the tracking agent, or this process for an in-process recorder) adds what takes
drawing or reads the whole installation: the curves and the environment manifest
(`draw_artifacts`, while the training process writes its files) and the decision-boundary
picture (`finish_artifacts`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

from nnbench.manifest import environment_manifest, trainer_manifest
from nnbench.tracking import boundary
from nnbench.tracking.curves import draw_curves
from nnbench.tracking.params import OVERFLOW_ARTIFACT
from nnbench.weights import save_weights

BOUNDARY_FILE = ".boundary.npz"  # boundary.boundary_grid's arrays; drawn, then removed
# matplotlib is not thread-safe: the warm agent serves runs in threads, one drawing at a time.
DRAWING = threading.Lock()


def write_run_artifacts(folder: Path, *, config_yaml, hydra_dir, overflow, run) -> None:
    """Fill ``folder`` with the training process's artifacts (``run``: a
    `nnbench.flow.RunResult`)."""
    (folder / "config.yaml").write_text(config_yaml)
    if hydra_dir is not None and Path(hydra_dir).is_dir():
        shutil.copytree(hydra_dir, folder / ".hydra")
    if overflow:
        (folder / OVERFLOW_ARTIFACT).write_text(json.dumps(overflow, indent=1))
    model, data = run.model, run.data
    save_weights(folder / "weights.npz", model.state_dict())
    if run.result.outcome == "completed":
        grid = boundary.boundary_grid(model, data.x_test, data.y_test)
        if grid is not None:
            np.savez(folder / BOUNDARY_FILE, **grid)


def draw_artifacts(folder: Path, *, history: list, title: str, trainer: dict, manifest=None):
    """Add the learning curves and the environment manifest (`environment_manifest`, or
    ``manifest`` where the caller has it already, with ``trainer`` = `trainer_manifest` from
    the training process over it): what needs only the history, drawn while the training
    process writes its own files beside them."""
    manifest = {**(environment_manifest() if manifest is None else manifest), **trainer}
    (folder / "environment.json").write_text(json.dumps(manifest, indent=1, default=str))
    with DRAWING:
        draw_curves(history, folder / "curves.png", title)


def finish_artifacts(folder: Path, *, title: str) -> None:
    """Draw the decision boundary from `BOUNDARY_FILE`, if the training process left one."""
    grid_file = folder / BOUNDARY_FILE
    if grid_file.exists():
        with np.load(grid_file, allow_pickle=False) as grid:
            arrays = {k: grid[k] for k in grid.files}
        with DRAWING:
            boundary.draw_decision_boundary(
                **arrays, path=folder / "decision_boundary.png", title=title
            )
        grid_file.unlink()


def log_run_artifacts(recorder, *, run, title, **kwargs) -> None:
    """Gather the run's artifacts in a new folder and hand it to ``recorder``, which logs it
    and deletes it. The recorder draws its part first (the tracking agent does, in its own
    process, while this one writes the config and the weights)."""
    folder = Path(tempfile.mkdtemp(prefix="nnbench-artifacts-"))
    try:
        recorder.draw_artifacts(
            folder,
            history=run.result.history,
            title=title,
            trainer=trainer_manifest(run.model.backend),
        )
        write_run_artifacts(folder, run=run, **kwargs)
        recorder.log_artifacts(folder, title=title)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
