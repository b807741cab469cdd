"""The side-by-side comparison reaches MLflow: one parent run with the machine, the count of
targets met and the table; one child per configuration with step times, ratios, ranges and
targets; one child for the time to accuracy. (The ratios themselves are measured by
``benchmarks/compare.py``; here they are given.)"""

from __future__ import annotations

import pytest

from nnbench.bench.comparison import cell_metrics, log_comparison, metric_name, targets_met


def other(label, ms, ratio, target=None):
    return {"label": label, "ms": ms, "ratio": ratio, "low": ratio - 0.1, "high": ratio + 0.1,
            "best": ratio + 0.05, "target": target}  # fmt: skip


ROWS = [
    {
        "threads": 1,
        "model": "784-256-256-10",
        "batch_size": 256,
        "optimizer": "adam",
        "nnbench_ms": 3.5,
        "others": [
            other("torch", 5.0, 0.70, 0.70),  # exactly on target: met
            other("torch fused", 4.4, 0.80, 1.0),
            other("sklearn", 5.4, 0.65, 0.60),  # missed
            other("GEMM floor", 3.3, 1.06, 1.15),
        ],
    },
    {
        "threads": 2,
        "model": "32-64-64-4",
        "batch_size": 64,
        "optimizer": "sgd",
        "nnbench_ms": 0.08,
        "others": [other("torch", 0.3, 0.27, 0.40), other("sklearn", 0.15, 0.53)],
    },
]
DIGITS = {"nnbench_s": 0.03, "torch_s": 0.12, "ratio": 0.25, "target": 0.35, "epochs": [10],
          "same_epochs": True}  # fmt: skip


def test_metric_names_are_mlflow_keys():
    assert metric_name("torch fused") == "torch_fused"
    assert metric_name("GEMM floor") == "gemm_floor"


def test_cell_metrics_and_the_count_of_targets_met():
    metrics, tags = cell_metrics(ROWS[0])
    assert metrics["compare/nnbench_ms"] == 3.5
    assert metrics["compare/torch_fused_ratio"] == 0.80
    assert metrics["compare/sklearn_ratio_min"] == pytest.approx(0.55)
    assert metrics["compare/gemm_floor_target"] == 1.15
    assert metrics["compare/torch_ratio_best"] == pytest.approx(0.75)
    assert tags == {
        "nnbench.target.torch": "met",
        "nnbench.target.torch_fused": "met",
        "nnbench.target.sklearn": "missed",
        "nnbench.target.gemm_floor": "met",
    }
    assert "compare/sklearn_target" not in cell_metrics(ROWS[1])[0]  # no target there
    assert targets_met(ROWS) == (4, 5)
    assert targets_met(ROWS, DIGITS) == (5, 6)
    assert targets_met(ROWS, DIGITS | {"same_epochs": False}) == (4, 6)


def test_a_comparison_is_one_parent_run_with_a_child_per_configuration(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    table = "thr model ...\n"
    machine = {"cpu": "AMD EPYC", "blas": "openblas 0.3.31", "kernels": "C kernels (cc)"}
    parent_id = log_comparison(
        ROWS, machine=machine, table=table, digits=DIGITS, uri=uri, experiment="cmp-test"
    )
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("cmp-test")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    parent = client.get_run(parent_id)
    assert parent.info.run_name == "compare: 5 of 6 targets met"
    assert parent.data.metrics == {"compare/targets_met": 5.0, "compare/targets": 6.0}
    assert parent.data.tags["nnbench.machine.kernels"] == "C kernels (cc)"
    text = client.download_artifacts(parent_id, "compare/table.txt", str(tmp_path))
    assert open(text, encoding="utf-8").read() == table
    children = {r.info.run_name: r for r in runs if r.info.run_id != parent_id}
    assert all(r.data.tags["mlflow.parentRunId"] == parent_id for r in children.values())
    adam = children["1 thr 784-256-256-10 B=256 adam"]
    assert adam.data.params == {
        "threads": "1",
        "model": "784-256-256-10",
        "batch_size": "256",
        "optimizer": "adam",
    }
    assert adam.data.metrics["compare/torch_ratio"] == 0.70
    assert adam.data.tags["nnbench.target.sklearn"] == "missed"
    digits = children["time to accuracy: digits"]
    assert digits.data.metrics["compare/time_to_accuracy_ratio"] == 0.25
    assert digits.data.tags["nnbench.target.time_to_accuracy"] == "met"


def test_the_compare_script_prints_its_table_and_records_it(tmp_path):
    """A one-round smoke run of ``benchmarks/compare.py`` (nnbench against PyTorch, each in
    its own worker process), recorded in a fresh store."""
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed (make reference)")
    from mlflow.tracking import MlflowClient

    root = Path(__file__).resolve().parents[2]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["--quick", "--rounds", "1", "--batches", "64", "--threads", "1", "--optimizers"]
    argv += ["sgd", "--no-sklearn", "--no-digits", "--max-wait", "0", "--tracking-uri", uri]
    done = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "compare.py"), *argv],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rows = [line for line in lines if line.startswith("  1 ")]
    assert [row.split()[5] for row in rows] == ["torch", "GEMM", "torch", "GEMM"]
    assert any(line.startswith("Targets met: ") for line in lines)
    assert "C kernels" in done.stdout or "NumPy (C kernels" in done.stdout
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("compare").experiment_id])
    assert len(runs) == 3  # the comparison and its two configurations
    assert all(r.info.status == "FINISHED" for r in runs)
