"""The configs live once, in conf/ beside nnbench/, and an installed nnbench carries them as
the package nnbench.conf; a user's own config folder adds experiments and sweeps to them.

The end-to-end check installs nnbench (not editable) into a folder of its own and runs it
from another working folder, so that neither the checkout nor its conf/ can be found by
accident: only the installed copy's configs and the user's folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

MY_EXPERIMENT = textwrap.dedent(
    """\
    # @package _global_
    # python -m nnbench --config-dir my_conf +experiment=tiny_xor
    defaults:
      - override /dataset: xor
    model:
      hidden: [3]
    trainer:
      epochs: 2
    """
)
MY_SWEEP = textwrap.dedent(
    """\
    # @package _global_
    # python -m nnbench --config-dir my_conf +sweep=two_seeds
    hydra:
      mode: MULTIRUN
      sweeper:
        params:
          seed: 1,2
    """
)


def _packages_on_disk() -> set[str]:
    """nnbench's packages, its Hydra plugin, and every folder of conf/ as
    nnbench.conf.<group>."""
    found = {
        ".".join(i.parent.relative_to(ROOT).parts)
        for pattern in ("nnbench/**/__init__.py", "hydra_plugins/*/__init__.py")
        for i in ROOT.glob(pattern)
    }
    for folder in (ROOT / "conf").glob("**/"):  # conf itself first
        if "__pycache__" not in folder.parts:
            found.add(".".join(["nnbench", *folder.relative_to(ROOT).parts]))
    return found


def test_every_package_is_in_pyproject():
    """pyproject.toml lists the packages (conf/ is mapped into nnbench): a new subpackage
    missing there would be missing from every installed copy."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(setuptools["packages"]) == _packages_on_disk()
    assert setuptools["package-dir"] == {"nnbench.conf": "conf"}
    assert not (ROOT / "nnbench" / "conf").exists(), "one copy of the configs: conf/"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """nnbench installed, without its dependencies (those come from this environment)."""
    source, target = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("site")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    # a copy, so that the build leaves the checkout alone
    for name in ("nnbench", "conf", "hydra_plugins"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            target,
            source,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.skip(f"nnbench could not be built here: {proc.stderr.strip()[-300:]}")
    return target


def _nnbench(installed: Path, cwd: Path, *args: str):
    env = dict(os.environ, PYTHONPATH=str(installed), NNBENCH_AGENT="process")
    return subprocess.run(
        [sys.executable, "-P", "-m", "nnbench", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_an_installed_copy_runs_a_users_own_experiment_and_sweep(installed, tmp_path):
    work = tmp_path / "study"
    (work / "my_conf" / "experiment").mkdir(parents=True)
    (work / "my_conf" / "sweep").mkdir()
    (work / "my_conf" / "experiment" / "tiny_xor.yaml").write_text(MY_EXPERIMENT)
    (work / "my_conf" / "sweep" / "two_seeds.yaml").write_text(MY_SWEEP)

    where = subprocess.run(
        [sys.executable, "-P", "-c", "import nnbench.conf as c; print(c.__file__)"],
        cwd=work,
        env=dict(os.environ, PYTHONPATH=str(installed)),
        capture_output=True,
        text=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed), where.stdout + where.stderr

    proc = _nnbench(
        installed, work, "--config-dir", "my_conf", "+experiment=tiny_xor", "tracking=none"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "xor, MLP 2-3-1" in proc.stdout and "completed 2 epochs" in proc.stdout

    proc = _nnbench(
        installed,
        work,
        "--config-dir",
        "my_conf",
        "+experiment=tiny_xor",
        "+sweep=two_seeds",
        "tracking=none",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("completed 2 epochs") == 2, proc.stdout
    assert sorted((work / "outputs" / "multirun").glob("*/*/[01]")), "two job folders"

    # Hydra finds the installed launcher plugin beside its own.
    proc = _nnbench(
        installed,
        work,
        "--config-dir",
        "my_conf",
        "+experiment=tiny_xor",
        "+sweep=two_seeds",
        "tracking=none",
        "hydra/launcher=stacked",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Launching 2 jobs stacked: 2 jobs in 1 stack" in proc.stdout, proc.stdout
    assert proc.stdout.count("completed 2 epochs") == 2, proc.stdout

    # The installed configs are all there too, found without the user's folder.
    proc = _nnbench(
        installed, work, "+experiment=xor_perceptron", "trainer.epochs=1", "tracking=none"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
