"""One MLflow run's life: params and tags at the start, per-epoch metrics in batches, and
an end state that always says how it ended. No run is left RUNNING: `recording` ends it
FINISHED, FAILED (an exception, with its message) or KILLED (Ctrl-C or SIGTERM, with the
epochs logged so far kept)."""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from pathlib import Path

OUTCOME_TAG = "nnbench.outcome"
ERROR_TAG = "nnbench.error"
# What a sweep's jobs are compared by: a training run's validation loss, a benchmark's step.
TRAINING_METRIC, BENCH_METRIC = "val/loss", "bench/step_ms_median"
FLUSH_INTERVAL_S = 2.0  # at most one metrics call per interval while training


class RunRecorder:
    """Buffers metrics and sends them with one ``log_batch`` call at a time."""

    def __init__(self, client, run_id: str, flush_interval: float = FLUSH_INTERVAL_S):
        self.client = client
        self.run_id = run_id
        self.flush_interval = flush_interval
        self._pending: list = []
        self._last_flush = time.monotonic()

    @classmethod
    def start(cls, client, experiment_id, run_name, params, tags, parent_run_id=None):
        from mlflow.entities import Param

        tags = dict(tags)
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        recorder = cls(client, run.info.run_id)
        items = [Param(k, v) for k, v in params.items()]
        with ended_on_error(recorder):  # a run never stays RUNNING
            for start in range(0, len(items), 100):  # MLflow takes 100 params per call
                client.log_batch(recorder.run_id, params=items[start : start + 100])
        return recorder

    def log_metrics(self, metrics: dict, step: int) -> None:
        """Queue finite metrics for ``step``; a non-finite value is never logged as a number."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.queue([Metric(k, v, stamp, step) for k, v in finite(metrics).items()])
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def queue(self, metrics: list) -> None:
        """Queue MLflow ``Metric`` entities for the next `flush`."""
        self._pending.extend(metrics)

    def log_epoch(self, record: dict) -> None:
        """`fit`'s per-epoch record as metrics at step = epoch."""
        self.log_metrics({k: v for k, v in record.items() if k != "epoch"}, record["epoch"])

    def flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            self.client.log_batch(self.run_id, metrics=batch)
        self._last_flush = time.monotonic()

    def set_tags(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)[:8000]) for k, v in tags.items()]
        if items:
            self.client.log_batch(self.run_id, tags=items)

    def draw_artifacts(self, folder, *, history: list, title: str, trainer: dict, manifest=None):
        """Add the curves and the environment manifest to ``folder`` (`draw_artifacts`)."""
        from nnbench.tracking.artifacts import draw_artifacts

        try:
            draw_artifacts(
                Path(folder), history=history, title=title, trainer=trainer, manifest=manifest
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def log_artifacts(self, folder, *, title: str) -> None:
        """Complete ``folder`` (`finish_artifacts`), log it, and delete it."""
        from nnbench.tracking.artifacts import finish_artifacts

        try:
            finish_artifacts(Path(folder), title=title)
            self.client.log_artifacts(self.run_id, str(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


@contextlib.contextmanager
def ended_on_error(recorder: RunRecorder):
    """End the run KILLED (Ctrl-C, SIGTERM) or FAILED (with the message) if the block
    raises; the exception still propagates. Nothing happens when the block succeeds."""
    try:
        yield recorder
    except KeyboardInterrupt:
        close(recorder, "KILLED", {OUTCOME_TAG: "interrupted"})
        raise
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        close(recorder, "FAILED", {OUTCOME_TAG: "failed", ERROR_TAG: message})
        raise


@contextlib.contextmanager
def recording(recorder: RunRecorder):
    """End the run whatever happens inside; exceptions and interrupts still propagate."""
    with ended_on_error(recorder):
        yield recorder
    recorder.flush()
    recorder.end("FINISHED")


def finite(metrics: dict) -> dict[str, float]:
    """The finite numbers of ``metrics`` as floats: NaN and infinities are not results."""
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and math.isfinite(value)
    }


def close(recorder, status: str, tags: dict) -> None:
    """Best effort: keep what was logged, mark how it ended."""
    try:
        recorder.flush()
    finally:
        try:
            recorder.set_tags(tags)
        finally:
            recorder.end(status)
