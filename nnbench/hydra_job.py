"""What a run knows about its Hydra job, as plain values, and the one line a multirun job
prints: what it changed and how it ended (or that it was skipped, already done); the
summary a single run ends with."""

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


def run_summary(cfg, run, output_dir: str) -> str:
    """What a single run prints at its end (``run``: a `nnbench.flow.RunResult`): what
    trained, how it ended, where it is recorded and written."""
    from nnbench import tracking

    result, model, backend = run.result, run.model, run.parts.backend
    sizes = "-".join(str(s) for s in [model.in_features, *model.hidden, model.out_features])
    lines = [
        f"nnbench: {cfg.dataset.name}, MLP {sizes} {model.activation}, "
        f"{cfg.optimizer.name} lr={cfg.optimizer.lr}, {backend.name} {backend.dtype_name} "
        f"({backend.device})",
        f"{result.message} in {run.seconds:.2f} s",
    ]
    if run.metrics:
        lines.append("  " + format_metrics(run.metrics))
    if cfg.tracking.name == "none":
        lines.append("not recorded (tracking=none)")
    else:
        uri = tracking.resolve_uri(cfg.tracking.uri)
        lines.append(f"recorded: run {run.run_id} in {uri}")
        lines.append(f"look at it: {tracking.ui_command(uri)}")
        lines += _agent_lines()
    lines.append(f"outputs: {output_dir}")
    return "\n".join(lines)


def _agent_lines() -> list[str]:
    """A line saying that this run started the warm tracking agent, and how to stop it."""
    from nnbench.tracking import agent_client, daemon

    if agent_client.started_agent is None:
        return []
    idle = daemon.idle_seconds()
    idle = f"{idle / 60:g} idle minutes" if idle >= 60 else f"{idle:g} idle seconds"
    return [
        f"tracking agent: started in the background for the next runs; it stops after"
        f" {idle} (now: python -m nnbench.tracking.daemon --stop)"
    ]
