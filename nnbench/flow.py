"""The flow of one job of ``python -m nnbench``, top to bottom (`run_job`):

1. check the config, and prepare its tracking: the config hash and, in a tracked multirun,
   the sweep's parent run (`prepare_tracking`);
2. resume: a job that an earlier run of the same sweep already did is skipped (`earlier_run`);
3. a config with a bench section runs a benchmark job instead (`nnbench.bench.job`);
4. build the pieces (`nnbench.parts.build`: data, backend, model, loss, optimizer);
5. train with progress and the run's MLflow record (`train`, `open_recorder`,
   `close_record`): the run exists before training starts, and ends with the outcome;
6. say how it ended: a job line in a multirun, the summary of a single run; and return the
   objective Hydra's sweepers minimize.

The config (``cfg``) is read here and in the entry point only; everything called from here
takes plain values (docs/design.md, "The job flow of a sweep").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

from omegaconf import DictConfig, OmegaConf

import nnbench as nb
from nnbench import config as schema
from nnbench import tracking
from nnbench.backend import devices
from nnbench.bench.job import run_bench_job
from nnbench.errors import BackendUnavailableError
from nnbench.hydra_job import job_line, objective, run_summary, skipped_line
from nnbench.interrupt import sigterm_as_interrupt
from nnbench.parts import Parts, build
from nnbench.progress import make_progress
from nnbench.tracking import Job, Recorder
from nnbench.tracking.names import run_name
from nnbench.train import FitResult


@dataclass
class RunResult:
    """How a job's training went: what `fit` returned, the final metrics (the last epoch's
    and the test split's), the seconds it took, and the validation scores before training
    (the only finite ones of a run that diverges in its first epoch)."""

    parts: Parts
    result: FitResult
    metrics: dict
    seconds: float
    initial: dict = field(default_factory=dict)
    run_id: str | None = None  # the MLflow run, once recorded

    @property
    def model(self) -> nb.MLP:
        return self.parts.model

    @property
    def data(self):
        return self.parts.data


# ---------------------------------------------------------------------- the flow
def run_job(cfg: DictConfig, job: Job) -> float:
    """One job, from its config to its objective (the steps of the module's docstring)."""
    schema.check(cfg)
    job = prepare_tracking(cfg, job)
    done = earlier_run(cfg, job)
    if done is not None:  # resumed sweep: the earlier run stands for this job
        outcome = done.data.tags[tracking.OUTCOME_TAG]
        print(skipped_line(job, outcome, done.info.run_id), flush=True)
        return objective(outcome, done.data.metrics)
    if cfg.bench is not None:  # a benchmark job instead of training
        tracked = OmegaConf.to_container(cfg.tracking, resolve=True)
        return run_bench_job(OmegaConf.to_container(cfg.bench), cfg.seed, tracked, job)
    try:
        run = train(cfg, job)
    except BackendUnavailableError as exc:
        if not job.multirun:  # a single run: the user's mistake, one line and exit 2
            raise
        return record_unavailable(cfg, job, str(exc))
    if job.multirun:
        print(job_line(job, run.result.message, run.metrics), flush=True)
    else:
        print(run_summary(cfg, run, job.output_dir), flush=True)
    return objective(run.result.outcome, run.metrics)


def prepare_tracking(cfg: DictConfig, job: Job) -> Job:
    """``job`` with the config hash every tracked run carries and, in a tracked multirun,
    the sweep's parent run (nnbench.tracking.sweep.find_parent)."""
    from nnbench.tracking.resume import config_hash

    parent = None
    if cfg.tracking.name == "mlflow" and job.multirun:
        from nnbench.tracking.sweep import find_parent

        experiment = tracking.experiment_name(cfg.tracking.experiment, job.choices)
        parent = find_parent(job.sweep_dir, cfg.tracking.uri, experiment)
    hashed = config_hash(OmegaConf.to_container(cfg, resolve=True))
    return replace(job, config_hash=hashed, parent=parent)


def earlier_run(cfg: DictConfig, job: Job):
    """The MLflow run that already did this multirun job with the same config, or None
    when the job must run (a single run, tracking off, tracking.resume=false)."""
    if job.parent is None or not cfg.tracking.resume:
        return None
    from nnbench.tracking import resume

    client = tracking.store.client(job.parent["uri"])
    return resume.reuse(client, job.parent, job.config_hash, job.num)


# ---------------------------------------------------------------------- train
def fit_and_test(cfg: DictConfig, parts: Parts, on_epoch, before: bool = False) -> RunResult:
    """Train, then evaluate on the test split unless training diverged. With ``before``,
    the validation scores of the untrained network come first (``initial``): the last
    finite values of a run that diverges in its first epoch."""
    data = parts.data
    initial = initial_scores(parts) if before else {}
    start = time.perf_counter()
    result = nb.fit(
        parts.model,
        parts.loss_fn,
        parts.optimizer,
        (data.x_train, data.y_train),
        validation=(data.x_val, data.y_val),
        epochs=cfg.trainer.epochs,
        batch_size=cfg.trainer.batch_size,
        seed=cfg.seed,
        patience=cfg.trainer.patience,
        min_delta=cfg.trainer.min_delta,
        callback=on_epoch,
        cuda_graph=cfg.trainer.cuda_graph,
    )
    return tested(parts, result, time.perf_counter() - start, initial)


def initial_scores(parts: Parts) -> dict:
    """The untrained network's validation scores (``val/loss``, ``val/acc``)."""
    scores = nb.evaluate(parts.model, parts.loss_fn, parts.data.x_val, parts.data.y_val)
    return {f"val/{key}": value for key, value in scores.items()}


def tested(parts: Parts, result: FitResult, seconds: float, initial: dict) -> RunResult:
    """The job's `RunResult`: the last epoch's metrics and, unless training diverged, the
    test split's (``test/mse`` for regression, else ``test/loss`` and ``test/acc``)."""
    data = parts.data
    final = dict(result.history[-1]) if result.history else {}
    if result.outcome == "completed":
        test = nb.evaluate(parts.model, parts.loss_fn, data.x_test, data.y_test)
        if data.task == "regression":
            final["test/mse"] = test["loss"]
        else:
            final["test/loss"], final["test/acc"] = test["loss"], test["acc"]
    return RunResult(parts, result, final, seconds, initial)


def train(cfg: DictConfig, job: Job) -> RunResult:
    """Build the pieces, then train with progress and tracking."""
    if job.multirun:  # job n of a cupy sweep on GPU n mod <GPUs>
        devices.use_job_gpu(cfg.backend.name, job.num)
    parts = build(cfg)
    progress = make_progress(cfg.trainer.progress, cfg.trainer.epochs, job.multirun)
    with sigterm_as_interrupt():  # from the run's creation on, SIGTERM ends it KILLED
        recorder = open_recorder(cfg, job, parts.backend)
        # Train only once the run exists: a store that does not work stops us now, and the
        # tracking agent, done starting up, leaves the cores to the training it times.
        _ = recorder.run_id

        def on_epoch(record):
            progress(record)
            recorder.log_epoch(record)

        with tracking.recording(recorder):
            try:
                run = fit_and_test(cfg, parts, on_epoch, before=cfg.tracking.name != "none")
            finally:
                progress.close()
            close_record(cfg, job, recorder, run)
    run.run_id = recorder.run_id
    return run


# ---------------------------------------------------------------------- record
def open_recorder(cfg: DictConfig, job: Job, backend=None) -> Recorder:
    """The run's recorder: MLflow, through the tracking agent (a child of the sweep's parent
    run in a multirun), or a recorder that records nothing for tracking=none. ``backend``
    is None for a job whose backend cannot run here."""
    if cfg.tracking.name == "none":
        return tracking.NullRecorder()
    from nnbench.tracking.agent_client import AgentRecorder

    start = run_start(cfg, job, backend)
    check_store(start)
    return AgentRecorder.start(**start)


def run_start(cfg: DictConfig, job: Job, backend=None) -> dict:
    """What creates the job's MLflow run: its store, experiment, name, params and tags
    (`AgentRecorder.start`'s arguments)."""
    parent = job.parent
    params, _ = _params(cfg)
    tags = {
        "nnbench.backend": backend.name if backend else cfg.backend.name,
        "nnbench.device": backend.device if backend else "unavailable",
        "nnbench.dtype": backend.dtype_name if backend else cfg.backend.dtype,
        "nnbench.dataset": cfg.dataset.name,
        **tracking.job_tags(job),
    }
    return {
        "uri": parent["uri"] if parent else tracking.resolve_uri(cfg.tracking.uri),
        "experiment": tracking.experiment_name(cfg.tracking.experiment, job.choices),
        "run_name": run_name(list(job.changed), (parent or {}).get("swept")),
        "params": params,
        "tags": tags,
        "parent": parent,
    }


def check_store(start: dict) -> None:
    """A server that is down, a store file that is not a database or a folder that cannot
    be written: one line now, before training, not minutes of MLflow's retries later."""
    if tracking.store.is_server(start["uri"]):
        tracking.store.check_server(start["uri"])
    else:
        tracking.store.check_store(start["uri"])


def _params(cfg: DictConfig) -> tuple[dict, dict]:
    """The run's params, and what did not fit in MLflow's params (logged as an artifact)."""
    from nnbench.tracking.params import to_params

    return to_params(OmegaConf.to_container(cfg, resolve=True))


def record_unavailable(cfg: DictConfig, job: Job, reason: str) -> float:
    """A multirun job whose backend cannot run on this machine: its run ends FAILED with
    the reason, its line says why, and the sweep goes on with its other jobs (a single run
    is a user mistake instead: one line, exit status 2)."""
    from nnbench.bench.job import UNAVAILABLE, record_unavailable

    if cfg.tracking.name != "none":
        with sigterm_as_interrupt():
            record_unavailable(open_recorder(cfg, job), reason)
    print(f"[job {job.num}] {job.label}: {UNAVAILABLE}: {reason}", flush=True)
    return math.inf


def close_record(cfg: DictConfig, job: Job, recorder: Recorder, run: RunResult) -> None:
    """Final metrics, the outcome, and the artifacts."""
    result = run.result
    recorder.log_metrics(
        {k: v for k, v in run.metrics.items() if k.startswith("test/")}, result.epochs
    )
    tags = {tracking.OUTCOME_TAG: result.outcome}
    if result.diverged_at is not None:
        tags["nnbench.diverged_at"] = result.message.removeprefix("diverged at ")
        recorder.log_metrics(diverged_metrics(result, run.initial), result.epochs)
    recorder.set_tags(tags)
    if cfg.tracking.name == "none":
        return
    from nnbench.tracking.artifacts import log_run_artifacts

    log_run_artifacts(
        recorder,
        config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
        hydra_dir=job.hydra_dir,
        overflow=_params(cfg)[1],
        run=run,
        title=job.label,
    )


def diverged_metrics(result: FitResult, initial: dict) -> dict:
    """What a diverged run shows in the UI's comparisons, at the step of its last finite
    epoch: when it diverged (``diverged/epoch``, ``diverged/step`` within that epoch) and,
    when it diverged in its first epoch, the validation scores it had before training (its
    only finite ones; later epochs' scores are logged already)."""
    epoch, step = result.diverged_at
    metrics = {"diverged/epoch": epoch, "diverged/step": step}
    return {**metrics, **(initial if result.epochs == 0 else {})}
