"""benchmarks/sweep_speed.py: its command line (one-line errors), the floor arithmetic, the
tables from given figures, its MLflow record, one real whole sweep through its runner and a
tiny real run of its training-only part. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnbench as nb
from nnbench.bench.stack_floor import StackFloor, sweep_flops
from nnbench.bench.sweep_args import parse
from nnbench.bench.sweep_report import (
    sweep_lines,
    sweep_ratios,
    sweep_rows,
    targets_met,
    training_lines,
    training_row,
)
from nnbench.bench.sweep_runs import Entry, Grid, SweepTimer, lr_grid, lr_values, lr_wd_grid

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "sweep_speed.py"
HAVE_TORCH = importlib.util.find_spec("torch") is not None


# ------------------------------------------------------------------ command line
def test_defaults_and_quick_values():
    full, quick = parse([]), parse(["--quick"])
    assert (full.rounds, full.rounds_96, full.members) == (5, 3, [8, 32, 128])
    assert (quick.rounds, quick.rounds_96, quick.members) == (1, 0, [8, 32])
    assert full.variants == ["basic", "joblib", "stacked"]
    assert full.tracking == ["tracked", "untracked"] and full.optimizers == ["momentum", "adam"]
    chosen = parse(["--quick", "--rounds", "3", "--variants", "stacked,basic,stacked"])
    assert chosen.rounds == 3 and chosen.variants == ["stacked", "basic"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--variants", "basic,ray"], "launcher 'ray' (allowed: basic, joblib, stacked"),
        (["--members", "8", "0"], "members '0': must be an integer >= 1"),
        (["--rounds", "two"], "rounds 'two': must be an integer >= 1"),
        (["--optimizers", "sgd"], "optimizer 'sgd' (allowed: momentum, adam"),
        (["--tracking", ""], "tracking mode '' (allowed: tracked, untracked"),
        (["--max-wait", "-1"], "seconds '-1': must be a number >= 0"),
        (["--json", "/no/such/folder/x.json"], "its folder does not exist"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sweep_speed.py: error: ") and message in err


def test_the_script_itself_answers_a_bad_argument_in_one_line():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--parts", "sweeps,gpu"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "sweep_speed.py: error: argument --parts: part 'gpu' (allowed: sweeps, training; "
        "comma-separated)"
    ]


# ------------------------------------------------------------------ floors and grids
def test_sweep_flops_by_hand():
    # 64-64-64-10 per sample: forward 2 * (4096 + 4096 + 640) = 17,664; backward the same
    # plus the input grads of layers 1 and 2, 2 * (4096 + 640) = 9,472: 44,800 in all.
    per_epoch = 1257 * 44_800 + 270 * 17_664
    assert sweep_flops((64, 64, 64, 10), 24, 20, 1257, 270) == 24 * 20 * per_epoch
    assert sweep_flops((64, 64, 64, 10), 1, 1, 10) == 10 * 44_800
    with pytest.raises(ValueError, match="Invalid jobs: 0"):
        sweep_flops((64, 10), 0, 20, 100)


def test_the_stack_floor_runs_every_members_products():
    be = nb.get_backend("numpy", "float64")
    floor = StackFloor(be, (5, 4, 3), members=3, batch_size=2)
    floor()
    for i in range(3):  # member i's forward and backward products, each its own
        np.testing.assert_allclose(floor.h[1][i], floor.h[0][i] @ floor.weights[0][i].T)
        np.testing.assert_allclose(floor.grad_w[1][i], floor.d[1][i].T @ floor.h[1][i])
        np.testing.assert_allclose(floor.dx[1][i], floor.d[1][i] @ floor.weights[1][i])


def test_grids_and_their_hydra_override():
    lrs = lr_values(24)
    assert len(lrs) == 24 and lrs[0] == 1e-4 and lrs[-1] == 3.162
    assert all(
        b / a == pytest.approx(10 ** (4.5 / 23), rel=1e-3)
        for a, b in zip(lrs[:-1], lrs[1:], strict=True)
    )
    assert lr_grid().jobs == 24 and lr_wd_grid().jobs == 96
    two = Grid("g", (("optimizer.lr", (0.1, 0.01)), ("seed", (0, 1, 2))))
    assert two.jobs == 6
    assert two.override() == '++hydra.sweeper.params={optimizer.lr:"0.1,0.01",seed:"0,1,2"}'


# ------------------------------------------------------------------ tables from given figures
def entries():
    e = {
        "basic": Entry("basic", "tracked", [10.0, 12.0, 11.0]),
        "joblib": Entry("joblib", "tracked", [8.0, 6.0, 7.0]),
        "stacked": Entry("stacked", "tracked", [2.0, 3.0, 2.2]),
        "gone": Entry("stacked", "untracked", [], failed="nnbench: error: no such launcher"),
    }
    return list(e.values())


def test_sweep_rows_ratios_and_targets():
    rows = sweep_rows("24-point lr", 24, entries(), floor_s=0.1)
    assert [r["launcher"] for r in rows] == ["basic", "joblib", "stacked"]
    assert rows[0]["median_s"] == 11.0 and rows[0]["over_floor"] == pytest.approx(110)
    ratios = {r["label"]: r for r in sweep_ratios("24-point lr", 24, entries())}
    # per round 0.2, 0.25, 0.2 -> median 0.2; and 0.25, 0.5, 0.314 -> 0.314
    assert ratios["stacked/basic"]["ratio"] == pytest.approx(0.2)
    assert ratios["stacked/basic"]["high"] == pytest.approx(0.25)
    assert ratios["stacked/joblib"]["ratio"] == pytest.approx(2.2 / 7)
    assert ratios["stacked/basic"]["target"] == 0.25
    assert targets_met(list(ratios.values())) == (2, 2)
    floor = {"gflop": 29.3, "peak_gflops": 200.0, "floor_s": 0.1466}
    failed = {"untracked stacked": "nnbench: error: no such launcher"}
    text = "\n".join(sweep_lines("24-point lr", rows, list(ratios.values()), floor, failed))
    assert "29.3 GFLOP of training at the measured peak 200 GFLOP/s = 0.147 s" in text
    assert "    tracked    stacked/basic     0.20  [0.20-0.25]  (target <=0.25: met)" in text
    assert "  tracked    joblib n_jobs=2       7.00     [6.00-8.00]      70x" in text
    assert "untracked stacked: not measured: nnbench: error: no such launcher" in text
    slower = sweep_ratios("96", 96, [Entry("basic", "tracked", [10.0]),
                                     Entry("stacked", "tracked", [2.0])])  # fmt: skip
    assert slower[0]["target"] == 0.15 and targets_met(slower) == (0, 1)


def test_training_rows_are_per_member():
    rounds = {"stack": [3.2, 3.6], "floor": [3.0, 3.0], "solo": [0.2, 0.2], "torch.func": [8, 8]}
    row = training_row("adam", 32, rounds)
    assert row["us"]["stack"] == pytest.approx(3.4e3 / 32) and row["us"]["solo"] == 200.0
    ratios = {r["label"]: r for r in row["ratios"]}
    assert ratios["stack/floor"]["ratio"] == pytest.approx((3.2 / 3 + 3.6 / 3) / 2)
    assert ratios["stack/solo"]["ratio"] == pytest.approx(3.4 / 32 / 0.2)
    assert ratios["stack/torch.func"]["target"] == 0.8
    assert targets_met(row["ratios"]) == (2, 2)  # 1.13 <= 1.15 and 0.425 <= 0.8
    text = "\n".join(training_lines([row], "setup", {"torch.func": "PyTorch is absent"}))
    assert "  adam        32     106.25      93.75     200.00     250.00" in text
    assert "stack/floor 1.13 [1.07-1.20] (target <=1.15: met)" in text
    assert "torch.func: not measured: PyTorch is absent" in text
    missing = training_row("momentum", 8, {"stack": [], "floor": [1.0], "solo": [0.1]})
    assert missing["ratios"] == [] and "stack" not in missing["us"]


# ------------------------------------------------------------------ MLflow
def test_the_result_is_one_parent_run_with_a_child_per_grid_and_cell(tmp_path):
    from mlflow.tracking import MlflowClient

    from nnbench.bench.sweep_record import log_sweep_speed, sweep_children, training_children

    rows = sweep_rows("24-point lr", 24, entries(), floor_s=0.1)
    ratios = sweep_ratios("24-point lr", 24, entries())
    rounds = {"stack": [3.2, 3.6], "floor": [3.0, 3.0], "solo": [0.2, 0.2], "torch.func": [8, 8]}
    training = [training_row("adam", 32, rounds)]
    children = sweep_children(rows, ratios) + training_children(training, {"threads": 1})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    everything = ratios + training[0]["ratios"]
    parent_id = log_sweep_speed(
        children, everything, machine={"cpu": "AMD EPYC"}, metrics={"peak_gflops_all": 400.0},
        table="the table\n", uri=uri, experiment="speed-test",
    )  # fmt: skip
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("speed-test").experiment_id])
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    parent = client.get_run(parent_id)
    assert parent.info.run_name == "sweep_speed: 4 of 4 targets met"
    assert parent.data.metrics["sweep_speed/peak_gflops_all"] == 400.0
    assert parent.data.tags["nnbench.machine.cpu"] == "AMD EPYC"
    text = client.download_artifacts(parent_id, "sweep_speed/table.txt", str(tmp_path))
    assert Path(text).read_text(encoding="utf-8") == "the table\n"
    by_name = {r.info.run_name: r for r in runs if r.info.run_id != parent_id}
    sweep = by_name["24-point lr, tracked"].data
    assert sweep.params == {"grid": "24-point lr", "jobs": "24", "tracking": "tracked"}
    assert sweep.metrics["sweep_speed/stacked_s"] == 2.2
    assert sweep.metrics["sweep_speed/stacked_basic_ratio"] == pytest.approx(0.2)
    assert sweep.tags["nnbench.target.stacked_basic"] == "met"
    cell = by_name["training only: adam M=32"].data
    assert cell.metrics["sweep_speed/torch_func_us"] == 250.0
    assert cell.tags["nnbench.target.stack_floor"] == "met" and cell.params["threads"] == "1"


# ------------------------------------------------------------------ real runs
def test_the_runner_times_a_real_sweep_and_says_why_a_variant_cannot_run(tmp_path):
    timer = SweepTimer(tmp_path, epochs=1)
    good = Entry("basic", "untracked")
    bad = Grid("bad", (("optimizer.lr", (0.1,)), ("optimizer.nesterov", ("maybe",))))
    timer.measure(Grid("two", (("optimizer.lr", (0.1, 0.01)),)), [good], rounds=1)
    assert len(good.seconds) == 1 and good.seconds[0] > 0 and good.failed is None
    jobs = sorted(p.name for p in (tmp_path / "sweeps").glob("*/*") if p.name.isdigit())
    assert jobs == ["0", "1"]  # one job folder per grid point
    broken = Entry("basic", "untracked")
    timer.warm_up(bad, [broken])
    expected = "Invalid optimizer.nesterov: Value 'maybe' is not a valid bool (type str)"
    assert broken.failed == f"nnbench: error: {expected}"
    assert "Traceback" not in broken.failed


def test_a_tiny_real_run_of_the_training_part(tmp_path):
    out = tmp_path / "figures.json"
    argv = ["--parts", "training", "--members", "2", "--optimizers", "momentum"]
    argv += ["--rounds-training", "1", "--samples", "1", "--min-sample-s", "0", "--no-track"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *argv, "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "float32 GEMM peak (1024^3): " in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if line.startswith("  momentum     2"))
    (figures,) = json.loads(out.read_text())["training"]
    measured = set(figures["us"])
    assert {"floor", "solo"} <= measured and all(v > 0 for v in figures["us"].values())
    assert ("torch.func" in measured) == HAVE_TORCH
    if not HAVE_TORCH:
        assert "torch.func: not measured: ModuleNotFoundError" in proc.stdout
    import nnbench.stack

    assert ("stack" in measured) == hasattr(nnbench.stack, "Stack")
    assert len(row.split()) == 6 and row.split().count("-") == 4 - len(measured)
    assert not (tmp_path / "outputs").exists()  # --no-track: no store written


@pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is not installed (make reference)")
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_the_torch_func_ensemble_steps_as_each_member_alone(optimizer):
    import torch

    from nnbench.reference.torch_ensemble import TorchEnsembleStep
    from nnbench.reference.torch_mlp import build_mlp

    lrs = [0.01, 0.1, 0.05]
    ensemble = TorchEnsembleStep((8, 16, 3), 3, 5, optimizer, lrs=lrs)
    solos = []
    for i, lr in enumerate(lrs):
        net = build_mlp((8, 16, 3))
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(ensemble.params[name][i])
        opt = (torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9) if optimizer == "momentum"
               else torch.optim.Adam(net.parameters(), lr=lr))  # fmt: skip
        solos.append((net, opt))
    for _ in range(4):
        losses = ensemble()
        for i, (net, opt) in enumerate(solos):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(ensemble.x[i]), ensemble.y[i])
            loss.backward()
            opt.step()
            assert losses[i].item() == pytest.approx(loss.item(), rel=1e-5)
