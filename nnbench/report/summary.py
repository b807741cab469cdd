"""The files of a report (table as CSV and Markdown, the two plots) and the summary a sweep's
parent run gets when its last job is done."""

from __future__ import annotations

import math
import re
from pathlib import Path

from nnbench.report import note, plots, runs, table
from nnbench.report.runs import Comparison

SUMMARY_ARTIFACTS = "summary"


def slug(text: str) -> str:
    """``val/loss`` -> ``val_loss``: a name safe in a file name."""
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "report"


def write_report(comparison: Comparison, folder: Path, curve_key: str) -> list[Path]:
    """runs.csv, runs.md, <curve_key>_curves.png (unless no run has a curve, as in a
    benchmark sweep) and final_<metric>.png in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    c = comparison
    metrics = table.metric_columns(c.rows, c.metric)
    heading = f"# {c.title}\n\nSorted by final `{c.metric}` ({c.order_text()}).\n\n"
    (folder / "runs.md").write_text(heading + table.markdown(c.rows, c.params, metrics))
    written = [folder / "runs.md", table.write_csv(c.rows, c.params, folder / "runs.csv")]
    if any(row.curve for row in c.rows):
        path = folder / f"{slug(curve_key)}_curves.png"
        written.append(plots.curves(c.rows, c.params, curve_key, path, c.title))
    final = plots.metric_vs_params(
        c.rows, c.params, c.metric, folder / f"final_{slug(c.metric)}.png", c.title
    )
    return written + ([final] if final else [])


def summary_values(comparison: Comparison) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, tags) for the parent run: run counts per outcome, the best run and value."""
    counts = runs.outcome_counts(comparison.rows)
    metrics = {f"runs/{outcome}": float(n) for outcome, n in counts.items()}
    metrics["runs/total"] = float(len(comparison.rows))
    tags = {"nnbench.summary.metric": comparison.metric}
    best = comparison.best
    if best is not None:
        value = best.metrics[comparison.metric]
        metrics[f"best/{slug(comparison.metric)}"] = value
        tags["nnbench.best_run_id"] = best.run_id
        tags["nnbench.best_run_name"] = best.name
        for key in comparison.params:
            tags[f"nnbench.best.{key}"] = best.params.get(key, "")
    return metrics, tags


def log_summary(client, run_id: str, comparison: Comparison, step: int = 0) -> None:
    """The summary metrics and tags in one call."""
    import time

    from mlflow.entities import Metric, RunTag

    metrics, tags = summary_values(comparison)
    stamp = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, stamp, step) for k, v in metrics.items() if math.isfinite(v)],
        tags=[RunTag(k, v[:5000]) for k, v in tags.items()],
    )


def log_sweep_summary(client, parent_run_id, sweep_dir, metric: str | None = None):
    """Attach the comparison of the sweep's children to its parent run: the table and plots
    written under ``<sweep_dir>/summary/`` and logged as artifacts under ``summary``,
    summary metrics and tags (best value and run, runs per outcome), and its description
    (`note.sweep_note`) on the parent. The children are ranked by ``metric``, by default
    `runs.default_metric`'s choice. Returns the comparison (None for a sweep without
    children)."""
    parent = client.get_run(parent_run_id)
    rows = runs.children(client, parent)
    if not rows:
        return None
    metric = metric or runs.default_metric(rows)
    title = f"sweep {parent.info.run_name or parent_run_id}"
    comparison = Comparison.build(rows, metric, title)
    curve_key = runs.curve_metric(rows)
    runs.load_curves(client, comparison.rows, curve_key)
    folder = Path(sweep_dir) / SUMMARY_ARTIFACTS
    written = write_report(comparison, folder, curve_key)
    client.log_artifacts(parent_run_id, str(folder), artifact_path=SUMMARY_ARTIFACTS)
    log_summary(client, parent_run_id, comparison)
    files = [path.name for path in written]
    text = note.sweep_note(
        comparison, parent.info.experiment_id, parent_run_id, SUMMARY_ARTIFACTS, files
    )
    client.set_tag(parent_run_id, note.NOTE_TAG, text)
    return comparison
