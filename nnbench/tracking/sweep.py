"""The multirun's parent run, created by a Hydra callback in the launching process before
any job starts, and closed when the last job is done (after the sweep's summary, which
`nnbench.sweep_callback` adds: docs/design.md, "The job flow of a sweep").

The callback writes what a job needs to find the parent run (store URI, experiment id,
parent run id) to ``<sweep dir>/nnbench_sweep.json`` and to $NNBENCH_SWEEP; each job finds
it (`find_parent`) and records itself as a child run. Creating the store and the
experiment here, once, is what keeps parallel jobs out of SQLite's migration race.

Jobs run in other processes and, with Ray or SLURM, maybe on other machines. The variable
reaches every job a launcher starts as a child of this process (joblib, submitit, a local
Ray instance; SLURM passes the submitting environment on); the file reaches jobs that share
this filesystem and working directory; a job that gets neither looks the parent run up in
the store by its sweep directory, which needs a tracking server. SQLite is for one
machine: a job on another host is refused rather than recorded in a file of its own.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import socket
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from nnbench.errors import TrackingUnavailableError
from nnbench.interrupt import sigterm_raises
from nnbench.tracking import experiment_name, resolve_uri, store, views
from nnbench.tracking.params import LOG10_SUFFIX, LOG_SCALE_KEYS
from nnbench.tracking.run import BENCH_METRIC, ERROR_TAG, OUTCOME_TAG, TRAINING_METRIC

SWEEP_FILE = "nnbench_sweep.json"
SWEEP_ENV = "NNBENCH_SWEEP"
ROLE_TAG, SWEEP_TAG = "nnbench.role", "nnbench.sweep"
log = logging.getLogger(__name__)


def read_sweep_file(sweep_dir) -> dict | None:
    path = Path(sweep_dir) / SWEEP_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _from_env(sweep_dir: str) -> dict | None:
    """$NNBENCH_SWEEP when it belongs to this sweep (not one that ran earlier)."""
    text = os.environ.get(SWEEP_ENV)
    info = json.loads(text) if text else None
    return info if info and info.get("sweep_dir") == sweep_dir else None


def _from_store(sweep_dir: str, uri: str, experiment: str) -> dict | None:
    """The running parent run tagged with this sweep directory, looked up in the store."""
    client = store.client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        f"tags.`{ROLE_TAG}` = 'sweep' AND tags.`{SWEEP_TAG}` = '{sweep_dir}' "
        "AND attributes.status = 'RUNNING'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    if not runs:
        return None
    run_id = runs[0].info.run_id
    return {
        "uri": uri,
        "experiment_id": found.experiment_id,
        "parent_run_id": run_id,
        "sweep_id": run_id,
        "sweep_dir": sweep_dir,
        "host": None,
    }


def find_parent(sweep_dir: str, configured_uri: str | None, experiment: str) -> dict:
    """What a multirun job needs to record itself under the sweep's parent run: from
    $NNBENCH_SWEEP, else ``<sweep dir>/nnbench_sweep.json``, else the store (only one named
    by ``tracking.uri`` or $MLFLOW_TRACKING_URI: a default store under some other working
    directory would be a new, empty one)."""
    info = _from_env(sweep_dir) or read_sweep_file(sweep_dir)
    uri = configured_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if info is None and uri:
        info = _from_store(sweep_dir, uri, experiment)
    if info is None:
        raise TrackingUnavailableError(
            f"this job cannot find its sweep's parent run (no ${SWEEP_ENV}, no "
            f"{Path(sweep_dir) / SWEEP_FILE} here, no running sweep in the store); jobs on "
            "other machines need a tracking server: tracking.uri=http://<server>:5000"
        )
    host = socket.gethostname()
    if info.get("host") and info["host"] != host and not store.is_server(info["uri"]):
        raise TrackingUnavailableError(
            f"the sweep records into {info['uri']} on host {info['host']}, but this job runs "
            f"on {host}: a SQLite store is for one machine; run an MLflow tracking server and "
            "set tracking.uri=http://<server>:5000"
        )
    return info


def swept_keys(config: DictConfig) -> list[str]:
    """The keys the sweep varies, in the order given: the sweep config's
    ``hydra.sweeper.params``, then the command line's sweep overrides
    (``optimizer.lr=0.01,0.1``, ``range(...)``, ``choice(...)``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.to_container(config.hydra.sweeper.get("params") or {})
    keys = [str(key) for key in params or {}]
    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    for override in parsed:
        if override.is_sweep_override() and override.key_or_group not in keys:
            keys.append(override.key_or_group)
    return keys


def view_params(config: DictConfig, swept: list[str]) -> list[str]:
    """The params that show the swept keys: a config group by its ``name``
    (``optimizer`` -> ``optimizer.name``), a log-scale quantity with its log10 beside it."""
    params = []
    for key in swept:
        node = OmegaConf.select(config, key, default=None)
        params.append(f"{key}.name" if isinstance(node, DictConfig) else key)
        if key in LOG_SCALE_KEYS:
            params.append(key + LOG10_SUFFIX)
    return params


def sweep_metric(config: DictConfig) -> str:
    """What the sweep's jobs are compared by: the validation loss, a benchmark's step time."""
    return BENCH_METRIC if config.get("bench") is not None else TRAINING_METRIC


class SweepCallback(Callback):
    """on_multirun_start: store, experiment, parent run; on_multirun_end: `summarize`, FINISHED.

    If the launching process stops before the end (Ctrl-C, SIGTERM, a failed job), the
    parent run is ended KILLED or FAILED at exit, never left RUNNING.
    """

    def __init__(self) -> None:
        self.client = None
        self.parent_run_id = None
        self._previous_sigterm = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        """The sweep's folder and parent run; a folder or a store that cannot be used raises
        here (`nnbench.sweep_callback` makes that one line and stops the sweep)."""
        self._start(config)

    def _start(self, config: DictConfig) -> None:
        if config.tracking.name != "mlflow":
            return

        # SIGTERM anywhere in the launcher (between jobs, while a job sets up) ends like
        # Ctrl-C, so that the atexit hook below runs; the default action would skip it.
        self._previous_sigterm = sigterm_raises()

        # The sweep's folder first: one that cannot be made stops the sweep before its
        # parent run exists (Hydra would only find out after it).
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        uri = resolve_uri(config.tracking.uri)
        choices = OmegaConf.to_container(config.hydra.runtime.choices)
        name = experiment_name(config.tracking.experiment, choices)
        if not store.is_server(uri):
            store.check_store(uri)  # can be written: before the parent run exists
        self.client = store.client(uri)
        experiment_id = store.experiment_id(self.client, name, uri)
        label = choices.get("sweep") or choices.get("experiment") or "multirun"
        run_name = f"{label} {time.strftime('%Y-%m-%d %H:%M:%S')}"
        run = self.client.create_run(
            experiment_id,
            run_name=run_name,
            tags={ROLE_TAG: "sweep", SWEEP_TAG: str(config.hydra.sweep.dir)},
        )
        self.parent_run_id = run.info.run_id
        atexit.register(self._end_if_open, "KILLED")
        swept = swept_keys(config)
        try:  # a convenience of the UI: never what stops a sweep
            views.save_sweep_view(
                self.client,
                experiment_id,
                self.parent_run_id,
                f"sweep {run_name}",
                view_params(config, swept),
                sweep_metric(config),
            )
        except Exception as exc:
            log.warning("no saved view for the sweep in the MLflow UI: %s", exc)
        info = {
            "uri": uri,
            "experiment_id": experiment_id,
            "parent_run_id": self.parent_run_id,
            "sweep_id": self.parent_run_id,
            "sweep_dir": str(config.hydra.sweep.dir),
            "host": socket.gethostname(),
            "swept": swept,
        }
        try:
            (sweep_dir / SWEEP_FILE).write_text(json.dumps(info))
        except OSError as exc:  # a full disk: the parent run says so
            self.client.set_tag(self.parent_run_id, ERROR_TAG, f"{type(exc).__name__}: {exc}")
            self._end_if_open("FAILED")
            raise
        os.environ[SWEEP_ENV] = json.dumps(info)  # inherited by the jobs' processes

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        os.environ.pop(SWEEP_ENV, None)
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        if self.parent_run_id is None:
            return
        parent_run_id = self.parent_run_id
        try:
            self._say_skipped()
            comparison = self.summarize(Path(str(config.hydra.sweep.dir)))
            self.client.set_tag(parent_run_id, OUTCOME_TAG, "completed")
            self._end_if_open("FINISHED")
        except BaseException:
            self._end_if_open("FAILED")
            raise
        closing = self.closing(config, parent_run_id, comparison)
        if closing:
            print(closing, flush=True)

    def closing(self, config: DictConfig, parent_run_id: str, comparison) -> str | None:
        """The lines the multirun ends with; none here (`nnbench.sweep_callback` prints the
        outcome counts, the best run, where it is recorded and the commands that show it)."""
        return None

    def summarize(self, sweep_dir: Path):
        """What the parent run gets once the last job is done, before it ends FINISHED, and
        the comparison it logged: nothing here. The callback the config names,
        `nnbench.sweep_callback.SweepCallback`, logs the comparison of the children
        (`nnbench.report`, which reads what tracking wrote)."""

    def _say_skipped(self) -> None:
        """One line naming the jobs skipped as already done (whatever the launcher did with
        their own output: submitit and Ray keep it in log files)."""
        from nnbench.tracking.resume import reused_runs

        skipped = reused_runs(self.client.get_run(self.parent_run_id).data.tags)
        if skipped:
            jobs = ", ".join(f"job {num} (run {run_id})" for num, run_id in skipped.items())
            print(
                f"nnbench: skipped {len(skipped)} job(s) already done, their earlier runs "
                f"are in this sweep's summary: {jobs}; tracking.resume=false reruns them",
                flush=True,
            )

    def _end_if_open(self, status: str) -> None:
        if self.parent_run_id is None:
            return
        run_id, self.parent_run_id = self.parent_run_id, None
        try:
            if status != "FINISHED":
                self._kill_open_children(run_id)
                outcome = "interrupted" if status == "KILLED" else "failed"
                self.client.set_tag(run_id, OUTCOME_TAG, outcome)
            self.client.set_terminated(run_id, status=status)
        except Exception as exc:  # at exit, report rather than raise
            log.warning("could not end the sweep's parent run %s: %s", run_id, exc)

    def _kill_open_children(self, run_id: str) -> None:
        """End KILLED the child runs still RUNNING: a job whose process was killed with the
        sweep (joblib's workers are killed, not signalled) cannot end its own run."""
        experiment_id = self.client.get_run(run_id).info.experiment_id
        running = self.client.search_runs(
            [experiment_id],
            filter_string=(
                f"tags.`mlflow.parentRunId` = '{run_id}' AND attributes.status = 'RUNNING'"
            ),
        )
        for child in running:
            self.client.set_tag(child.info.run_id, OUTCOME_TAG, "interrupted")
            self.client.set_terminated(child.info.run_id, status="KILLED")
