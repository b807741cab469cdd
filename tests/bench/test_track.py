"""Benchmark results reach MLflow: `python -m nnbench.bench --track` records one finished run
with bench/* metrics, the configuration as params and the machine as tags."""

from __future__ import annotations

import math

from nnbench.bench.__main__ import main
from nnbench.bench.track import split_result

RESULT = {
    "model": "8-16-4",
    "batch_size": 32,
    "backend": "numpy",
    "device": "cpu",
    "dtype": "float32",
    "optimizer": "sgd",
    "lr": 0.01,
    "step_ms_median": 0.035,
    "samples": 7,
    "device_mb": None,
    "gflops": math.nan,
    "env.blas": "openblas 0.3.31",
    "env.blas_threads": 1,
    "env.cpu": "AMD EPYC",
    "env.openmp_threads": None,
}


def test_split_result_puts_numbers_in_metrics_config_in_params_machine_in_tags():
    params, metrics, tags = split_result(RESULT)
    assert params == {
        "model": "8-16-4",
        "batch_size": 32,
        "backend": "numpy",
        "device": "cpu",
        "dtype": "float32",
        "optimizer": "sgd",
        "lr": 0.01,
    }
    # null and NaN are not numbers to record; the configuration is not a metric
    assert metrics == {"bench/step_ms_median": 0.035, "bench/samples": 7.0}
    assert tags["nnbench.env.blas"] == "openblas 0.3.31"
    assert tags["nnbench.env.blas_threads"] == 1
    assert tags["nnbench.env.cpu"] == "AMD EPYC"
    assert "nnbench.env.openmp_threads" not in tags
    assert tags["nnbench.outcome"] == "completed"


def test_track_records_a_finished_run_with_bench_metrics(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["--model", "8-16-4", "--batch-size", "16", "--samples", "7"]
    argv += ["--min-sample-s", "0.005", "--threads", "1", "--no-floor"]
    assert main([*argv, "--track", "--tracking-uri", uri, "--experiment", "bench-test"]) == 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bench-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["model"] == "8-16-4"
    assert run.data.params["batch_size"] == "16"
    metrics = run.data.metrics
    assert metrics["bench/step_ms_median"] > 0
    assert metrics["bench/samples"] == 7
    assert metrics["bench/flops_per_step"] == 2 * 16 * (8 * 16 + 16 * 4) * 3 - 2 * 16 * 8 * 16
    tags = run.data.tags
    assert tags["nnbench.env.blas_threads"] == "1"
    assert tags["nnbench.env.cpu"]
    assert tags["nnbench.env.blas"]
    assert run.info.run_id in capsys.readouterr().err
