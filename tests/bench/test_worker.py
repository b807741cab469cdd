"""The benchmark worker's protocol, in process and as its own process."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np

from nnbench.bench.protocol import serve
from nnbench.bench.worker import Worker

STEP = {
    "op": "step",
    "sizes": [4, 8, 3],
    "batch_size": 8,
    "optimizer": "sgd",
    "samples": 2,
    "warmup": 1,
    "min_sample_s": 0.0,
    "floor": True,
}


def _serve(requests: list[dict]) -> list[dict]:
    stdin = io.StringIO("".join(json.dumps(r) + "\n" for r in requests))
    stdout = io.StringIO()
    serve(Worker("nnbench", threads=None), stdin, stdout)
    return [json.loads(line) for line in stdout.getvalue().splitlines()]


def test_protocol_ready_step_error_exit():
    ready, step, error = _serve([STEP, {"op": "fly"}, {"op": "exit"}, STEP])
    assert ready["ready"] is True and "blas" in ready["env"]
    assert len(step["step_ms"]) == 2 and len(step["floor_ms"]) == 2
    assert step["steps_per_sample"] >= 1
    assert error == {"error": "unknown op 'fly'"}  # and nothing after exit


def test_target_request(tmp_path):
    from tests.bench.test_runner import _task

    task = _task(accuracy=0.9)
    path = tmp_path / "task.npz"
    np.savez(
        path, x_train=task.x_train, y_train=task.y_train, x_test=task.x_test, y_test=task.y_test
    )
    request = {
        "op": "target",
        "sizes": [4, 8, 3],
        "data": str(path),
        "accuracy": 0.9,
        "batch_size": 16,
        "optimizer": "adam",
        "lr": 0.05,
        "max_epochs": 30,
    }
    _, result = _serve([request])
    assert result["epochs_to_target"] >= 1 and result["target_acc"] >= 0.9


def test_worker_runs_as_its_own_process_with_limited_threads():
    proc = subprocess.run(
        [sys.executable, "-m", "nnbench.bench.worker", "nnbench", "--threads", "1"],
        input=json.dumps(STEP) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    ready, step = (json.loads(line) for line in proc.stdout.splitlines())
    assert ready["env"]["blas_threads"] == 1
    assert "torch" not in ready["env"] and "sklearn" not in ready["env"]
    assert len(step["step_ms"]) == 2
