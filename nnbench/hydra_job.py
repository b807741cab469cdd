"""What a run knows about its Hydra job, as plain values, and the one line a multirun job
prints: what it changed and how it ended (or that it was skipped, already done)."""

from __future__ import annotations

import math
from pathlib import Path

from omegaconf import OmegaConf

from nnbench.tracking.job import Job

LINE_METRICS = ("train/loss", "val/loss", "val/acc", "test/acc", "test/mse")


def job_info() -> Job:
    """The current Hydra job: multirun or not, its number, overrides and folders."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    overrides = list(hydra_cfg.overrides.task)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    # The label names what the job changed: not the +sweep/+experiment switch, not where
    # it is recorded (tracking.uri=http://... would clutter every run name).
    hidden = ("+sweep=", "+experiment=", "tracking.", "tracking=", "hydra/", "hydra.")
    changed = [o for o in overrides if not o.startswith(hidden)]
    output_dir = hydra_cfg.runtime.output_dir
    subdir = hydra_cfg.output_subdir
    return Job(
        multirun=multirun,
        num=hydra_cfg.job.num if multirun else None,
        overrides=tuple(overrides),
        changed=tuple(changed),
        choices=OmegaConf.to_container(hydra_cfg.runtime.choices),
        sweep_dir=str(hydra_cfg.sweep.dir),
        output_dir=output_dir,
        hydra_dir=str(Path(output_dir) / subdir) if subdir else None,
    )


def format_metrics(metrics: dict) -> str:
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in LINE_METRICS if k in metrics)


def job_line(job: Job, message: str, metrics: dict) -> str:
    """One line per multirun job: what it changed, how it ended, its final metrics."""
    return f"[job {job.num}] {job.label}: {message}  {format_metrics(metrics)}"


def skipped_line(job: Job, outcome: str, run_id: str) -> str:
    """``[job 2] optimizer.lr=0.1: skipped, already completed in run <id>``."""
    return f"[job {job.num}] {job.label}: skipped, already {outcome} in run {run_id}"


def objective(outcome: str, metrics: dict) -> float:
    """The value a sweeper minimizes: validation loss, +inf for a diverged run."""
    value = metrics.get("val/loss", math.inf)
    return value if outcome == "completed" and math.isfinite(value) else math.inf
