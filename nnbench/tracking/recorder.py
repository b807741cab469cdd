"""What a run's recorder does, whichever records it: `Recorder`, the protocol that the
training flow calls, and `NullRecorder`, the recorder of ``tracking=none``.

The other recorders are `nnbench.tracking.run.RunRecorder` (MLflow in this process: the
tracking agent's, and the benchmark jobs'), `nnbench.tracking.agent_client.AgentRecorder` (a
training run's, whose calls become commands to the tracking agent) and
`nnbench.tracking.batch.MemberRecorder` (a stacked sweep member's, its commands batched with
the other members' on one connection). The order of calls is the record's: the run exists
once ``run_id`` answers; `log_epoch` / `log_metrics` queue metrics and `flush` sends them;
`set_tags`; `draw_artifacts` then `log_artifacts` with one folder; `end` last, once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class Recorder(Protocol):
    run_id: str | None  # None only for a recorder that records nothing

    def log_epoch(self, record: dict) -> None:
        """`fit`'s per-epoch record as metrics at step = epoch."""

    def log_metrics(self, metrics: dict, step: int) -> None:
        """Queue the finite ``metrics`` at ``step``; a non-finite value is never logged."""

    def flush(self) -> None:
        """Send the queued metrics."""

    def set_tags(self, tags: dict) -> None:
        """Set tags on the run (values as strings, cut to MLflow's 8000 characters)."""

    def draw_artifacts(self, folder: Path, *, history: list, title: str, trainer: dict) -> None:
        """Draw the learning curves and write the environment manifest into ``folder``."""

    def log_artifacts(self, folder: Path, *, title: str) -> None:
        """Complete ``folder``, log it as the run's artifacts, and delete it."""

    def end(self, status: str) -> None:
        """End the run with an MLflow status (FINISHED, FAILED, KILLED)."""


class NullRecorder:
    """The recorder of ``tracking=none``: accepts everything, records nothing."""

    run_id = None

    def log_epoch(self, record: dict) -> None:
        pass

    def log_metrics(self, metrics: dict, step: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def set_tags(self, tags: dict) -> None:
        pass

    def draw_artifacts(self, folder: Path, *, history: list, title: str, trainer: dict) -> None:
        pass

    def log_artifacts(self, folder: Path, *, title: str) -> None:
        pass

    def end(self, status: str) -> None:
        pass
