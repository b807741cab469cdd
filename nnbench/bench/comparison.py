"""The side-by-side comparison (``benchmarks/compare.py``) as MLflow runs.

One parent run per comparison holds the machine (CPU, BLAS, kernels, thread counts) as
tags, how many targets were met as metrics, and the printed table as an artifact. Under it,
one child run per measured configuration (threads, model, batch size, optimizer) holds, for
each framework it was compared with, the step times and the ratio nnbench / other::

    compare/nnbench_ms            nnbench's step (median of all samples)
    compare/<other>_ms            the other framework's step (or the GEMM floor)
    compare/<other>_ratio         median over rounds of the per-round ratio
    compare/<other>_ratio_min     its range over rounds
    compare/<other>_ratio_max
    compare/<other>_ratio_best    the fastest sample over the fastest (a quiet machine's ratio)
    compare/<other>_target        the issue's target, where there is one

with ``nnbench.target.<other>`` = ``met`` or ``missed``. ``<other>`` is ``torch``,
``torch_fused``, ``sklearn`` or ``gemm_floor``. The time to accuracy on digits is one more
child run. In the MLflow UI the children of one comparison line up in one table.
"""

from __future__ import annotations

import re

DEFAULT_EXPERIMENT = "compare"


def metric_name(label: str) -> str:
    """``torch fused`` -> ``torch_fused``, ``GEMM floor`` -> ``gemm_floor``."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def met(other: dict) -> bool:
    """Whether a compared entry meets its target (one that has a target)."""
    return other["ratio"] <= other["target"]


def digits_met(digits: dict) -> bool:
    """The time-to-accuracy target: the ratio, reached in the same epochs."""
    return digits["ratio"] <= digits["target"] and digits["same_epochs"]


def cell_metrics(row: dict) -> tuple[dict, dict]:
    """(metrics, tags) of one configuration: ``row`` has ``nnbench_ms`` and ``others``,
    a list of {label, ms, ratio, low, high, target}."""
    metrics = {"compare/nnbench_ms": row["nnbench_ms"]}
    tags = {}
    for other in row["others"]:
        name = metric_name(other["label"])
        metrics[f"compare/{name}_ms"] = other["ms"]
        metrics[f"compare/{name}_ratio"] = other["ratio"]
        metrics[f"compare/{name}_ratio_min"] = other["low"]
        metrics[f"compare/{name}_ratio_max"] = other["high"]
        if "best" in other:
            metrics[f"compare/{name}_ratio_best"] = other["best"]
        if other["target"] is not None:
            metrics[f"compare/{name}_target"] = other["target"]
            tags[f"nnbench.target.{name}"] = "met" if met(other) else "missed"
    return metrics, tags


def targets_met(rows: list[dict], digits: dict | None = None) -> tuple[int, int]:
    """(met, total) over every ratio that has a target, and the digits target."""
    checked = [o for row in rows for o in row["others"] if o["target"] is not None]
    count, total = sum(map(met, checked)), len(checked)
    if digits is not None:
        count, total = count + digits_met(digits), total + 1
    return count, total


def log_comparison(
    rows: list[dict],
    *,
    machine: dict,
    table: str,
    digits: dict | None = None,
    uri=None,
    experiment: str = DEFAULT_EXPERIMENT,
) -> str:
    """Record a comparison; returns the parent run's id. ``rows``: one per configuration,
    with ``threads``, ``model``, ``batch_size``, ``optimizer`` and what `cell_metrics`
    reads; ``machine``: tags for the parent (CPU, BLAS, kernels); ``digits``: the time to
    accuracy (``nnbench_s``, ``torch_s``, ``ratio``, ``target``, ``epochs``,
    ``same_epochs``)."""
    from nnbench import tracking

    uri = tracking.resolve_uri(uri)
    count, total = targets_met(rows, digits)
    parent = tracking.start_run(
        uri=uri,
        experiment=experiment,
        run_name=f"compare: {count} of {total} targets met",
        params={"configurations": str(len(rows))},
        tags={f"nnbench.machine.{k}": str(v) for k, v in machine.items()}
        | {"nnbench.role": "compare", tracking.OUTCOME_TAG: "completed"},
    )
    with tracking.recording(parent):
        parent.log_metrics({"compare/targets_met": count, "compare/targets": total}, step=0)
        parent.client.log_text(parent.run_id, table, "compare/table.txt")
        link = {"experiment_id": _experiment_id(parent), "parent_run_id": parent.run_id}
        for row in rows:
            _log_child(tracking, uri, link, row)
        if digits is not None:
            _log_digits(tracking, uri, link, digits)
    return parent.run_id


def _experiment_id(recorder) -> str:
    return recorder.client.get_run(recorder.run_id).info.experiment_id


def _log_child(tracking, uri, link, row: dict) -> None:
    params = {k: str(row[k]) for k in ("threads", "model", "batch_size", "optimizer")}
    metrics, tags = cell_metrics(row)
    name = f"{row['threads']} thr {row['model']} B={row['batch_size']} {row['optimizer']}"
    child = tracking.start_run(
        uri=uri,
        experiment=None,
        run_name=name,
        params=params,
        tags=tags | {"nnbench.role": "compare", tracking.OUTCOME_TAG: "completed"},
        parent=link,
    )
    with tracking.recording(child):
        child.log_metrics(metrics, step=0)


def _log_digits(tracking, uri, link, digits: dict) -> None:
    child = tracking.start_run(
        uri=uri,
        experiment=None,
        run_name="time to accuracy: digits",
        params={"task": digits.get("task", "digits"), "epochs": str(digits["epochs"])},
        tags={
            "nnbench.role": "compare",
            tracking.OUTCOME_TAG: "completed",
            "nnbench.target.time_to_accuracy": "met" if digits_met(digits) else "missed",
        },
        parent=link,
    )
    with tracking.recording(child):
        child.log_metrics(
            {
                "compare/nnbench_s": digits["nnbench_s"],
                "compare/torch_s": digits["torch_s"],
                "compare/time_to_accuracy_ratio": digits["ratio"],
                "compare/time_to_accuracy_target": digits["target"],
                "compare/identical_epochs": float(digits["same_epochs"]),
            },
            step=0,
        )
