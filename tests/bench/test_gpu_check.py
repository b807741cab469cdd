"""The GPU check on a machine without one: scripts/gpu_check.sh stops at once with the reason,
and its Python parts (parity, benchmark table, the training path they use) run end to end in
their CPU modes with Hydra, MLflow and OmegaConf made unimportable, as on the GPU machine."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nnbench.backend._cupy import device_count
from nnbench.bench.gpu_table import Cell, ratio, table_lines

ROOT = Path(__file__).resolve().parents[2]
HAVE_TORCH = importlib.util.find_spec("torch") is not None
BLOCKED = ("hydra", "mlflow", "omegaconf")

BLOCKER = textwrap.dedent(
    f"""
    import sys

    class _Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED!r}:
                raise ImportError(f"{{name}} is blocked: the GPU machine does not have it")
            return None

    sys.meta_path.insert(0, _Blocker())
    """
)


def _blocked_env(tmp_path: Path) -> dict:
    """An environment whose Python processes (workers included) cannot import BLOCKED."""
    site = tmp_path / "blocker"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    return env


def _run(args, env, timeout=180):
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.skipif(device_count() > 0, reason="CuPy and a GPU are present: the check would run")
def test_gpu_check_stops_at_once_without_a_gpu(tmp_path):
    env = dict(os.environ, GPU_CHECK_OUT=str(tmp_path), PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "gpu_check: stopped: this check needs CuPy and an NVIDIA GPU" in proc.stdout
    assert "CuPy is not installed" in proc.stdout or "no GPU" in proc.stdout
    (log,) = tmp_path.glob("gpu_check-*.txt")
    assert "gpu_check: stopped" in log.read_text()


def test_the_blocker_blocks(tmp_path):
    """A control: without it the next test would prove nothing."""
    proc = _run(["-c", "import omegaconf"], _blocked_env(tmp_path))
    assert proc.returncode != 0 and "blocked" in proc.stderr


def test_gpu_entry_points_run_without_hydra_and_mlflow(tmp_path):
    env = _blocked_env(tmp_path)
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import nnbench as nb
        import nnbench.backend.cupy_backend, nnbench.backend.cuda_graph
        import nnbench.bench.gpu_worker, nnbench.bench.gpu_table, nnbench.bench.gpu_parity
        from nnbench.backend.cuda_graph import HostCapturer
        model = nb.MLP(4, [8], 3, backend=nb.get_backend("numpy"))
        x, y = np.random.default_rng(0).standard_normal((40, 4)), np.arange(40) % 3
        result = nb.fit(model, nb.CrossEntropyLoss(), nb.Adam(model), (x, y), epochs=2,
                        batch_size=16, cuda_graph=HostCapturer())
        print(result.message, sorted(m for m in sys.modules if m.split(".")[0] in
              ("hydra", "mlflow", "omegaconf")))
        """
    )
    proc = _run(["-c", code], env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "completed 2 epochs []"

    proc = _run(["-m", "nnbench.bench.gpu_parity", "--cpu", "--steps", "3"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("  ok  ") == 8

    table = ["-m", "nnbench.bench.gpu_table", "--cpu-dry-run", "--batches", "8"]
    table += ["--optimizers", "adam", "--rounds", "1", "--samples", "1", "--min-sample-s", "0"]
    proc = _run(table, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    row = next(line for line in lines if line.startswith("off  adam     8"))
    assert len(row.split()) == 3 + 7
    if HAVE_TORCH:  # torch eager runs on the CPU; no torch graph without CUDA
        assert row.split().count("-") == 1
        assert "CUDA graphs need a CUDA device (CPU dry run)" in proc.stdout
        assert "cupy fused/torch eager" in proc.stdout
    else:  # both torch columns empty, and the notes say why
        assert row.split().count("-") == 2
        assert proc.stdout.count("No module named 'torch'") == 3
        assert "cupy fused/torch eager" not in proc.stdout


def test_ratios_are_medians_of_per_round_ratios_and_targets_are_judged():
    cell = Cell(tf32=False, optimizer="sgd", batch_size=1024)
    cell.rounds = {
        "cupy fused": [1.0, 2.0, 3.0],
        "cupy graph": [0.2, 0.2, 0.2],
        "torch eager": [2.0, 2.0, 2.0],
    }
    assert ratio(cell, "cupy fused", "torch eager") == 1.0
    assert ratio(cell, "cupy fused", "torch graph") is None
    text = "\n".join(table_lines([cell]))
    assert "cupy fused/torch eager 1.00 (<=1.00: yes)" in text
    assert "cupy graph/torch eager 0.10 (<=0.30: yes)" in text
    cell.batch_size = 4096  # the graph target applies up to B = 1024 only
    assert "cupy graph/torch eager 0.10;" in "\n".join(table_lines([cell])) + ";"
