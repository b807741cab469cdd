"""The multirun's parent run, created by a Hydra callback in the launching process before
any job starts, and closed with the sweep's summary when the last job is done.

The callback writes ``<sweep dir>/nnbench_sweep.json`` (store URI, experiment id, parent run
id); each job reads it and records itself as a child run. Creating the store and the
experiment here, once, is what keeps parallel jobs out of SQLite's migration race.
"""

from __future__ import annotations

import atexit
import json
import logging
import signal
import threading
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from nnbench.tracking import experiment_name, resolve_uri
from nnbench.tracking.run import OUTCOME_TAG

SWEEP_FILE = "nnbench_sweep.json"
log = logging.getLogger(__name__)


def _sigterm_as_interrupt():
    """Make SIGTERM raise KeyboardInterrupt (main thread only); the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, signal.default_int_handler)


def read_sweep_file(sweep_dir) -> dict | None:
    path = Path(sweep_dir) / SWEEP_FILE
    return json.loads(path.read_text()) if path.is_file() else None


class SweepCallback(Callback):
    """on_multirun_start: store, experiment, parent run; on_multirun_end: summary, FINISHED.

    If the launching process stops before the end (Ctrl-C, SIGTERM, a failed job), the
    parent run is ended KILLED or FAILED at exit, never left RUNNING.
    """

    def __init__(self) -> None:
        self.client = None
        self.parent_run_id = None
        self._previous_sigterm = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if config.tracking.name != "mlflow":
            return
        from nnbench.tracking import store

        # SIGTERM anywhere in the launcher (between jobs, while a job sets up) ends like
        # Ctrl-C, so that the atexit hook below runs; the default action would skip it.
        self._previous_sigterm = _sigterm_as_interrupt()

        uri = resolve_uri(config.tracking.uri)
        choices = OmegaConf.to_container(config.hydra.runtime.choices)
        name = experiment_name(config.tracking.experiment, choices)
        self.client = store.client(uri)
        experiment_id = store.experiment_id(self.client, name, uri)
        label = choices.get("sweep") or choices.get("experiment") or "multirun"
        run = self.client.create_run(
            experiment_id,
            run_name=f"{label} {time.strftime('%Y-%m-%d %H:%M:%S')}",
            tags={"nnbench.role": "sweep", "nnbench.sweep": str(config.hydra.sweep.dir)},
        )
        self.parent_run_id = run.info.run_id
        atexit.register(self._end_if_open, "KILLED")
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        info = {
            "uri": uri,
            "experiment_id": experiment_id,
            "parent_run_id": self.parent_run_id,
            "sweep_id": self.parent_run_id,
        }
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(info))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        if self.parent_run_id is None:
            return
        try:
            from nnbench.report import log_sweep_summary

            log_sweep_summary(self.client, self.parent_run_id, Path(str(config.hydra.sweep.dir)))
            self.client.set_tag(self.parent_run_id, OUTCOME_TAG, "completed")
            self._end_if_open("FINISHED")
        except BaseException:
            self._end_if_open("FAILED")
            raise

    def _end_if_open(self, status: str) -> None:
        if self.parent_run_id is None:
            return
        run_id, self.parent_run_id = self.parent_run_id, None
        try:
            if status != "FINISHED":
                self.client.set_tag(run_id, OUTCOME_TAG, "interrupted")
            self.client.set_terminated(run_id, status=status)
        except Exception as exc:  # at exit, report rather than raise
            log.warning("could not end the sweep's parent run %s: %s", run_id, exc)
