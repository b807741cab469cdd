"""The environment manifest: every installed package, the git state (or the commit the Docker
image was built from), and the GPUs nvidia-smi sees."""

from __future__ import annotations

import importlib.metadata
import stat

from nnbench.manifest import environment_manifest, git_state

SMI_OUTPUT = "NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB\nNVIDIA L4, 550.54.15, 23034 MiB\n"


def test_every_installed_package_under_its_normalized_name():
    packages = environment_manifest()["packages"]
    assert packages["numpy"] == importlib.metadata.version("numpy")
    assert packages["hydra-core"] == importlib.metadata.version("hydra-core")
    assert packages["threadpoolctl"] == importlib.metadata.version("threadpoolctl")
    assert list(packages) == sorted(packages)
    assert all(name == name.lower() and "_" not in name for name in packages)


def test_git_state_outside_a_checkout_falls_back_to_the_image_build_args(tmp_path, monkeypatch):
    monkeypatch.delenv("NNBENCH_GIT_COMMIT", raising=False)
    monkeypatch.delenv("NNBENCH_GIT_DIRTY", raising=False)
    assert git_state(tmp_path) == {}
    monkeypatch.setenv("NNBENCH_GIT_COMMIT", "abc123")
    assert git_state(tmp_path) == {"commit": "abc123"}  # dirtiness unknown: not claimed
    monkeypatch.setenv("NNBENCH_GIT_DIRTY", "true")
    assert git_state(tmp_path) == {"commit": "abc123", "dirty": True}
    monkeypatch.setenv("NNBENCH_GIT_DIRTY", "false")
    assert git_state(tmp_path) == {"commit": "abc123", "dirty": False}


def test_gpus_from_nvidia_smi(tmp_path, monkeypatch):
    """A stand-in nvidia-smi on PATH prints two GPUs in the CSV format queried."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\nprintf '{SMI_OUTPUT}'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert environment_manifest()["gpus"] == [
        {"name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15", "memory": "81559 MiB"},
        {"name": "NVIDIA L4", "driver": "550.54.15", "memory": "23034 MiB"},
    ]


def test_no_gpus_key_without_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "gpus" not in environment_manifest()
