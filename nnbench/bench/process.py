"""A benchmark worker seen from the process that drives it: a child Python process that
speaks `nnbench.bench.protocol` (its announcement first, then one answer line per request).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def child_env(env: dict | None = None) -> dict:
    """``env`` (by default this process's environment) with this nnbench importable first,
    whether it is installed or run from a checkout."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    return env


class WorkerProcess:
    """``python -m <module> <args>`` as a child process; `first` is its announcement (None
    when it exited without one)."""

    def __init__(self, module: str, args=(), env: dict | None = None, stderr=None, cwd=None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=cwd,
            env=child_env(env),
        )
        self.first = self.read()

    def read(self) -> dict | None:
        """The next line, parsed; None once the worker has exited."""
        line = self.proc.stdout.readline()
        return json.loads(line) if line else None

    def request(self, request: dict) -> dict | None:
        """Send ``request`` and return the answer (None if the worker exited instead)."""
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self, timeout: float = 30) -> None:
        """Ask the worker to exit (``exit``, then the end of its input); kill it if it has
        not within ``timeout`` seconds."""
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write('{"op": "exit"}\n')
                self.proc.stdin.flush()
            self.proc.stdin.close()
            self.proc.wait(timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            self.proc.stdout.close()
