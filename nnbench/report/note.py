"""The description of a sweep's parent run (MLflow's run note, the tag
``mlflow.note.content``, rendered as Markdown on the run's page): what a user sees first
of a sweep in the MLflow UI. It holds the best configuration, links to the sweep's saved
view and to the summary plots, the final-metric plot itself, and the ranked table.

Links are relative to the UI's address: ``#/experiments/...`` pages of the UI, and
``get-artifact?...`` for an artifact's file (what the UI itself fetches).
"""

from __future__ import annotations

from urllib.parse import quote

from nnbench.report import runs, table
from nnbench.report.runs import Comparison
from nnbench.tracking import views

NOTE_TAG = "mlflow.note.content"
MAX_NOTE = 7500  # MLflow keeps at most 8000 characters of a tag value
ML_VIEW = "workflowType=machine_learning"  # the UI's "Model training" pages


def run_link(experiment_id: str, run_id: str) -> str:
    return f"#/experiments/{experiment_id}/runs/{run_id}"


def artifact_link(experiment_id: str, run_id: str, path: str) -> str:
    return f"{run_link(experiment_id, run_id)}/artifacts/{path}"


def artifact_file(run_id: str, path: str) -> str:
    return f"get-artifact?path={quote(path, safe='')}&run_uuid={run_id}"


def sweep_note(
    c: Comparison, experiment_id: str, parent_run_id: str, folder: str, files: list[str]
) -> str:
    """The note: ``files`` are the names of the summary's files (runs.md, the PNG plots),
    logged under ``folder`` of the parent run."""
    counts = ", ".join(f"{n} {outcome}" for outcome, n in runs.outcome_counts(c.rows).items())
    view = f"#{views.view_link(experiment_id, parent_run_id)}&{ML_VIEW}"
    lines = [
        f"**{c.title}**: {len(c.rows)} runs ({counts}), ranked by final `{c.metric}` "
        f"({c.order_text()}).",
        "",
        *best_lines(c, experiment_id),
        "",
        f"**Compare them:** [the sweep's view]({view}) lists its runs ranked, with the swept "
        "params and the metrics as columns; its **Chart view** draws every curve, "
        f"`{c.metric}` against each swept value (log10 columns for log grids) and parallel "
        "coordinates.",
        "",
        "**Summary plots:** "
        + " · ".join(
            f"[{name}]({artifact_link(experiment_id, parent_run_id, f'{folder}/{name}')})"
            for name in files
        ),
    ]
    for name in files:
        if name.startswith("final_") and name.endswith(".png"):
            path = artifact_file(parent_run_id, f"{folder}/{name}")
            lines += ["", f"![final {c.metric}]({path})"]
    return _with_table(lines, c, folder)


def best_lines(c: Comparison, experiment_id: str) -> list[str]:
    best = c.best
    if best is None:
        return ["**No run completed with a final value**: see the table for how each ended."]
    values = ", ".join(
        f"{key} {table.number(best.metrics.get(key))}"
        for key in table.metric_columns([best], c.metric)
    )
    swept = " ".join(f"{key}={best.params.get(key, '')}" for key in c.params)
    given = " ".join(o for o in best.overrides if not o.startswith(("+sweep=", "hydra")))
    lines = [f"**Best: [{best.name}]({run_link(experiment_id, best.run_id)})**: {values}"]
    if swept:
        lines += ["", f"Best configuration: `{swept}`"]
    if given:
        lines += ["", f"Its overrides: `{given}`"]
    return lines


def _with_table(lines: list[str], c: Comparison, folder: str) -> str:
    """The lines and the ranked table, as many rows as fit in a note; the rest are in the
    summary's runs.md."""
    metrics = table.metric_columns(c.rows, c.metric)
    head = "\n".join(lines) + "\n\n"
    for shown in range(len(c.rows), 0, -1):
        rest = len(c.rows) - shown
        tail = f"\n({rest} more runs in {folder}/runs.md)\n" if rest else ""
        text = head + table.markdown(c.rows[:shown], c.params, metrics) + tail
        if len(text) <= MAX_NOTE:
            return text
    return head[:MAX_NOTE]
