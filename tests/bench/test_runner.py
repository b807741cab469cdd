"""`benchmark` on a tiny network: every documented key, consistent derived figures."""

from __future__ import annotations

import numpy as np
import pytest

import nnbench as nb
from nnbench.bench.flops import mlp_flops
from nnbench.bench.runner import RESULT_KEYS, StepBench, benchmark, make_optimizer
from nnbench.bench.target import TargetTask, time_to_accuracy

SIZES = (4, 8, 3)
FAST = dict(samples=3, warmup=1, min_sample_s=0.0)


def _task(accuracy=0.9, max_epochs=30):
    """Three well-separated clusters in 4-D: any working trainer gets them right."""
    rng = np.random.default_rng(0)
    centers = np.eye(3, 4) * 4.0
    y = rng.integers(0, 3, size=120)
    x = centers[y] + rng.standard_normal((120, 4)) * 0.3
    return TargetTask(x[:90], y[:90], x[90:], y[90:], accuracy=accuracy, max_epochs=max_epochs)


def test_benchmark_returns_every_documented_key():
    result = benchmark(SIZES, batch_size=8, epoch_rows=32, target=_task(), **FAST)
    assert set(RESULT_KEYS) <= set(result)
    missing = [k for k in RESULT_KEYS if result[k] is None and k != "device_mb"]
    assert missing == []  # only the device pool is unknown on the CPU
    assert result["model"] == "4-8-3" and result["dtype"] == "float32"
    assert result["samples"] == 3
    assert result["flops_per_step"] == mlp_flops(SIZES, 8)["total"]
    assert result["epoch_s"] > 0 and result["epoch_rows"] == 32
    assert result["epochs_to_target"] >= 1 and result["target"] == 0.9


def test_derived_figures_follow_from_the_median():
    r = benchmark(SIZES, batch_size=8, **FAST)
    seconds = r["step_ms_median"] / 1e3
    assert r["samples_per_s"] == pytest.approx(8 / seconds)
    assert r["gflops"] == pytest.approx(r["flops_per_step"] / seconds / 1e9)
    assert r["step_over_floor"] == pytest.approx(r["step_ms_median"] / r["floor_ms"])
    assert r["step_ms_min"] <= r["step_ms_median"]
    assert r["peak_host_mb"] > 0 and r["step_alloc_kb"] >= 0
    assert r["epoch_s"] is None and r["time_to_target_s"] is None  # not requested


def test_without_floor_and_environment():
    r = benchmark(SIZES, batch_size=8, floor=False, with_environment=False, **FAST)
    assert r["floor_ms"] is None and r["step_over_floor"] is None
    assert not any(k.startswith("env.") for k in r)


def test_environment_is_recorded():
    r = benchmark(SIZES, batch_size=8, floor=False, **FAST)
    for key in ("env.cpu", "env.blas", "env.blas_threads", "env.blas_kernel", "env.numpy"):
        assert key in r


def test_benchmark_runs_on_the_reference_backend():
    r = benchmark(SIZES, batch_size=8, backend="strict", dtype="float64", **FAST)
    assert r["backend"] == "strict" and r["dtype"] == "float64"


def test_step_is_the_fit_step_on_a_checked_batch():
    """The timed step trains: the parameters move and the loss is finite."""
    bench = StepBench(SIZES, 8, nb.get_backend("numpy"), "adam")
    before = bench.model.params.copy()
    loss = bench()
    assert np.isfinite(loss)
    assert not np.array_equal(before, bench.model.params)


def test_time_to_accuracy_reaches_an_easy_target():
    model = nb.MLP(4, [8], 3, seed=0)
    out = time_to_accuracy(
        model, nb.CrossEntropyLoss(), nb.Adam(model, lr=0.05), _task(), batch_size=16
    )
    assert out["epochs_to_target"] is not None and out["target_acc"] >= 0.9
    assert out["time_to_target_s"] > 0


def test_time_to_accuracy_reports_an_unreached_target():
    model = nb.MLP(4, [8], 3, seed=0)
    task = _task(accuracy=1.0, max_epochs=1)
    out = time_to_accuracy(
        model, nb.CrossEntropyLoss(), nb.SGD(model, lr=1e-6), task, batch_size=16
    )
    assert out["epochs_to_target"] is None and out["target_acc"] < 1.0


def test_bad_target_and_optimizer_names():
    with pytest.raises(ValueError, match=r"^Invalid target accuracy: 1.5 "):
        _task(accuracy=1.5)
    with pytest.raises(ValueError, match=r"^Invalid optimizer: 'rmsprop' \(allowed: "):
        make_optimizer("rmsprop", nb.MLP(4, [8], 3))


def test_command_line_prints_the_result_as_json(capsys):
    import json

    from nnbench.bench.__main__ import main

    args = ["--model", "4-8-3", "--batch-size", "8", "--samples", "2", "--min-sample-s", "0"]
    assert main([*args, "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "4-8-3" and result["samples"] == 2
    assert main(["--model", "4-x-3"]) == 2
    assert "Invalid layer sizes: '4-x-3'" in capsys.readouterr().err
