"""MLflow tracking: the store, one run's lifecycle, artifacts, the tracking agent that
records a training run in a process of its own, and the multirun parent run.

Nothing here imports MLflow until a run is actually recorded, so ``tracking=none`` costs
nothing; a training run's MLflow work happens in the agent, never in the training process.
The record of a run and of a sweep: docs/design.md ("MLflow record of a run", "MLflow
record of a sweep"). Tracking writes the record and never imports the report, which reads
it back (docs/design.md, "Parts and layers").
"""

from __future__ import annotations

from nnbench.tracking import store
from nnbench.tracking.job import Job
from nnbench.tracking.recorder import NullRecorder, Recorder
from nnbench.tracking.run import OUTCOME_TAG, RunRecorder, recording
from nnbench.tracking.store import resolve_uri

__all__ = [
    "OUTCOME_TAG",
    "NullRecorder",
    "Recorder",
    "RunRecorder",
    "experiment_name",
    "Job",
    "job_tags",
    "recording",
    "resolve_uri",
    "start_run",
    "ui_address",
    "ui_command",
]


def experiment_name(configured: str | None, choices: dict) -> str:
    """``tracking.experiment``, else the experiment's name for +experiment (even when it
    runs a sweep: ``lr_figure`` is not ``+sweep=lr``'s digits runs), ``sweep-<name>`` for
    +sweep, else ``nnbench``."""
    if configured:
        return configured
    if choices.get("experiment"):
        return str(choices["experiment"])
    if choices.get("sweep"):
        return f"sweep-{choices['sweep']}"
    return "nnbench"


def ui_command(uri: str) -> str:
    """The command that opens ``uri`` in the MLflow UI, bound to 127.0.0.1."""
    if store.is_server(uri):
        return f"open {uri} in a browser"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"


def ui_address(uri: str) -> str:
    """Where `ui_command`'s UI answers."""
    return uri.rstrip("/") if store.is_server(uri) else "http://127.0.0.1:5000"


def job_tags(job: Job) -> dict[str, str]:
    """The tags every tracked job carries, whatever it runs: outcome ``running`` until it
    ends, the command-line overrides, the config hash (resumable sweeps), the sweep's id in
    a multirun, and the git commit when known (``job``: with its parent run and config hash,
    `nnbench.flow.prepare_tracking`)."""
    from nnbench.manifest import git_state
    from nnbench.tracking.resume import CONFIG_HASH_TAG

    tags = {
        OUTCOME_TAG: "running",
        "nnbench.overrides": " ".join(job.overrides),
        CONFIG_HASH_TAG: job.config_hash,
    }
    if job.parent is not None:
        tags["nnbench.sweep"] = job.parent["sweep_id"]
    commit = git_state().get("commit")
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def start_run(*, uri, experiment, run_name, params, tags, parent=None, client=None):
    """Create the run (in ``parent``'s experiment when given) with its params and tags, in
    this process; ``client`` is an open MlflowClient for ``uri``, else one is opened."""
    client = client or store.client(uri)
    if parent is not None:
        experiment_id, parent_run_id = parent["experiment_id"], parent["parent_run_id"]
    else:
        experiment_id, parent_run_id = store.experiment_id(client, experiment, uri), None
    return RunRecorder.start(client, experiment_id, run_name, params, tags, parent_run_id)
