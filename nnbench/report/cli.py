"""``python -m nnbench.report`` / ``nnbench-report``: the runs of a sweep or an experiment,
ranked by a metric, as a table in the terminal and as files (CSV, Markdown, PNG plots).

User mistakes (no store, an unknown experiment, run id or metric) end as one line on stderr
and exit status 2, like ``python -m nnbench``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from nnbench.errors import TrackingUnavailableError, invalid
from nnbench.report import runs
from nnbench.report.runs import Comparison
from nnbench.report.summary import slug, write_report
from nnbench.report.table import metric_columns, terminal

PROG = "nnbench-report"
EXIT_USAGE = 2
REPORTS = Path("outputs") / "reports"
REPORT_ARTIFACTS = "report"
HOW_TO_RECORD = "record runs with `python -m nnbench` (a sweep: `python -m nnbench +sweep=lr`)"


@dataclasses.dataclass
class Selection:
    """The runs to compare and where they came from."""

    rows: list[runs.RunRow]
    name: str  # names the output folder
    title: str
    parent_run_id: str | None = None  # set for a sweep


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Compare the runs of a sweep (default: the most recent one) or of an "
        "experiment: a ranked table, and plots written to --out.",
    )
    p.add_argument(
        "--uri",
        help="tracking store or server (default: $MLFLOW_TRACKING_URI, "
        "else sqlite:///<cwd>/outputs/mlflow.db)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--experiment", metavar="NAME", help="all runs of this experiment")
    which.add_argument("--sweep", metavar="PARENT_RUN_ID", help="the child runs of this sweep")
    p.add_argument(
        "--metric",
        help=f"rank by this final metric (default: {runs.TRAINING_METRIC}, for benchmark runs "
        f"{runs.BENCH_METRIC}; accuracy-like metrics rank highest first)",
    )
    order = p.add_mutually_exclusive_group()
    order.add_argument(
        "--ascending",
        dest="descending",
        action="store_false",
        default=None,
        help="lowest value first",
    )
    order.add_argument(
        "--descending",
        dest="descending",
        action="store_true",
        default=None,
        help="highest value first",
    )
    p.add_argument("--limit", type=_positive, metavar="N", help="show the best N runs only")
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for the table and plots (default: outputs/reports/<name>)",
    )
    p.add_argument(
        "--no-log", action="store_true", help="do not log the plots to the sweep's parent run"
    )
    return p


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def store_uri(given: str | None) -> str:
    """--uri (a bare path to a .db file is read as SQLite), else the default store."""
    from nnbench.tracking.store import resolve_uri

    if given and "://" not in given and (given.endswith(".db") or Path(given).is_file()):
        return f"sqlite:///{Path(given).resolve()}"
    return resolve_uri(given)


def open_store(uri: str):
    """A client for ``uri``; a SQLite store that does not exist is an error, not created."""
    from nnbench.tracking import store

    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise TrackingUnavailableError(f"no MLflow store at {path}: {HOW_TO_RECORD}")
    try:
        return store.client(uri)
    except TrackingUnavailableError as exc:  # its advice is for `python -m nnbench`
        reason = str(exc).split("; ")[0]
        raise TrackingUnavailableError(f"{reason}: start it, or pass another --uri") from None
    except Exception as exc:  # not a store, or one MLflow cannot read
        raise TrackingUnavailableError(f"cannot read the store {uri}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _experiments(client) -> dict[str, str]:
    """{experiment id: name} of the active experiments."""
    return {e.experiment_id: e.name for e in client.search_experiments()}


def _get_run(client, run_id: str, uri: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        raise invalid("run id", run_id, f"no such run in {uri}") from exc


def sweep_selection(client, parent, experiments: dict[str, str]) -> Selection:
    rows = runs.children(client, parent)
    if not rows:
        raise invalid("sweep", parent.info.run_id, "that run has no child runs")
    experiment = experiments.get(parent.info.experiment_id, parent.info.experiment_id)
    name = parent.info.run_name or parent.info.run_id
    return Selection(
        rows,
        name=f"{experiment}-{parent.info.run_id[:8]}",
        title=f"sweep {name} (experiment {experiment})",
        parent_run_id=parent.info.run_id,
    )


def select(client, args, uri: str) -> Selection:
    """--sweep, --experiment, else the most recent sweep, else the most recent experiment."""
    experiments = _experiments(client)
    if args.sweep:
        return sweep_selection(client, _get_run(client, args.sweep, uri), experiments)
    if args.experiment:
        found = [i for i, name in experiments.items() if name == args.experiment]
        if not found:
            available = ", ".join(sorted(experiments.values())) or "none"
            raise invalid("experiment", args.experiment, f"available: {available}")
        rows = runs.experiment_runs(client, found[0])
        if not rows:
            raise TrackingUnavailableError(f"experiment {args.experiment!r} has no runs yet")
        return Selection(rows, name=args.experiment, title=f"experiment {args.experiment}")
    ids = list(experiments)
    if ids:
        sweeps = client.search_runs(
            ids,
            f"tags.`{runs.ROLE_TAG}` = 'sweep'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        if sweeps:
            return sweep_selection(client, sweeps[0], experiments)
        latest = client.search_runs(ids, max_results=1, order_by=["attributes.start_time DESC"])
        if latest:
            name = experiments[latest[0].info.experiment_id]
            rows = runs.experiment_runs(client, latest[0].info.experiment_id)
            return Selection(rows, name=name, title=f"experiment {name}")
    raise TrackingUnavailableError(f"no runs in {uri}: {HOW_TO_RECORD}")


def check_metric(rows: list[runs.RunRow], metric: str) -> None:
    available = runs.available_metrics(rows)
    if available and metric not in available:
        raise invalid("metric", metric, f"available: {', '.join(available)}")


def report(args) -> None:
    uri = store_uri(args.uri)
    client = open_store(uri)
    chosen = select(client, args, uri)
    metric = args.metric or runs.default_metric(chosen.rows)
    check_metric(chosen.rows, metric)
    comparison = Comparison.build(chosen.rows, metric, chosen.title, args.descending)
    shown = dataclasses.replace(comparison, rows=comparison.rows[: args.limit])
    curve_key = runs.curve_metric(shown.rows)
    runs.load_curves(client, shown.rows, curve_key)
    counts = ", ".join(f"{n} {outcome}" for outcome, n in runs.outcome_counts(chosen.rows).items())
    print(f"{chosen.title}: {len(chosen.rows)} runs ({counts})")
    print(f"sorted by final {metric}, {comparison.order_text()}; unfinished runs last\n")
    print(terminal(shown.rows, shown.params, metric_columns(shown.rows, metric)))
    out = args.out or REPORTS / slug(chosen.name)
    written = write_report(shown, out, curve_key)
    print(f"\nwritten to {out}: {', '.join(p.name for p in written)}")
    if chosen.parent_run_id and not args.no_log:
        _log_to_parent(client, chosen.parent_run_id, out)


def _log_to_parent(client, run_id: str, folder: Path) -> None:
    try:
        client.log_artifacts(run_id, str(folder), artifact_path=REPORT_ARTIFACTS)
    except Exception as exc:  # the table is out already: say so, do not fail
        print(f"{PROG}: warning: not logged to run {run_id}: {_first_line(exc)}", file=sys.stderr)
    else:
        print(f"logged to the sweep's parent run {run_id} under {REPORT_ARTIFACTS}/")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``nnbench-report`` and ``python -m nnbench.report``."""
    args = parser().parse_args(argv)
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow.exceptions import MlflowException

    try:
        report(args)
    except (ValueError, TrackingUnavailableError, MlflowException) as exc:
        print(f"{PROG}: error: {_first_line(exc)}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USAGE) from None
