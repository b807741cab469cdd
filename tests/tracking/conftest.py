"""Run the program against a real MLflow SQLite store and read the record back.

Every run here is ``python -m nnbench`` in its own folder (the default store is
``<cwd>/outputs/mlflow.db``), read back with an ``MlflowClient``: what the UI and the report
would see. A tracked run costs seconds (MLflow's import, a fresh store's migrations), so
tests share runs through module-scoped fixtures.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sweep_helpers import client_for, nnbench  # noqa: F401  (re-exported)
from tests.sweep_helpers import sweep_env as run_env

TERMINAL = {"FINISHED", "FAILED", "KILLED"}


def start_nnbench(cwd: Path, *args: str) -> subprocess.Popen:
    """``python -m nnbench ARGS`` started in the background (output to files in ``cwd``)."""
    with open(cwd / "stdout.txt", "w") as out, open(cwd / "stderr.txt", "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "nnbench", *args],
            cwd=cwd,
            env=run_env(cwd),
            stdout=out,
            stderr=err,
        )


def all_runs(client) -> list:
    """Every run of every experiment in the store, oldest first."""
    experiments = client.search_experiments()
    ids = [e.experiment_id for e in experiments]
    if not ids:
        return []
    runs = client.search_runs(ids, max_results=1000, order_by=["attributes.start_time ASC"])
    return list(runs)


def assert_none_running(client) -> None:
    """No run is ever left RUNNING (docs/design.md, "MLflow record of a run")."""
    states = {run.info.run_id: run.info.status for run in all_runs(client)}
    assert all(status in TERMINAL for status in states.values()), states


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of every entry of metric ``key``, in step order."""
    entries = client.get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in entries)


def artifact_paths(client, run_id: str, path: str | None = None) -> set[str]:
    """Every artifact file of the run, as paths relative to its artifact root."""
    found = set()
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            found |= artifact_paths(client, run_id, info.path)
        else:
            found.add(info.path)
    return found


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s or if
    ``proc`` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the program ended (exit {proc.returncode}) before {what}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def pytest_collection_modifyitems(config, items):
    """MLflow's SQLAlchemy store triggers SQLAlchemy's own deprecation warning: not ours."""
    here = Path(__file__).parent
    ignore = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(ignore)


@pytest.fixture
def spawn():
    """`start_nnbench`, with whatever is still running killed when the test ends (a failed
    test must not leave a 2000-epoch run behind)."""
    started = []

    def start(cwd: Path, *args: str) -> subprocess.Popen:
        proc = start_nnbench(cwd, *args)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
