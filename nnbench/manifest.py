"""The environment a run ran in: Python, packages, BLAS, CPU, GPU, and the git state."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from nnbench import machine


def _canonical(name: str) -> str:
    """PEP 503 name: ``Hydra_Core`` -> ``hydra-core``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def _package_versions() -> dict[str, str]:
    """Every installed distribution (name -> version, sorted): what `pip freeze` would pin.
    Read once a process (about 80 ms)."""
    versions = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            versions[_canonical(name)] = dist.version
    return dict(sorted(versions.items()))


def _blas() -> list[dict]:
    """The loaded thread pools, from the controller the backend made once per process."""
    from nnbench.backend._blas import thread_pools

    controller = thread_pools()
    return [] if controller is None else machine.thread_pools(controller)


def git_state(cwd=None) -> dict[str, object]:
    """Commit and dirtiness of the git checkout holding ``cwd`` (or nnbench), if any; else
    what the Docker image was built from ($NNBENCH_GIT_COMMIT, $NNBENCH_GIT_DIRTY)."""
    cwd = cwd or Path(__file__).resolve().parent

    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return _image_git_state()
    return {"commit": commit, "dirty": dirty}


def _image_git_state() -> dict[str, object]:
    commit = os.environ.get("NNBENCH_GIT_COMMIT", "").strip()
    if not commit:
        return {}
    state: dict[str, object] = {"commit": commit}
    dirty = os.environ.get("NNBENCH_GIT_DIRTY", "").strip().lower()
    if dirty in ("true", "false"):
        state["dirty"] = dirty == "true"
    return state


def _nvidia_gpus() -> list[dict[str, str]]:
    """The GPUs and driver that ``nvidia-smi`` sees (none without it), whatever the backend."""
    if shutil.which("nvidia-smi") is None:
        return []
    query = ["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    try:
        out = subprocess.run(
            ["nvidia-smi", *query], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    keys = ("name", "driver", "memory")
    return [
        dict(zip(keys, (f.strip() for f in line.split(",")), strict=False))
        for line in out.splitlines()
    ]


def environment_manifest(backend=None) -> dict:
    """Everything needed to tell two machines apart when their numbers differ."""
    manifest = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": machine.cpu_model(),
        "cpu_count": os.cpu_count(),
        "packages": _package_versions(),
        "blas": _blas(),
        "env": machine.machine_variables(),
        "git": git_state(),
    }
    gpus = _nvidia_gpus()
    if gpus:
        manifest["gpus"] = gpus
    if backend is not None:
        manifest.update(trainer_manifest(backend))
    return manifest


def trainer_manifest(backend) -> dict:
    """The part of the manifest only the process that trained can tell: its backend, the
    BLAS it ran with, its thread settings and, on CuPy, the GPU and CUDA versions."""
    described = {
        "name": backend.name,
        "dtype": backend.dtype_name,
        "device": backend.device,
        "kernels": backend.kernels(),
    }
    return {
        "backend": described,
        "blas": _blas(),
        "env": machine.machine_variables(),
        **backend_extra(backend),
    }


def backend_extra(backend) -> dict:
    """GPU, driver and CUDA versions when the backend runs on CuPy."""
    xp = backend.xp
    if getattr(xp, "__name__", "") != "cupy":
        return {}
    runtime = xp.cuda.runtime
    return {
        "gpu": backend.device,
        "cuda_runtime": runtime.runtimeGetVersion(),
        "cuda_driver": runtime.driverGetVersion(),
    }
