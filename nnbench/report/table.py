"""The comparison table of ranked runs: aligned text for the terminal, Markdown, and CSV.

Columns: rank, the swept params, outcome, epochs (``-`` for a run with no epoch metrics, as
a benchmark run has none), then the key final metrics. A run whose numbers do not compare
(diverged, failed, still running) shows why instead of numbers.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from nnbench.report.runs import RunRow, available_metrics

KEY_METRICS = (
    "val/loss",
    "val/acc",
    "test/mse",
    "test/acc",
    # benchmark runs (nnbench.bench.job)
    "bench/step_ms_median",
    "bench/samples_per_s",
    "bench/gflops",
    "bench/step_over_floor",
    "bench/peak_host_mb",
)
MAX_PARAM_COLUMNS = 6  # wider sweeps name the rest under the table
GAP = "  "


def metric_columns(rows: list[RunRow], metric: str) -> list[str]:
    """The key final metrics present in the rows, with the sort metric first if not one."""
    present = available_metrics(rows)
    columns = [m for m in KEY_METRICS if m in present]
    return columns if metric in columns else [metric, *columns]


def number(value: float | None) -> str:
    """4 decimals in the usual range, scientific notation outside it."""
    if value is None or not math.isfinite(value):
        return "-"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4f}"
    return f"{value:.3e}"


def _cells(row: RunRow, params: list[str], metrics: list[str]) -> tuple[list[str], str | None]:
    """The fixed cells of a row, and either its metric cells or the note replacing them."""
    fixed = [str(row.rank) if row.rank is not None else "-"]
    fixed += [row.params.get(key, "") for key in params]
    fixed += [row.outcome, "-" if row.epochs is None else str(row.epochs)]
    note = row.note()
    values = [] if note else [number(row.metrics.get(m)) for m in metrics]
    return fixed + values, note


def header(params: list[str], metrics: list[str]) -> list[str]:
    return ["rank", *params, "outcome", "epochs", *metrics]


def terminal(rows: list[RunRow], params: list[str], metrics: list[str]) -> str:
    """Aligned columns: text left, numbers right; a note runs across the metric columns."""
    shown = params[:MAX_PARAM_COLUMNS]
    titles = header(shown, metrics)
    lines = [_cells(row, shown, metrics) for row in rows]
    widths = [len(t) for t in titles]
    for cells, _ in lines:
        for i, cell in enumerate(cells):
            widths[i] = max(widths[i], len(cell))
    right = {0, len(shown) + 2} | set(range(len(shown) + 3, len(titles)))

    def fmt(cells):
        return GAP.join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        )

    out = [fmt(titles).rstrip(), GAP.join("-" * w for w in widths)]
    for cells, note in lines:
        text = fmt(cells)
        out.append((text + GAP + note if note else text).rstrip())
    if len(params) > len(shown):
        out.append(f"(also differing: {', '.join(params[len(shown) :])})")
    return "\n".join(out)


def markdown(rows: list[RunRow], params: list[str], metrics: list[str]) -> str:
    """A pipe table; a note takes the first metric cell."""
    titles = header(params, metrics)
    out = ["| " + " | ".join(titles) + " |", "|" + "|".join("---" for _ in titles) + "|"]
    for row in rows:
        cells, note = _cells(row, params, metrics)
        if note:
            cells += [note] + [""] * (len(metrics) - 1)
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out) + "\n"


def write_csv(rows: list[RunRow], params: list[str], path: Path) -> Path:
    """One line per run, ranked: ids, outcome, the swept params and every final metric.
    A metric a run did not record is an empty cell, never a number; a diverged run has
    the last finite values it recorded (those before training, if it diverged at once)."""
    metrics = available_metrics(rows)
    fields = ["rank", "run_id", "run_name", "outcome", "epochs", "diverged_at", "error"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*fields, *params, *metrics])
        for row in rows:
            writer.writerow(
                [
                    row.rank if row.rank is not None else "",
                    row.run_id,
                    row.name,
                    row.outcome,
                    "" if row.epochs is None else row.epochs,
                    row.diverged_at or "",
                    row.error or "",
                    *(row.params.get(key, "") for key in params),
                    *(repr(row.metrics[m]) if m in row.metrics else "" for m in metrics),
                ]
            )
    return path
