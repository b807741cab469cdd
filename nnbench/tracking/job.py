"""A job as its record names it: which job of which run, what it changed, where it writes
and, once tracking is prepared for it, its config hash and its sweep's parent run. Made from
Hydra's job by `nnbench.hydra_job.job_info`; read by the training flow, the benchmark job
and the tags every tracked job carries (`nnbench.tracking.job_tags`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    multirun: bool
    num: int | None  # the job's number in a multirun, None for a single run
    overrides: tuple[str, ...]  # the command line's overrides, as typed
    changed: tuple[str, ...]  # those that change the result (not +sweep=, tracking, hydra)
    choices: dict  # Hydra's group choices: sweep, experiment, optimizer, ...
    sweep_dir: str
    output_dir: str
    hydra_dir: str | None  # the job's .hydra folder, when Hydra writes one
    config_hash: str = ""  # nnbench.tracking.resume.config_hash of the resolved config
    parent: dict | None = None  # the sweep's parent run (nnbench.tracking.sweep.find_parent)

    @property
    def label(self) -> str:
        """What the job changed, as its console line names it (``optimizer.lr=0.1``)."""
        return " ".join(self.changed) or "defaults"
