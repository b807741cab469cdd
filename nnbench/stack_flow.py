"""The flow of a stack of jobs (``hydra/launcher=stacked``), top to bottom (`run_stack`):

1. each job is checked, its tracking prepared and an earlier run of it reused, as
   `nnbench.flow.run_job` does; a job with an invalid config is left out, with its line;
2. the jobs still to do are built on one backend, each dataset loaded once per seed;
3. their runs are opened in one batch through the tracking agent (every one exists before
   training starts), and the stack trains as one batched model (`nnbench.stack.fit_stack`);
4. each member is recorded, said and scored the moment it ends (diverged, stopped early or
   done), exactly as its solo run would be: final and test metrics, outcome, artifacts, its
   job line, the objective Hydra's sweepers minimize.

Ctrl-C or SIGTERM ends every unfinished member KILLED, a crash ends them FAILED with the
message (the batch of runs does, as it closes); what they logged is kept. The config is
read here and in the launcher only.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from omegaconf import DictConfig

from nnbench import config as schema
from nnbench import tracking
from nnbench.errors import BackendUnavailableError
from nnbench.flow import (
    RunResult,
    check_store,
    close_record,
    earlier_run,
    initial_scores,
    prepare_tracking,
    record_unavailable,
    run_start,
    tested,
)
from nnbench.hydra_job import job_line, objective, skipped_line
from nnbench.interrupt import sigterm_as_interrupt
from nnbench.parts import Parts, build, load, make_backend
from nnbench.progress import make_stack_progress
from nnbench.stack import fit_stack
from nnbench.tracking import Job, Recorder
from nnbench.train import FitResult
from nnbench.user_errors import describe


@dataclass
class Member:
    """A job of the stack that trains: its config, its job, and once built, what it trains
    and the recorder of its run."""

    cfg: DictConfig
    job: Job
    parts: Parts | None = None
    recorder: Recorder | None = None
    initial: dict = field(default_factory=dict)
    ended: bool = False


def run_stack(cfgs: list[DictConfig], jobs: list[Job], label: str = "stack") -> list:
    """Run the jobs of one stack; for each, the objective it returns, or the exception of a
    job whose config is invalid (the launcher reports it once the sweep is done)."""
    outcomes: list = [None] * len(cfgs)
    members: dict[int, Member] = {}
    for index, (cfg, job) in enumerate(zip(cfgs, jobs, strict=True)):
        try:
            prepared = prepare(cfg, job)
        except Exception as exc:
            message = describe(exc)
            if message is None:
                raise
            print(f"[job {job.num}] {job.label}: not run: {message}", flush=True)
            outcomes[index] = exc
            continue
        if isinstance(prepared, Member):
            members[index] = prepared
        else:
            outcomes[index] = prepared
    if members:
        for index, value in train_members(list(members.values()), label).items():
            outcomes[list(members)[index]] = value
    return outcomes


def prepare(cfg: DictConfig, job: Job) -> Member | float:
    """Check the job and prepare its tracking; the objective of an earlier run of it when
    the sweep is resumed (its line says so), else the member to train."""
    schema.check(cfg)
    job = prepare_tracking(cfg, job)
    done = earlier_run(cfg, job)
    if done is not None:
        outcome = done.data.tags[tracking.OUTCOME_TAG]
        print(skipped_line(job, outcome, done.info.run_id), flush=True)
        return objective(outcome, done.data.metrics)
    return Member(cfg, job)


def train_members(members: list[Member], label: str) -> dict[int, float]:
    """Build, record and train the members as one stack; their objectives by position."""
    first = members[0].cfg
    try:
        backend = make_backend(first.backend)
    except BackendUnavailableError as exc:
        return {k: record_unavailable(m.cfg, m.job, str(exc)) for k, m in enumerate(members)}
    build_members(members, backend)
    outcomes: dict[int, float] = {}
    progress = make_stack_progress(first.trainer.progress, first.trainer.epochs, len(members))
    with sigterm_as_interrupt():  # from the runs' creation on, SIGTERM ends them KILLED
        # Leaving this block ends the runs still open: KILLED for Ctrl-C or SIGTERM, FAILED
        # with the message for a crash; what they logged is kept.
        with open_recorders(members, label):
            for member in members:
                _ = member.recorder.run_id  # every run exists before training starts
                if member.cfg.tracking.name != "none":
                    member.initial = initial_scores(member.parts)
            start = time.perf_counter()

            def on_epoch(k: int, record: dict) -> None:
                members[k].recorder.log_epoch(record)
                progress(record["epoch"], sum(not m.ended for m in members), label)

            def on_end(k: int, result: FitResult) -> None:
                progress.clear()
                outcomes[k] = finish(members[k], result, time.perf_counter() - start)

            try:
                stack_fit(members, on_epoch, on_end)
            finally:
                progress.close()
    return outcomes


def build_members(members: list[Member], backend) -> None:
    """Each member's parts on the shared backend; the dataset, which a stack's members share
    (`nnbench.stack_plan`), is loaded once per seed (the split depends on the seed)."""
    datasets: dict = {}
    for member in members:
        cfg = member.cfg
        if cfg.seed not in datasets:
            datasets[cfg.seed] = load(cfg.dataset, cfg.seed)
        member.parts = build(cfg, data=datasets[cfg.seed], backend=backend)


def open_recorders(members: list[Member], label: str):
    """Every member's run, created in one batch (tracking=none: recorders that record
    nothing). Each run carries
    the tag ``nnbench.stack`` (``stack 1/2, 24 members``): its time/epoch_s is the stack's.
    Returns the batch (`nnbench.tracking.batch.RecorderBatch`, a context manager that ends
    the runs still open), or a null context."""
    if members[0].cfg.tracking.name == "none":
        for member in members:
            member.recorder = tracking.NullRecorder()
        return contextlib.nullcontext()
    from nnbench.tracking.batch import RecorderBatch

    backend = members[0].parts.backend
    starts = [run_start(m.cfg, m.job, backend) for m in members]
    for start in starts:
        start["tags"]["nnbench.stack"] = f"{label}, {len(members)} members"
    check_store(starts[0])  # one store, one parent run for the whole stack
    batch = RecorderBatch.start(starts)
    for member, recorder in zip(members, batch.recorders, strict=True):
        member.recorder = recorder
    return batch


def stack_fit(members: list[Member], on_epoch, on_end) -> None:
    """`nnbench.stack.fit_stack` over the members, with the trainer settings they share."""
    cfg = members[0].cfg
    parts = [m.parts for m in members]
    fit_stack(
        [p.model for p in parts],
        parts[0].loss_fn,
        [p.optimizer for p in parts],
        [(p.data.x_train, p.data.y_train) for p in parts],
        validations=[(p.data.x_val, p.data.y_val) for p in parts],
        epochs=cfg.trainer.epochs,
        batch_size=cfg.trainer.batch_size,
        seeds=[m.cfg.seed for m in members],
        patience=cfg.trainer.patience,
        min_delta=cfg.trainer.min_delta,
        callback=on_epoch,
        on_end=on_end,
    )


def finish(member: Member, result: FitResult, seconds: float) -> float:
    """What the solo run does once it has trained: test, record and end the run, say how it
    ended; the member's objective."""
    run: RunResult = tested(member.parts, result, seconds, member.initial)
    member.ended = True
    with tracking.recording(member.recorder):
        close_record(member.cfg, member.job, member.recorder, run)
    print(job_line(member.job, result.message, run.metrics), flush=True)
    return objective(result.outcome, run.metrics)
