"""Helpers for the tests that run the program with tracking on (tests/tracking/,
tests/test_launchers.py, tests/test_resume.py): run it in its own folder and read the
record back from its SQLite store with an MlflowClient."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PARENT = "mlflow.parentRunId"


def sweep_env(cwd: Path) -> dict[str, str]:
    """The default store under ``cwd`` (no MLFLOW_TRACKING_URI), no stale sweep variable,
    Hydra's error rewriting on, the dataset cache inside ``cwd``."""
    drop = ("HYDRA_FULL_ERROR", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "NNBENCH_SWEEP")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["NNBENCH_DATA"] = str(cwd / "cache")
    return env


def nnbench(cwd: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """``python -m nnbench ARGS`` in ``cwd``, tracking on (the default)."""
    return subprocess.run(
        [sys.executable, "-m", "nnbench", *args],
        cwd=cwd,
        env=sweep_env(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def store_uri(cwd: Path) -> str:
    """The default store of a run started in ``cwd`` (``outputs/mlflow.db`` there), written
    out by hand."""
    return f"sqlite:///{cwd.resolve()}/outputs/mlflow.db"


def client_for(cwd: Path):
    """A client on ``cwd``'s store. It is opened under the store's creation lock, so that
    reading while a run is still creating the store cannot race its schema migrations."""
    from nnbench.tracking.store import client

    return client(store_uri(cwd))


def all_runs(client) -> list:
    """Every active run of every experiment, oldest first."""
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    return list(client.search_runs(ids, max_results=1000, order_by=["attributes.start_time ASC"]))


def parents(client) -> list:
    """The sweeps' parent runs, oldest first."""
    return [r for r in all_runs(client) if r.data.tags.get("nnbench.role") == "sweep"]


def children_of(client, parent) -> list:
    return [r for r in all_runs(client) if r.data.tags.get(PARENT) == parent.info.run_id]


def steps(client, run_id: str, key: str = "val/loss") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))
