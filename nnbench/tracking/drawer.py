"""Drawing apart: a process of the tracking agent's that draws a batch's artifacts (the
learning curves and the environment manifest, `nnbench.tracking.artifacts.draw_artifacts`)
on another core while the agent writes the runs to the store.

The members of a stack end together, so their artifacts are work left after the training;
a run's curves take about as long as the rest of its record there, and drawn beside it
they shorten what is left (by a quarter for 96 members on 2 cores), for the price of a
process start (about 0.4 s of a core, beside the runs' creation).

``python -m nnbench.tracking.drawer`` reads one JSON job a line on stdin (``{folder,
history, title, trainer, manifest}``) and answers each, in order, with ``{folder, error}``
(``error`` None when drawn). `Drawer` is the agent's side.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path


class Drawer:
    """The agent's side: jobs sent without waiting, their answers read when there."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nnbench.tracking.drawer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self._buffer = b""

    def submit(self, job: dict) -> bool:
        """Send a job; False when the drawer is gone."""
        try:
            self.proc.stdin.write(json.dumps(job).encode() + b"\n")
            self.proc.stdin.flush()
            return True
        except (OSError, ValueError):
            return False

    def answers(self, wait_s: float = 0.0) -> list[dict] | None:
        """The answers that have arrived (waiting up to ``wait_s`` for one); None when the
        drawer is gone."""
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + wait_s
        while True:
            ready = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]
            if not ready:
                return self._lines()
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self._buffer += chunk
            if b"\n" in self._buffer:
                return self._lines()

    def _lines(self) -> list[dict]:
        *lines, self._buffer = self._buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def close(self) -> None:
        """Close its stdin: it exits once done."""
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.close()
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdout.close()


def draw(job: dict) -> str | None:
    """Draw one job; the error, one line, or None."""
    from nnbench.tracking.artifacts import draw_artifacts

    try:
        draw_artifacts(
            Path(job["folder"]),
            history=job["history"],
            title=job["title"],
            trainer=job["trainer"],
            manifest=job["manifest"],
        )
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints must not corrupt the answers
    import io

    from nnbench.tracking.curves import draw_curves

    draw_curves([{"epoch": 1, "train/loss": 1.0}], io.BytesIO())  # matplotlib and its fonts
    for line in sys.stdin:
        if line.strip():
            job = json.loads(line)
            out.write(json.dumps({"folder": job["folder"], "error": draw(job)}) + "\n")
            out.flush()
    sys.stderr.flush()
    os._exit(0)  # skip matplotlib's teardown


if __name__ == "__main__":
    main()
