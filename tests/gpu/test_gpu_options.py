"""``trainer.cuda_graph`` and ``backend.tf32``: in the config (and so in the run's params),
refused with one line and exit status 2 where the backend cannot honour them. Hydra is
needed here (a GPU machine without it skips these, with the reason)."""

from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("hydra", reason="the config tests need Hydra (pip install nnbench)")

from hydra import compose, initialize_config_module  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from nnbench import config  # noqa: E402
from tests.cli_helpers import run_nnbench  # noqa: E402


def compose_cfg(*overrides: str):
    config.register()
    with initialize_config_module("nnbench.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_both_keys_default_to_off_and_land_in_the_resolved_config():
    cfg = compose_cfg()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["trainer"]["cuda_graph"] is False
    assert resolved["backend"]["tf32"] is False
    cfg = compose_cfg("backend=cupy", "backend.tf32=true", "trainer.cuda_graph=true")
    config.check(cfg)  # a GPU backend takes both
    assert cfg.backend.tf32 is True and cfg.trainer.cuda_graph is True


@pytest.mark.parametrize(
    "key, message",
    [
        ("trainer.cuda_graph", "CUDA graphs need backend=cupy; this run has backend=numpy"),
        ("backend.tf32", "TF32 is a GPU format: it needs backend=cupy; this run has backend=numpy"),
    ],
)
def test_gpu_options_on_numpy_are_refused_by_the_check(key, message):
    cfg = compose_cfg(f"{key}=true")
    with pytest.raises(ValueError) as info:
        config.check(cfg)
    assert str(info.value) == f"Invalid {key}: True ({message})"


def test_cuda_graph_on_numpy_exits_2_with_one_line(tmp_path):
    proc = run_nnbench(tmp_path, "trainer.cuda_graph=true", "trainer.epochs=1")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "nnbench: error: Invalid trainer.cuda_graph: True (CUDA graphs need backend=cupy; "
        "this run has backend=numpy)"
    ]


@pytest.mark.skipif(
    importlib.util.find_spec("cupy") is not None, reason="CuPy is installed: auto may pick it"
)
def test_cuda_graph_when_auto_falls_back_to_numpy_exits_2(tmp_path):
    proc = run_nnbench(tmp_path, "backend=auto", "trainer.cuda_graph=true", "trainer.epochs=1")
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("nnbench: error: Invalid trainer.cuda_graph: True (")
    assert "backend=cupy" in last
