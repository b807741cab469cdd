"""Where runs go: a tracking server that is down is a clear, quick user error; tracking=none
writes no store."""

from __future__ import annotations

import socket
import time

from .conftest import nnbench


def unused_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_down_is_a_quick_one_line_error(tmp_path):
    uri = f"http://127.0.0.1:{unused_port()}"
    start = time.monotonic()
    proc = nnbench(tmp_path, f"tracking.uri={uri}", "trainer.epochs=1", timeout=60)
    elapsed = time.monotonic() - start
    assert elapsed < 30
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nnbench: error: ")
    assert uri in lines[0] and "not reachable" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


def test_tracking_none_writes_no_store(tmp_path):
    proc = nnbench(tmp_path, "tracking=none", "trainer.epochs=1")
    assert proc.returncode == 0, proc.stderr
    assert "not recorded (tracking=none)" in proc.stdout
    assert not list(tmp_path.rglob("mlflow.db*"))
    assert not list(tmp_path.rglob("mlartifacts"))
    assert not (tmp_path / "mlruns").exists()
