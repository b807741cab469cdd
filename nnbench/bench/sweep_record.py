"""`benchmarks/sweep_speed.py`'s result as MLflow runs, as `nnbench.bench.comparison` records
compare.py's.

One parent run per benchmark (experiment ``sweep_speed``), named "sweep_speed: N of M targets
met", holds the machine as tags, the sweep floor and the peak GEMM rate as metrics, and the
printed table as an artifact (``sweep_speed/table.txt``). Under it, one child run per grid
and tracking mode::

    sweep_speed/<launcher>_s              median wall time of the whole sweep
    sweep_speed/<launcher>_over_floor     over the sweep's arithmetic floor
    sweep_speed/<top>_<bottom>_ratio      e.g. stacked_basic_ratio, with _min, _max, _target

and one per training-only cell (optimizer, M) with ``sweep_speed/<label>_us`` per member and
its ratios; each ratio with a target has a tag ``nnbench.target.<name>`` = met or missed.
"""

from __future__ import annotations

from nnbench.bench.comparison import metric_name
from nnbench.bench.sweep_report import targets_met

DEFAULT_EXPERIMENT = "sweep_speed"
PREFIX = "sweep_speed/"


def ratio_metrics(ratios: list) -> tuple[dict, dict]:
    """(metrics, tags) of a list of ratios (label, ratio, low, high, target)."""
    metrics, tags = {}, {}
    for r in ratios:
        name = metric_name(r["label"])
        metrics[f"{PREFIX}{name}_ratio"] = r["ratio"]
        metrics[f"{PREFIX}{name}_ratio_min"] = r["low"]
        metrics[f"{PREFIX}{name}_ratio_max"] = r["high"]
        if r.get("target") is not None:
            metrics[f"{PREFIX}{name}_target"] = r["target"]
            tags[f"nnbench.target.{name}"] = "met" if r["ratio"] <= r["target"] else "missed"
    return metrics, tags


def sweep_children(rows: list, ratios: list) -> list[dict]:
    """One child per (grid, tracking): params, metrics, tags and a name."""
    children = {}
    for row in rows:
        key = (row["grid"], row["tracking"])
        child = children.setdefault(key, _child(row, ratios))
        launcher = metric_name(row["launcher"])
        child["metrics"][f"{PREFIX}{launcher}_s"] = row["median_s"]
        if row["over_floor"] is not None:
            child["metrics"][f"{PREFIX}{launcher}_over_floor"] = row["over_floor"]
    return list(children.values())


def _child(row: dict, ratios: list) -> dict:
    mine = [r for r in ratios if (r["grid"], r["tracking"]) == (row["grid"], row["tracking"])]
    metrics, tags = ratio_metrics(mine)
    return {
        "name": f"{row['grid']}, {row['tracking']}",
        "params": {"grid": row["grid"], "jobs": str(row["jobs"]), "tracking": row["tracking"]},
        "metrics": metrics,
        "tags": tags,
    }


def training_children(rows: list, setup: dict) -> list[dict]:
    children = []
    for row in rows:
        metrics, tags = ratio_metrics(row["ratios"])
        metrics.update({f"{PREFIX}{metric_name(k)}_us": v for k, v in row["us"].items()})
        params = {"optimizer": row["optimizer"], "members": str(row["members"])}
        params.update({k: str(v) for k, v in setup.items()})
        name = f"training only: {row['optimizer']} M={row['members']}"
        children.append({"name": name, "params": params, "metrics": metrics, "tags": tags})
    return children


def log_sweep_speed(
    children: list,
    ratios: list,
    *,
    machine: dict,
    metrics: dict,
    table: str,
    uri=None,
    experiment: str = DEFAULT_EXPERIMENT,
) -> str:
    """Record the benchmark; returns the parent run's id."""
    from nnbench import tracking

    uri = tracking.resolve_uri(uri)
    count, total = targets_met(ratios)
    role = {"nnbench.role": "sweep_speed", tracking.OUTCOME_TAG: "completed"}
    parent = tracking.start_run(
        uri=uri,
        experiment=experiment,
        run_name=f"sweep_speed: {count} of {total} targets met",
        params={"children": str(len(children))},
        tags={f"nnbench.machine.{k}": str(v) for k, v in machine.items()} | role,
    )
    with tracking.recording(parent):
        done = {f"{PREFIX}targets_met": count, f"{PREFIX}targets": total}
        parent.log_metrics(done | {PREFIX + k: v for k, v in metrics.items()}, step=0)
        parent.client.log_text(parent.run_id, table, "sweep_speed/table.txt")
        experiment_id = parent.client.get_run(parent.run_id).info.experiment_id
        link = {"experiment_id": experiment_id, "parent_run_id": parent.run_id}
        for child in children:
            run = tracking.start_run(
                uri=uri,
                experiment=None,
                run_name=child["name"],
                params=child["params"],
                tags=child["tags"] | role,
                parent=link,
            )
            with tracking.recording(run):
                run.log_metrics(child["metrics"], step=0)
    return parent.run_id
