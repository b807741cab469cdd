"""A benchmark job of ``python -m nnbench``: what runs instead of training when the config
has a bench section (``+bench=default``, and every job of ``+sweep=backend_vs_reference``).

The framework is measured in a worker process of its own (`nnbench.bench.measure`), so that
its libraries and thread pools never share a process with another framework's, nor with
this one's (Hydra, MLflow). With ``bench.threads`` set, the worker's BLAS and OpenMP pools
are limited to that many threads (environment variables and threadpoolctl); the
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE overrides are left as they are, and recorded.

The job records one MLflow run, a child of the sweep's parent run in a multirun: the bench
section and the seed as params; the result as ``bench/*`` metrics, named as
`nnbench.bench.track` names them; as tags the framework (``nnbench.framework``), the
threads asked for (``nnbench.threads``), the backend and device, and the machine the worker
reported (``nnbench.env.cpu``, ``nnbench.env.blas``, ``nnbench.env.blas_threads``, ...).

A framework that cannot run here (nnbench-cupy without CuPy or a GPU, torch-cuda without
CUDA, PyTorch or scikit-learn not installed):

- in a multirun, its job prints one line saying why (``unavailable: <reason>``) and its
  run ends FAILED with ``nnbench.outcome=failed`` and the reason in ``nnbench.error``
  (``unavailable here: backend=cupy: CuPy is not installed; ...``), as the record of a
  run has it (docs/design.md, "MLflow record of a run"). Nothing is raised: the other
  jobs go on and the multirun exits 0. The report ranks such a run after every measured
  one and shows the reason. A resumed sweep runs it again (only completed and diverged
  runs count as done), so the same sweep repeated on a GPU machine fills it in.
- in a single run, it is a user mistake, like ``backend=cupy`` without a GPU: one line,
  exit status 2, nothing recorded.
"""

from __future__ import annotations

import math
import os
import tempfile

from nnbench import tracking
from nnbench.bench.flops import parse_sizes
from nnbench.bench.process import WorkerProcess
from nnbench.bench.track import split_result
from nnbench.errors import BackendUnavailableError
from nnbench.interrupt import sigterm_as_interrupt
from nnbench.machine import THREAD_VARIABLES, cpu_model
from nnbench.tracking.job import Job
from nnbench.tracking.run import ERROR_TAG, OUTCOME_TAG, close

UNAVAILABLE = "unavailable"  # how the job's console line starts when nothing could run
UNAVAILABLE_ERROR = "unavailable here: "  # how the run's nnbench.error starts then
REQUEST_KEYS = ("batch_size", "optimizer", "lr", "samples", "warmup", "min_sample_s", "floor")


def run_bench_job(settings: dict, seed: int, tracking_settings: dict, job: Job) -> float:
    """Measure ``settings["framework"]`` as the bench section ``settings`` says, record the
    run (``tracking_settings``: the tracking section; ``job`` with its parent run and config
    hash, `nnbench.flow.prepare_tracking`) and print the outcome. Returns
    the sweeper's objective: the median step time in ms, +inf when nothing was measured."""
    with sigterm_as_interrupt(), MeasureProcess(settings["framework"], settings["threads"]) as w:
        if w.unavailable and not job.multirun:
            raise BackendUnavailableError(w.unavailable)
        recorder = open_recorder(settings, seed, tracking_settings, job, w.env)
        result = None
        if w.unavailable:
            record_unavailable(recorder, w.unavailable)
        else:
            with tracking.recording(recorder):
                result = w.request(bench_request(settings, seed))
                record(recorder, result)
    if job.multirun:
        line = f"[job {job.num}] {job.label}: {outcome_text(result, w.unavailable)}"
        print(line, flush=True)
    else:
        print(summary(settings, result, recorder.run_id, tracking_settings), flush=True)
    return result["step_ms_median"] if result else math.inf


def bench_request(settings: dict, seed: int) -> dict:
    """The worker's ``bench`` request for the bench section ``settings``."""
    request = {key: settings[key] for key in REQUEST_KEYS}
    return {"op": "bench", "sizes": list(parse_sizes(settings["model"])), "seed": seed, **request}


def run_name(settings: dict) -> str:
    """``torch-cpu 784-256-256-10 B=256 sgd`` (and ``threads=1`` when set)."""
    name = f"{settings['framework']} {settings['model']} B={settings['batch_size']} "
    name += settings["optimizer"]
    return name + (f" threads={settings['threads']}" if settings["threads"] else "")


def open_recorder(settings: dict, seed: int, tracking_settings: dict, job: Job, env: dict):
    """The job's run (a child of the sweep's parent run in a multirun), RUNNING until the
    measurement is recorded; a recorder that records nothing for tracking=none."""
    if tracking_settings["name"] == "none":
        return tracking.NullRecorder()
    from nnbench.tracking.params import to_params

    parent = job.parent
    params, _ = to_params({"bench": settings, "seed": seed})
    machine = {f"nnbench.env.{k}": v for k, v in env.items() if v not in (None, "")}
    tags = {
        **(machine or {"nnbench.env.cpu": cpu_model()}),
        "nnbench.role": "bench",
        "nnbench.framework": settings["framework"],
        "nnbench.threads": settings["threads"] or "default",
        **tracking.job_tags(job),
    }
    return tracking.start_run(
        uri=parent["uri"] if parent else tracking.resolve_uri(tracking_settings["uri"]),
        experiment=tracking.experiment_name(tracking_settings["experiment"], job.choices),
        run_name=run_name(settings),
        params=params,
        tags={key: str(value) for key, value in tags.items()},
        parent=parent,
    )


def record(recorder, result: dict) -> None:
    """The measurement as bench/* metrics and tags."""
    _, metrics, tags = split_result(result)
    recorder.log_metrics(metrics, step=0)
    recorder.set_tags(tags)


def record_unavailable(recorder, reason: str) -> None:
    """End the run FAILED, outcome ``failed``, with why the framework cannot run here as its
    error; nothing is raised."""
    tags = {OUTCOME_TAG: "failed", ERROR_TAG: UNAVAILABLE_ERROR + reason}
    close(recorder, "FAILED", tags)


def outcome_text(result: dict | None, unavailable: str | None) -> str:
    """``completed  step 3.512 ms (IQR 0.041)  72,893 samples/s  ...`` or why not."""
    if result is None:
        return f"{UNAVAILABLE}: {unavailable}"
    parts = [
        f"step {result['step_ms_median']:.3f} ms (IQR {result['step_ms_spread']:.3f})",
        f"{result['samples_per_s']:,.0f} samples/s",
        f"{result['gflops']:.1f} GFLOP/s",
    ]
    if result.get("step_over_floor") is not None:
        parts.append(f"step/floor {result['step_over_floor']:.2f}")
    parts.append(f"peak host {result['peak_host_mb']:.0f} MiB")
    if result.get("device_mb") is not None:
        parts.append(f"device {result['device_mb']:.1f} MiB")
    return "completed  " + "  ".join(parts)


def summary(settings: dict, result: dict, run_id: str | None, tracking_settings: dict) -> str:
    """What a single bench run prints."""
    lr = f"lr={result['lr']}" if result.get("lr") is not None else ""
    lines = [
        f"nnbench bench: {settings['framework']} ({result['backend']} on {result['device']}), "
        f"MLP {result['model']} relu {result['dtype']}, B={result['batch_size']}, "
        f"{result['optimizer']} {lr}, threads {result.get('env.blas_threads')}",
        outcome_text(result, None),
    ]
    if run_id is None:
        lines.append("not recorded (tracking=none)")
    else:
        lines.append(f"recorded: run {run_id} in {tracking.resolve_uri(tracking_settings['uri'])}")
    return "\n".join(lines)


class MeasureProcess(WorkerProcess):
    """`nnbench.bench.measure` for one framework in a child process, limited to ``threads``
    BLAS/OpenMP threads when set. Its announcement says whether the framework runs here
    (``unavailable``: why not); leaving the ``with`` block always ends the process."""

    def __init__(self, framework: str, threads: int | None):
        self.framework = framework
        self._stderr = tempfile.TemporaryFile()
        args = [framework] + (["--threads", str(threads)] if threads else [])
        env = dict(os.environ)
        if threads:
            env.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
        super().__init__("nnbench.bench.measure", args, env=env, stderr=self._stderr)
        first = self._answer(self.first)
        self.unavailable: str | None = first.get("unavailable")
        self.env: dict = first.get("env", {})

    def _answer(self, answer: dict | None) -> dict:
        """``answer``, or an error with the tail of the worker's stderr if it exited."""
        if answer is None:
            status = self.proc.wait()
            self._stderr.seek(0)
            tail = self._stderr.read().decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(
                f"the {self.framework} worker exited with status {status}: " + " / ".join(tail)
            )
        return answer

    def request(self, request: dict) -> dict:
        response = self._answer(super().request(request))
        if "error" in response:
            raise RuntimeError(f"{self.framework}: {response['error']}")
        return response

    def close(self, timeout: float = 30) -> None:
        try:
            super().close(timeout)
        finally:
            self._stderr.close()

    def __enter__(self) -> MeasureProcess:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and self.proc.poll() is None:  # interrupted: stop it now
            self.proc.kill()
        self.close()
