"""The real program: ``python -m nnbench`` run as a user runs it, in a temporary folder.

Happy paths run in a subprocess (about 1.5 s of imports each, so they are few). User
errors run in-process through `nnbench.cli.main` with a patched ``sys.argv``: each must end
with exit code 2 and exactly one line "nnbench: error: Invalid ..." on stderr.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import nnbench.conf
import pytest
from hydra.core.global_hydra import GlobalHydra

from nnbench import cli
from tests.cli_helpers import (
    changed,
    clean_env,
    jobs,
    metrics,
    run_nnbench,
    write_blobs_csv,
    write_mnist,
)

CONF = Path(nnbench.conf.__file__).parent


def ok(proc: subprocess.CompletedProcess) -> str:
    """stdout of a run that must have succeeded, with no traceback anywhere."""
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc.stdout


# ------------------------------------------------------------------- single runs
def test_default_run_prints_a_summary_and_no_progress_when_not_a_tty(tmp_path):
    """The plain command, default tracking included; its output is a pipe, so no bar."""
    proc = run_nnbench(tmp_path, "trainer.epochs=2", tracking=None)
    out = ok(proc)
    lines = out.splitlines()
    assert lines[0].startswith("nnbench: digits, MLP 64-64-64-10 relu, momentum lr=0.05")
    assert "completed 2 epochs" in out
    assert 0.5 < metrics(out)["test/acc"] <= 1  # 10 classes: chance is 0.1
    outputs = Path(next(line for line in lines if line.startswith("outputs: ")).split(": ")[1])
    assert outputs.is_dir() and tmp_path in outputs.parents
    assert "recorded: run " in out  # MLflow tracking is on by default
    assert "\r" not in proc.stdout and proc.stderr == ""  # no bar, no log chatter


def test_progress_bar_on_request(tmp_path):
    """trainer.progress=bar draws the bar even into a pipe: 24 cells, full at the end."""
    proc = run_nnbench(tmp_path, "trainer.progress=bar", "trainer.epochs=2", "dataset=xor")
    ok(proc)
    assert "\repoch 1/2 [" + "#" * 12 + "-" * 12 + "]" in proc.stderr
    assert "\repoch 2/2 [" + "#" * 24 + "]" in proc.stderr


def test_progress_auto_draws_a_bar_on_a_terminal(tmp_path):
    """progress=auto (the default) with stderr on a pseudo-terminal shows the bar."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnbench", "tracking=none", "trainer.epochs=2", "dataset=xor"],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )
    os.close(follower)
    terminal = b""
    while select.select([leader], [], [], 60)[0]:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        terminal += chunk
    os.close(leader)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "completed 2 epochs" in out
    assert b"\repoch 2/2 [" + b"#" * 24 + b"]" in terminal


def test_console_script(tmp_path):
    script = Path(sys.executable).parent / "nnbench"
    assert script.exists(), "the nnbench console script is missing: pip install -e ."
    out = ok(run_nnbench(tmp_path, "dataset=xor", "trainer.epochs=1", command=[str(script)]))
    assert "nnbench: xor," in out and "completed 1 epoch" in out


def test_csv_happy_path(tmp_path):
    path = write_blobs_csv(tmp_path / "blobs.csv")
    args = ["dataset=csv", f"dataset.path={path}", "dataset.target=label", "optimizer=adam"]
    out = ok(run_nnbench(tmp_path, *args, "optimizer.lr=0.01", "trainer.epochs=20"))
    assert out.startswith("nnbench: csv, MLP 3-64-64-3 relu, adam lr=0.01")
    assert "completed 20 epochs" in out
    assert metrics(out)["test/acc"] >= 0.9  # centers 4+ standard deviations apart


# ------------------------------------------------------------------- experiments
def _xor_perceptron(out):
    found = metrics(out)  # no line separates XOR: at most 3 of the 4 points
    assert found["val/acc"] <= 0.75 and found["test/acc"] <= 0.75


def _xor_mlp(out):
    assert metrics(out)["test/acc"] == 1.0 and metrics(out)["val/acc"] == 1.0


def _linear_collapse(out):
    acc = {changed(line)["model"]: metrics(line)["test/acc"] for line in jobs(out).values()}
    assert set(acc) == {"perceptron", "deep_linear", "mlp"}
    assert acc["perceptron"] < 0.65 and acc["deep_linear"] < 0.65  # chance: 0.5
    assert acc["mlp"] > 0.9


def _lr_figure(out):
    runs = {float(changed(line)["optimizer.lr"]): line for line in jobs(out).values()}
    assert sorted(runs) == [1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0]
    assert {lr for lr, line in runs.items() if "diverged at epoch 1," in line} == {1.0, 10.0}
    completed = {lr: metrics(line)["val/loss"] for lr, line in runs.items() if lr < 1}
    assert min(completed, key=completed.get) == 0.1
    assert completed[1e-4] > 3 * completed[0.1]  # too small: the loss barely moves


def _dropout_batchnorm(out):
    grid = {
        (changed(line)["model.dropout"], changed(line)["model.batchnorm"])
        for line in jobs(out).values()
    }
    assert grid == {(d, b) for d in ("0.0", "0.3") for b in ("False", "True")}
    assert out.count("completed 1 epoch") == 4


def _digits_mlp(out):
    assert out.startswith("nnbench: digits, MLP 64-128-64-10 relu, adam lr=0.002")
    assert metrics(out)["test/acc"] > 0.85


def _mnist_mlp(out):
    assert out.startswith("nnbench: mnist, MLP 784-256-256-10 relu, adam")
    assert "completed 2 epochs" in out and "test/acc" in metrics(out)


# name -> (extra overrides, check of stdout); tmp is replaced by the test's folder.
EXPERIMENTS = {
    "xor_perceptron": ([], _xor_perceptron),
    "xor_mlp": ([], _xor_mlp),
    "linear_collapse": ([], _linear_collapse),
    "lr_figure": (["trainer.epochs=3"], _lr_figure),
    "dropout_batchnorm": (["model.hidden=[32]", "trainer.epochs=1"], _dropout_batchnorm),
    "digits_mlp": (["trainer.epochs=3"], _digits_mlp),
    "mnist_mlp": (["dataset.root={tmp}", "trainer.epochs=2"], _mnist_mlp),
}


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_experiment_runs_and_shows_its_point(tmp_path, name):
    """Every experiment runs, shortened where slow; the known ones show what their header
    says. A new experiment without an entry still has to run (2 epochs)."""
    overrides, check = EXPERIMENTS.get(name, (["trainer.epochs=2"], None))
    if name == "mnist_mlp":
        write_mnist(tmp_path)  # plain IDX files put there by hand: no checksum to match
    overrides = [o.format(tmp=tmp_path) for o in overrides]
    out = ok(run_nnbench(tmp_path, f"+experiment={name}", *overrides))
    if check is not None:
        check(out)


def test_lr_sweep_runs_one_job_per_value(tmp_path):
    args = ["+sweep=lr", "optimizer.lr=0.001,0.1,10.0", "trainer.epochs=2", "dataset=sine"]
    out = ok(run_nnbench(tmp_path, *args))
    found = jobs(out)
    assert sorted(found) == [0, 1, 2]
    for num, lr in enumerate(("0.001", "0.1", "10.0")):
        assert changed(found[num])["optimizer.lr"] == lr
    assert "completed 2 epochs" in found[0]
    assert "diverged at epoch 1" in found[2] and "val/loss" not in found[2]
    sweep_dirs = list((tmp_path / "outputs" / "multirun").glob("*/*/*"))
    assert sorted(d.name for d in sweep_dirs if d.is_dir()) == ["0", "1", "2"]


# ------------------------------------------------------------------- user errors
@pytest.fixture
def run_main(tmp_path, monkeypatch, capsys):
    """Call nnbench.cli.main() in-process: returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setenv("NNBENCH_DATA", str(tmp_path / "cache"))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def run(*args: str):
        monkeypatch.setattr(sys, "argv", ["nnbench", "tracking=none", *args])
        try:
            cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code
        finally:
            GlobalHydra.instance().clear()
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    for handler in root.handlers[:]:  # Hydra's job logging: close it, put pytest's back
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.handlers[:], root.level = handlers, level


# (command-line arguments, the error line after "nnbench: error: ", up to its end or "...")
USER_ERRORS = [
    (["optimizer.lr=-1"], "Invalid optimizer.lr: -1.0 (must be > 0)"),
    (["optimizer.lr=0"], "Invalid optimizer.lr: 0.0 (must be > 0)"),
    (["model.dropout=1.0"], "Invalid model.dropout: 1.0 (must be in [0, 1))"),
    (["model.hidden=[0]"], "Invalid model.hidden: [0] (each width must be >= 1)"),
    (["trainer.batch_size=0"], "Invalid trainer.batch_size: 0 (must be >= 1)"),
    (["trainer.epochs=0"], "Invalid trainer.epochs: 0 (must be >= 1)"),
    (["optimizer.momentum=1.0"], "Invalid optimizer.momentum: 1.0 (must be in [0, 1))"),
    (["model.l2=-1"], "Invalid model.l2: -1.0 (must be >= 0)"),
    (["optimizer.betas=[0.9,1.0]"], "Invalid optimizer.betas[1]: 1.0 (must be in [0, 1))"),
    (["model.activation=gelu"], "Invalid model.activation: 'gelu' (allowed: ..."),
    (["optimizer=rmsprop"], "Invalid optimizer: 'rmsprop' (allowed: adam, adamw, momentum, sgd)"),
    (["backend=foo"], "Invalid backend: 'foo' (allowed: auto, cupy, numpy)"),
    (["+sweep=nope"], "Invalid sweep: 'nope' (allowed: ..."),
    (["+experiment=nope"], "Invalid experiment: 'nope' (allowed: ..."),
    (["model.hiden=3"], "Invalid key: 'model.hiden' (keys under model: hidden, ..."),
    (["+bench=default", "bench.frame=x"], "Invalid key: 'bench.frame' (keys under bench: ..."),
    (
        ["bench.framework=sklearn"],
        "Invalid key: 'bench.framework' (the bench section is off; select it first: "
        "+bench=default)",
    ),
    (["trainer.epochs=abc"], "Invalid trainer.epochs: Value 'abc' ..."),
    (["seed=-1"], "Invalid seed: -1 ..."),
    (["dataset=csv"], "Invalid dataset.path: ..."),
    (
        ["dataset=csv", "dataset.path={tmp}/missing.csv"],
        "Invalid dataset.path: '{tmp}/missing.csv' (no such file)",
    ),
    (
        ["dataset=csv", "dataset.path={csv}", "dataset.target=y"],
        "Invalid dataset.target: 'y' (available columns: f0, label, f1, f2)",
    ),
]


@pytest.mark.parametrize(
    ("args", "expected"), USER_ERRORS, ids=[" ".join(a) for a, _ in USER_ERRORS]
)
def test_user_error_is_one_line_and_exit_code_2(run_main, tmp_path, args, expected):
    csv_path = write_blobs_csv(tmp_path / "blobs.csv")
    fill = {"tmp": tmp_path, "csv": csv_path}
    code, out, err = run_main(*(a.format(**fill) for a in args))
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    expected = "nnbench: error: " + expected.format(**fill)
    if expected.endswith("..."):
        assert lines[0].startswith(expected.removesuffix("..."))
    else:
        assert lines[0] == expected


def test_mnist_files_with_wrong_checksum_are_a_user_error(run_main, tmp_path):
    """Gzipped files not matching the official MD5 stop the run, naming the way out."""
    write_mnist(tmp_path, gz=True)
    code, out, err = run_main("dataset=mnist", f"dataset.root={tmp_path}", "trainer.epochs=1")
    assert code == 2 and "Traceback" not in out + err
    assert err.startswith("nnbench: error: ") and err.count("\n") == 1
    assert "MD5" in err and "verify" in err


def test_mnist_files_with_verify_off_train(run_main, tmp_path):
    """dataset.verify=false accepts the user's own gzipped files."""
    write_mnist(tmp_path, gz=True)
    args = ["dataset=mnist", f"dataset.root={tmp_path}", "dataset.verify=false"]
    code, out, err = run_main(*args, "model.hidden=[8]", "trainer.epochs=1")
    assert code == 0, err
    assert "nnbench: mnist, MLP 784-8-10" in out and "completed 1 epoch" in out


def test_backend_cupy_without_cupy_says_how_to_install(run_main):
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is importable here")
    code, out, err = run_main("backend=cupy", "trainer.epochs=1")
    assert code == 2 and "Traceback" not in out + err
    assert err.startswith("nnbench: error: ") and err.count("\n") == 1
    assert "pip install" in err and "backend=numpy" in err
