"""A Docker engine for tests/test_docker_engine.py: found running, or started and stopped.

``engine()`` yields a ``Docker`` (the CLI to call, with the environment that makes it build
with BuildKit) once ``docker info`` answers. When no engine answers and this is root with
Debian's docker.io installed, it starts ``dockerd`` (its own log in a temporary folder) and
stops it again at the end: SIGTERM, and the engine stops the containerd it started. Where no
engine can start, the tests are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_S = 60
NO_DOCKERD = "no Docker engine here and none to start: apt-get install docker.io (as root)"


@dataclass
class Docker:
    cli: str  # a docker CLI that builds with BuildKit
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 600, check: bool = True, **kwargs):
        """``docker ARGS`` (text output captured); fails the test on a non-zero exit when
        ``check``."""
        proc = subprocess.run(
            [self.cli, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )
        if check and proc.returncode != 0:
            pytest.fail(f"docker {' '.join(args)}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
        return proc


def _dockerd_path() -> str | None:
    """dockerd on PATH, or where Debian's docker.io puts it (off a non-root user's PATH)."""
    return shutil.which("dockerd") or next(
        (p for p in ("/usr/sbin/dockerd", "/usr/bin/dockerd") if os.access(p, os.X_OK)), None
    )


def _answers(cli: str) -> bool:
    probe = subprocess.run([cli, "info"], capture_output=True, timeout=30)
    return probe.returncode == 0


def _buildkit_cli() -> str | None:
    """A docker CLI that builds with BuildKit: one with the buildx plugin, or a CLI older than
    23 (Debian bookworm's docker.io: 20.10), which has BuildKit built in (DOCKER_BUILDKIT=1).
    The one on PATH first, then Debian's."""
    for cli in dict.fromkeys(filter(None, (shutil.which("docker"), "/usr/bin/docker"))):
        if not os.access(cli, os.X_OK):
            continue
        if subprocess.run([cli, "buildx", "version"], capture_output=True).returncode == 0:
            return cli
        version = subprocess.run(
            [cli, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True
        ).stdout.strip()
        major = version.split(".")[0]
        if major.isdigit() and int(major) < 23:
            return cli
    return None


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM dockerd (it stops its containers and its containerd), SIGKILL if it hangs."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


@contextlib.contextmanager
def _dockerd(cli: str, dockerd: str):
    """dockerd started in the background, until it answers; stopped on exit."""
    if os.geteuid() != 0:
        pytest.skip("no Docker engine is running, and only root can start dockerd here")
    folder = Path(tempfile.mkdtemp(prefix="nnbench-dockerd-"))
    log = folder / "dockerd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([dockerd], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(cli):
            if proc.poll() is not None or time.monotonic() > deadline:
                last = log.read_text(errors="replace").strip().splitlines()[-3:]
                pytest.skip(f"dockerd did not start: {' | '.join(last) or 'no output'}")
            time.sleep(0.5)
        yield
    finally:
        _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def engine():
    """A ``Docker`` for the running engine, or for one started here (and stopped after)."""
    any_cli = shutil.which("docker") or "/usr/bin/docker"
    running = os.access(any_cli, os.X_OK) and _answers(any_cli)
    dockerd = None if running else _dockerd_path()
    if not running and dockerd is None:
        pytest.skip(NO_DOCKERD)
    cli = _buildkit_cli()
    if cli is None:
        pytest.skip(
            "no docker CLI here builds with BuildKit: install the buildx plugin, "
            "or use Debian's docker.io (apt-get install docker.io)"
        )
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    if running:
        yield Docker(cli, env)
        return
    with _dockerd(cli, dockerd):
        yield Docker(cli, env)
