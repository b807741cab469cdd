"""The GPU check's stacked table on a machine without a GPU: its CPU dry run goes end to end
with Hydra, MLflow and OmegaConf unimportable (as on the GPU machine), every column measured
or said why not; and its table from given figures."""

from __future__ import annotations

import importlib.util

from nnbench.bench.gpu_stack_table import table_lines
from tests.bench.test_gpu_check import _blocked_env, _run

HAVE_TORCH = importlib.util.find_spec("torch") is not None


def test_the_cpu_dry_run_runs_without_hydra_and_mlflow(tmp_path):
    argv = ["-m", "nnbench.bench.gpu_stack_table", "--cpu-dry-run", "--members", "1", "2"]
    argv += ["--optimizers", "adam", "--rounds", "1", "--samples", "1", "--min-sample-s", "0"]
    proc = _run(argv, _blocked_env(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CPU DRY RUN (NumPy stand-ins)" in proc.stdout
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("adam ")]
    assert [row[1] for row in rows] == ["1", "2"] and all(len(row) == 9 for row in rows)
    assert "graph: not measured: CUDA graphs need a CUDA device (CPU dry run)" in proc.stdout
    assert all(row[5] != "-" for row in rows)  # solo always runs
    import nnbench.stack

    assert all((row[2] != "-") == hasattr(nnbench.stack, "Stack") for row in rows)
    assert all((row[4] != "-") == HAVE_TORCH for row in rows)  # torch.func on the CPU
    if not HAVE_TORCH:
        assert "torch.func: not measured: ModuleNotFoundError" in proc.stdout


def test_the_table_and_its_target_from_given_figures():
    results = {
        ("momentum", 1): {"eager": [0.10, 0.12], "torch.func": [0.5], "solo": [0.08]},
        ("momentum", 64): {"eager": [0.30], "torch.func": [0.6], "solo": [0.08]},
    }
    cells = list(results)
    text = "\n".join(table_lines(results, cells, {"graph": "no graphed stack here"}))
    assert "momentum    64      0.3000           -      0.6000      0.0800         0.50" in text
    assert "a stack of 64 steps in 2.73x the time of a stack of one (target <=3.0: met)" in text
    assert "  graph: not measured: no graphed stack here" in text
