"""Whole sweeps timed from the outside: the wall time of ``python -m nnbench +sweep=lr ...``,
each sample its own process, launchers and tracking modes interleaved round by round.

Every command runs in one scratch folder: its SQLite store (``outputs/mlflow.db``) is
created there, and the warm tracking agent started (``NNBENCH_AGENT_DIR`` in that folder), by
an unmeasured first run of each variant, so every tracked sample finds the store and the
agent as a user's second sweep does. Each sample writes its own sweep folder and records
fresh runs (``tracking.resume=false``: nothing is skipped as already done).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnbench.bench.idle import wait_idle
from nnbench.bench.process import PACKAGE_ROOT

# launcher name -> Hydra overrides
LAUNCHERS = {
    "basic": (),
    "joblib": ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
    "stacked": ("hydra/launcher=stacked",),
}
LAUNCHER_LABELS = {"basic": "basic", "joblib": "joblib n_jobs=2", "stacked": "stacked"}
TRACKING = {"tracked": "mlflow", "untracked": "none"}
WEIGHT_DECAYS = (0.0, 1e-4, 1e-3, 1e-2)


def lr_values(points: int = 24) -> list[float]:
    """``points`` learning rates log-spaced from 1e-4 to 10**0.5 (3.16), 4 digits each."""
    return [float(f"{v:.4g}") for v in np.logspace(-4, 0.5, points)]


@dataclass(frozen=True)
class Grid:
    """A sweep's grid: Hydra sweeper params, key -> values."""

    name: str
    params: tuple  # ((key, (values, ...)), ...)

    @property
    def jobs(self) -> int:
        return int(np.prod([len(values) for _, values in self.params]))

    def override(self) -> str:
        """``++hydra.sweeper.params={optimizer.lr:"1e-4,..."}``: the whole grid, one argument
        (``++``: the sweep config's own params are replaced key by key, and keys added)."""
        items = [f'{key}:"{",".join(repr(v) for v in values)}"' for key, values in self.params]
        return "++hydra.sweeper.params={" + ",".join(items) + "}"


def lr_grid(points: int = 24) -> Grid:
    return Grid(f"{points}-point lr", (("optimizer.lr", tuple(lr_values(points))),))


def lr_wd_grid(points: int = 24) -> Grid:
    lrs = ("optimizer.lr", tuple(lr_values(points)))
    name = f"{points * len(WEIGHT_DECAYS)}-point lr x weight_decay"
    return Grid(name, (lrs, ("optimizer.weight_decay", WEIGHT_DECAYS)))


def sweep_command(grid: Grid, launcher: str, tracking: str, sweep_dir: Path, epochs: int):
    """The argv of one whole sweep: the lr sweep's config (plain SGD, digits, the default
    model) with ``grid`` as its sweeper params."""
    return [
        sys.executable,
        "-m",
        "nnbench",
        "+sweep=lr",
        grid.override(),
        *LAUNCHERS[launcher],
        f"tracking={TRACKING[tracking]}",
        "tracking.resume=false",
        "dataset=digits",
        f"trainer.epochs={epochs}",
        f"hydra.sweep.dir={sweep_dir}",
    ]


def sweep_env(folder: Path) -> dict:
    """This environment with this nnbench importable first, the data cache and the tracking
    agent in ``folder``, and no store or Hydra setting inherited from the caller."""
    drop = ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR", "NNBENCH_AGENT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    env["NNBENCH_DATA"] = str(folder / "cache")
    env["NNBENCH_AGENT_DIR"] = str(folder / "agent")
    env["NNBENCH_AGENT_IDLE_S"] = "3600"  # warm for the whole benchmark; stopped at its end
    return env


@dataclass
class Entry:
    """One variant of a grid: a launcher and a tracking mode, and its samples."""

    launcher: str
    tracking: str
    seconds: list = field(default_factory=list)  # one per round, None when it failed
    failed: str | None = None  # why it has no (more) samples

    @property
    def label(self) -> str:
        return f"{self.tracking} {LAUNCHER_LABELS[self.launcher]}"


class SweepTimer:
    """Runs a grid's variants in a scratch folder, interleaved, and keeps their times."""

    def __init__(self, folder: Path, epochs: int, max_wait: float = 0.0, log=sys.stderr):
        self.folder, self.epochs, self.max_wait, self.log = folder, epochs, max_wait, log
        (folder / "agent").mkdir(mode=0o700, parents=True, exist_ok=True)
        self.env = sweep_env(folder)
        self.count, self.timed, self.busy = 0, 0, 0  # sweeps run, timed, timed while busy

    def run_once(self, grid: Grid, entry: Entry) -> float:
        """Seconds of one whole sweep; raises RuntimeError with its last error line, or when
        it left fewer job folders than the grid has jobs."""
        self.count += 1
        sweep_dir = self.folder / "sweeps" / f"{self.count:03d}-{entry.launcher}-{entry.tracking}"
        argv = sweep_command(grid, entry.launcher, entry.tracking, sweep_dir, self.epochs)
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=self.folder, env=self.env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(last_line(proc.stderr) or f"exit status {proc.returncode}")
        done = sum(1 for p in sweep_dir.iterdir() if p.name.isdigit()) if sweep_dir.is_dir() else 0
        if done != grid.jobs:  # a sweep that skipped jobs would look fast
            raise RuntimeError(f"{done} job folders in {sweep_dir} for {grid.jobs} jobs")
        return elapsed

    def warm_up(self, grid: Grid, entries: list[Entry]) -> None:
        """One unmeasured sweep of each variant: the store, the agent, the page cache; a
        variant that cannot run here (a launcher not installed) is marked failed."""
        small = Grid(grid.name, tuple((k, v[:2]) for k, v in grid.params))
        for entry in entries:
            try:
                self.run_once(small, entry)
            except RuntimeError as exc:
                entry.failed = str(exc)

    def measure(self, grid: Grid, entries: list[Entry], rounds: int) -> None:
        """``rounds`` samples of every variant, in alternating order (A B C, C B A, ...)."""
        for r in range(rounds):
            order = entries if r % 2 == 0 else entries[::-1]
            for entry in order:
                if entry.failed:
                    continue
                self.busy += not wait_idle(self.max_wait)
                self.timed += 1
                try:
                    entry.seconds.append(self.run_once(grid, entry))
                except RuntimeError as exc:
                    entry.failed = f"round {r + 1}: {exc}"
            print(f"  {grid.name}: round {r + 1}/{rounds} done", file=self.log, flush=True)

    def stop_agent(self) -> None:
        from nnbench.tracking import daemon

        daemon.stop(self.folder / "agent")


def make_entries(launchers, trackings) -> list[Entry]:
    return [Entry(launcher, tracking) for tracking in trackings for launcher in launchers]


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
