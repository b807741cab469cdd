"""A sweep's saved view in the MLflow UI: its children, ranked by the sweep's metric, with
the swept params and the key metrics as columns and its comparison charts ready.

MLflow 3's runs page lists an experiment's saved views (its **Views** menu) from the
experiment tags ``mlflow.sharedViewState.<id>``, each a JSON envelope ``{name, createdAt,
updatedAt, state}`` whose ``state`` is the page's state as a JSON string (the columns,
filter, sort order and chart cards the UI itself saves); the link
``#/experiments/<id>/runs?viewStateShareKey=<id>`` opens one.
"""

from __future__ import annotations

import json
import time

VIEW_TAG_PREFIX = "mlflow.sharedViewState."
SHARE_URL_PARAM = "viewStateShareKey"
SHOWN_METRICS = ("val/loss", "val/acc", "test/acc", "test/mse", "diverged/epoch")
SECTION = "nnbench"


def column(kind: str, key: str) -> str:
    """The UI's name of a column: ``params.`optimizer.lr```."""
    return f"{kind}.`{key}`"


def view_id(parent_run_id: str) -> str:
    return f"nnbench-{parent_run_id}"


def view_link(experiment_id: str, parent_run_id: str) -> str:
    """The UI address (after its ``#``) that opens the sweep's view."""
    return (
        f"/experiments/{experiment_id}/runs?{SHARE_URL_PARAM}={view_id(parent_run_id)}"
        "&compareRunsMode=TABLE"
    )


def sweep_state(parent_run_id: str, params: list[str], metric: str, axis: str | None) -> dict:
    """The page state: the children of the sweep, best ``metric`` first; columns
    ``params``, the key metrics, the outcome; charts: ``metric`` per epoch, and the
    final ``metric`` against ``axis`` (a param) and across every param."""
    metrics = [metric, *(m for m in SHOWN_METRICS if m != metric)]
    columns = [column("params", p) for p in params]
    columns += [column("metrics", m) for m in metrics]
    columns += [column("tags", "nnbench.outcome")]
    return {
        "searchFilter": f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
        "orderByKey": column("metrics", metric),
        "orderByAsc": not metric.endswith("acc"),
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": columns,
        "columnOrder": columns,
        "columnWidths": {},
        "runsHiddenMode": "SHOW_ALL",  # every child in the charts, not the first 10
        "viewMaximized": False,
        "runListHidden": False,
        "hideEmptyCharts": True,
        "useGroupedValuesInCharts": True,
        "groupBy": None,
        "groupsExpanded": {},
        **charts(params, metric, axis),
    }


def charts(params: list[str], metric: str, axis: str | None) -> dict:
    cards = [
        {
            "uuid": "nnbench-curves",
            "type": "LINE",
            "metricSectionId": SECTION,
            "metricKey": metric,
            "selectedMetricKeys": [metric],
            "runsCountToCompare": 200,
            "xAxisKey": "step",
            "scaleType": "log" if "loss" in metric else "linear",
            "lineSmoothness": 0,
            "deleted": False,
            "isGenerated": False,
        }
    ]
    if axis:
        cards.append(
            {
                "uuid": "nnbench-scatter",
                "type": "SCATTER",
                "metricSectionId": SECTION,
                "xaxis": {"key": axis, "type": "PARAM"},
                "yaxis": {"key": metric, "type": "METRIC"},
                "runsCountToCompare": 200,
                "deleted": False,
                "isGenerated": False,
            }
        )
    if params:
        cards.append(
            {
                "uuid": "nnbench-parallel",
                "type": "PARALLEL",
                "metricSectionId": SECTION,
                "selectedParams": params,
                "selectedMetrics": [metric],
                "runsCountToCompare": 200,
                "deleted": False,
                "isGenerated": False,
            }
        )
    section = {
        "uuid": SECTION,
        "name": "sweep",
        "display": True,
        "isReordered": True,
        "deleted": False,
        "isGenerated": False,
    }
    # Reordered: the UI keeps these charts and sections instead of generating its own.
    return {
        "compareRunCharts": cards,
        "compareRunSections": [section],
        "isAccordionReordered": True,
    }


def save_sweep_view(client, experiment_id, parent_run_id, name, params, metric) -> None:
    """Write (or overwrite) the sweep's view as an experiment tag. ``params`` are the
    swept params, each followed by its ``_log10`` param where one is logged; the chart's
    x axis is the first log one, else the first param."""
    logs = [p for p in params if p.endswith("_log10")]
    axis = logs[0] if logs else (params[0] if params else None)
    state = sweep_state(parent_run_id, params, metric, axis)
    now = int(time.time() * 1000)
    envelope = {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    client.set_experiment_tag(
        experiment_id, VIEW_TAG_PREFIX + view_id(parent_run_id), json.dumps(envelope)
    )
