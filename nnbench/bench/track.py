"""A benchmark result as an MLflow run: the configuration as params, every number as a
``bench/*`` metric, and the machine (threads, BLAS library and kernel, CPU) as tags, so that
runs from several machines can be compared side by side in the UI and the report."""

from __future__ import annotations

import math

CONFIG_KEYS = ("model", "batch_size", "backend", "device", "dtype", "optimizer", "lr")
DEFAULT_EXPERIMENT = "bench"


def split_result(result: dict) -> tuple[dict, dict, dict]:
    """(params, metrics, tags) of a `benchmark` result; null and non-numeric values are
    left out of the metrics, and the ``env.*`` entries become ``nnbench.env.*`` tags."""
    params = {key: result[key] for key in CONFIG_KEYS if key in result}
    metrics, tags = {}, {"nnbench.outcome": "completed", "nnbench.role": "bench"}
    for key, value in result.items():
        if key.startswith("env."):
            if value not in (None, ""):
                tags[f"nnbench.{key}"] = value
        elif key not in CONFIG_KEYS and _number(value):
            metrics[f"bench/{key}"] = float(value)
    for key in ("backend", "device", "dtype"):
        if key in result:
            tags[f"nnbench.{key}"] = result[key]
    return params, metrics, tags


def log_result(result: dict, *, uri=None, experiment: str = DEFAULT_EXPERIMENT) -> str:
    """Record ``result`` as one finished MLflow run; returns its id."""
    from nnbench import tracking

    params, metrics, tags = split_result(result)
    name = f"{result.get('backend')} {result.get('model')} B={result.get('batch_size')} "
    name += str(result.get("optimizer"))
    recorder = tracking.start_run(
        uri=tracking.resolve_uri(uri),
        experiment=experiment,
        run_name=name,
        params={key: str(value) for key, value in params.items()},
        tags={key: str(value) for key, value in tags.items()},
    )
    with tracking.recording(recorder):
        recorder.log_metrics(metrics, step=0)
    return recorder.run_id


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
