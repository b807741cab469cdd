"""The runs a report compares, read back from MLflow as plain rows, and how they rank.

A row holds what the record of a run (docs/design.md, "MLflow record of a run") says: its
params, its final metrics, its outcome. Only completed runs are ranked by the metric;
interrupted, diverged, failed and still-running runs always come after them, whatever
numbers they carry (a benchmark of a framework that cannot run here is a failed run,
its reason the error: nnbench.bench.job).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from nnbench.tracking.params import LOG10_SUFFIX
from nnbench.tracking.resume import reused_runs
from nnbench.tracking.run import BENCH_METRIC, ERROR_TAG, OUTCOME_TAG, TRAINING_METRIC

ROLE_TAG = "nnbench.role"
PARENT_TAG = "mlflow.parentRunId"
DIVERGED_TAG = "nnbench.diverged_at"
OVERRIDES_TAG = "nnbench.overrides"
EPOCHS_PARAM = "trainer.epochs"  # a run with it trains by epochs
# A run whose outcome tag is missing (recorded by something else) is judged by its status.
STATUS_OUTCOME = {
    "FINISHED": "completed",
    "FAILED": "failed",
    "KILLED": "interrupted",
    "RUNNING": "running",
    "SCHEDULED": "running",
}
# Where unranked runs go, in this order, after every ranked one.
UNRANKED_ORDER = ("completed", "interrupted", "running", "failed", "diverged")
# Metrics where more is better (names matched on their last part): the rest are minimized.
HIGHER_IS_BETTER = re.compile(r"acc|auc|f1|precision|recall|r2|throughput|samples_per_s|gflops")
# What a report ranks by when not told: training runs by val/loss, benchmarks by step time.
PAGE = 1000


@dataclass
class RunRow:
    """One run as a report sees it."""

    run_id: str
    name: str
    outcome: str  # completed | diverged | failed | interrupted | running
    params: dict[str, str]
    metrics: dict[str, float]  # the last value logged of each metric
    start_time: int
    diverged_at: str | None = None  # "epoch 3, step 7"
    error: str | None = None
    overrides: list[str] = field(default_factory=list)
    curve: list[tuple[int, float]] = field(default_factory=list)  # (epoch, value), filled later
    rank: int | None = None  # 1 = best; None for a run that is not ranked

    @classmethod
    def from_mlflow(cls, run) -> RunRow:
        tags, status = run.data.tags, run.info.status
        outcome = tags.get(OUTCOME_TAG) or STATUS_OUTCOME.get(status, status.lower())
        if outcome == "running" and status != "RUNNING":  # ended without its final tag
            outcome = STATUS_OUTCOME.get(status, "interrupted")
        return cls(
            run_id=run.info.run_id,
            name=run.info.run_name or run.info.run_id,
            outcome=outcome,
            params=dict(run.data.params),
            metrics={k: v for k, v in run.data.metrics.items() if math.isfinite(v)},
            start_time=run.info.start_time or 0,
            diverged_at=tags.get(DIVERGED_TAG),
            error=tags.get(ERROR_TAG),
            overrides=tags.get(OVERRIDES_TAG, "").split(),
        )

    @property
    def epochs(self) -> int | None:
        """Epochs completed (and logged): the last step of the curve, 0 for a training run
        that ended in its first epoch; None for a run with no epoch metrics, one that does
        not train by epochs (a benchmark run: no ``trainer.epochs`` param)."""
        if self.curve:
            return max(step for step, _ in self.curve)
        return 0 if EPOCHS_PARAM in self.params else None

    @property
    def diverged_epoch(self) -> int | None:
        found = re.search(r"epoch (\d+)", self.diverged_at or "")
        return int(found.group(1)) if found else None

    def note(self) -> str | None:
        """What is shown instead of numbers for a run whose numbers do not compare."""
        if self.outcome == "diverged":
            epoch = self.diverged_epoch
            return f"diverged at epoch {epoch}" if epoch is not None else "diverged"
        if self.outcome == "failed":
            first = (self.error or "").strip().splitlines()
            return f"failed: {first[0][:70]}" if first else "failed"
        if self.outcome == "running":
            return "still running"
        return None


def search_all(client, experiment_ids: list[str], filter_string: str = "") -> list:
    """Every active run matching ``filter_string``, newest first, across result pages."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            experiment_ids,
            filter_string,
            max_results=PAGE,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def children(client, parent_run) -> list[RunRow]:
    """The child runs of a sweep's parent run, and the earlier runs that stand in for the
    jobs a resumed sweep skipped (nnbench.tracking.resume); a deleted one is left out."""
    from mlflow.exceptions import MlflowException

    found = search_all(
        client,
        [parent_run.info.experiment_id],
        f"tags.{PARENT_TAG} = '{parent_run.info.run_id}'",
    )
    seen = {run.info.run_id for run in found}
    for run_id in reused_runs(parent_run.data.tags).values():
        if run_id in seen:
            continue
        try:
            run = client.get_run(run_id)
        except MlflowException:
            continue
        if run.info.lifecycle_stage == "active":
            found.append(run)
            seen.add(run_id)
    return [RunRow.from_mlflow(run) for run in found]


def experiment_runs(client, experiment_id: str) -> list[RunRow]:
    """The runs of an experiment, sweep parent runs left out (their children are in)."""
    found = search_all(client, [experiment_id])
    return [RunRow.from_mlflow(r) for r in found if r.data.tags.get(ROLE_TAG) != "sweep"]


def higher_is_better(metric: str) -> bool:
    """Accuracy-like metrics are maximized; losses, errors and times minimized."""
    return bool(HIGHER_IS_BETTER.search(metric.rsplit("/", 1)[-1].lower()))


def rank(rows: list[RunRow], metric: str, descending: bool) -> list[RunRow]:
    """Rows sorted best first by ``metric``; completed runs with the metric get ranks 1..n,
    every other run follows, in UNRANKED_ORDER, newest first within an outcome."""

    def key(row: RunRow):
        value = row.metrics.get(metric)
        if row.outcome == "completed" and value is not None:
            return (0, -value if descending else value, -row.start_time)
        position = UNRANKED_ORDER.index(row.outcome) if row.outcome in UNRANKED_ORDER else 2
        return (1 + position, 0.0, -row.start_time)

    ordered = sorted(rows, key=key)
    place = 0
    for row in ordered:
        ranked = row.outcome == "completed" and metric in row.metrics
        place += ranked
        row.rank = place if ranked else None
    return ordered


def swept_params(rows: list[RunRow]) -> list[str]:
    """The params whose values differ among the rows: overridden keys first, in the order
    they were given on the command line, then the rest alphabetically. The logarithms
    logged beside a param (``optimizer.lr_log10``) are not params of their own."""
    keys = sorted({key for row in rows for key in row.params if not key.endswith(LOG10_SUFFIX)})
    differing = [k for k in keys if len({row.params.get(k) for row in rows}) > 1]
    given = []
    for row in rows:
        for override in row.overrides:
            name = override.split("=", 1)[0].lstrip("+~")
            if name not in given:
                given.append(name)

    def order(key: str):
        for index, name in enumerate(given):
            if key == name or key.startswith(name + "."):
                return (index, key)
        return (len(given), key)

    return sorted(differing, key=order)


def load_curves(client, rows: list[RunRow], metric: str) -> None:
    """Fill each row's ``curve`` with ``metric`` per epoch (one request per run)."""
    for row in rows:
        history = client.get_metric_history(row.run_id, metric)
        by_step = {m.step: m.value for m in history if math.isfinite(m.value)}
        row.curve = sorted(by_step.items())


def default_metric(rows: list[RunRow]) -> str:
    """``val/loss``; ``bench/step_ms_median`` for benchmark runs (none has val/loss)."""
    present = available_metrics(rows)
    if TRAINING_METRIC not in present and BENCH_METRIC in present:
        return BENCH_METRIC
    return TRAINING_METRIC


def curve_metric(rows: list[RunRow]) -> str:
    """``val/loss`` when the runs were validated, else ``train/loss``."""
    return "val/loss" if any("val/loss" in row.metrics for row in rows) else "train/loss"


def outcome_counts(rows: list[RunRow]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.outcome] = counts.get(row.outcome, 0) + 1
    return counts


def available_metrics(rows: list[RunRow]) -> list[str]:
    return sorted({key for row in rows for key in row.metrics})


@dataclass
class Comparison:
    """Ranked runs and what they are compared by."""

    rows: list[RunRow]  # ranked, best first
    metric: str
    descending: bool
    params: list[str]  # the swept params
    title: str

    @classmethod
    def build(cls, rows, metric: str, title: str, descending: bool | None = None):
        if descending is None:
            descending = higher_is_better(metric)
        ranked = rank(rows, metric, descending)
        return cls(ranked, metric, descending, swept_params(rows), title)

    @property
    def best(self) -> RunRow | None:
        return self.rows[0] if self.rows and self.rows[0].rank == 1 else None

    def order_text(self) -> str:
        return "highest first" if self.descending else "lowest first"
