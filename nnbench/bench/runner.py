"""`benchmark`: one model, batch size, backend and optimizer, measured every way the harness
knows, returned as a flat dict (MLflow takes it as ``bench/*`` metrics and params).

What is timed is the step `nnbench.fit` runs for each mini-batch: ``nb.train_step`` with
``validate=False`` on a batch already on the device and checked once, exactly as ``fit``
checks its dataset once. Nothing about it is special-cased for benchmarking.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

import nnbench as nb
from nnbench.bench.env import environment
from nnbench.bench.floor import GemmFloor
from nnbench.bench.flops import check_sizes, format_sizes, mlp_flops
from nnbench.bench.memory import device_mb, peak_host_mb, traced_peak_bytes
from nnbench.bench.target import TargetTask, time_to_accuracy
from nnbench.bench.timing import MIN_SAMPLES, Timing, time_steps
from nnbench.errors import invalid
from nnbench.train import train_epoch, train_step

# Every key `benchmark` returns (values are None where a measurement was not requested).
RESULT_KEYS = (
    "model", "batch_size", "backend", "device", "dtype", "optimizer", "lr",
    "step_ms_median", "step_ms_spread", "step_ms_min", "samples", "steps_per_sample",
    "samples_per_s", "flops_per_step", "gflops",
    "floor_ms", "floor_ms_spread", "step_over_floor",
    "peak_host_mb", "step_alloc_kb", "device_mb",
    "epoch_s", "epoch_rows",
    "time_to_target_s", "epochs_to_target", "target_acc", "target",
)  # fmt: skip

DEFAULT_LR = {"sgd": 0.01, "momentum": 0.01, "adam": 1e-3, "adamw": 1e-3}


def make_optimizer(name: str, model, lr: float | None = None):
    """An nnbench optimizer by name: sgd, momentum (SGD with 0.9), adam or adamw."""
    lr = DEFAULT_LR.get(name) if lr is None else lr
    factories = {
        "sgd": lambda: nb.SGD(model, lr=lr),
        "momentum": lambda: nb.SGD(model, lr=lr, momentum=0.9),
        "adam": lambda: nb.Adam(model, lr=lr),
        "adamw": lambda: nb.AdamW(model, lr=lr),
    }
    if name not in factories:
        raise invalid("optimizer", name, "allowed: " + ", ".join(factories))
    return factories[name]()


def synthetic_batch(sizes: Sequence[int], rows: int, seed: int = 0):
    """Standard-normal float64 inputs and uniformly drawn int64 labels (host arrays)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, sizes[0])), rng.integers(0, sizes[-1], size=rows)


class StepBench:
    """A model, loss and optimizer with one checked batch on the device, and its step."""

    def __init__(
        self, sizes, batch_size, backend, optimizer="sgd", lr=None, activation="relu", seed=0
    ):
        self.sizes, self.batch_size, self.backend = check_sizes(sizes), batch_size, backend
        self.model = nb.MLP(
            sizes[0], sizes[1:-1], sizes[-1], activation=activation, seed=seed, backend=backend
        )
        self.loss_fn = nb.CrossEntropyLoss()
        self.optimizer = (
            optimizer(self.model)
            if callable(optimizer)
            else make_optimizer(optimizer, self.model, lr)
        )
        x, y = synthetic_batch(sizes, batch_size, seed)
        # Checked once, as fit checks its dataset once; the step then runs unchecked.
        self.x = self.model.check_input(x)
        self.y = self.loss_fn.prepare(backend, (batch_size, sizes[-1]), y)

    def __call__(self) -> float:
        return train_step(self.model, self.loss_fn, self.optimizer, self.x, self.y, validate=False)


def benchmark(
    sizes: Sequence[int] = (784, 256, 256, 10),
    *,
    batch_size: int = 256,
    backend="numpy",
    dtype: str = "float32",
    optimizer="sgd",
    lr: float | None = None,
    activation: str = "relu",
    seed: int = 0,
    samples: int = MIN_SAMPLES,
    warmup: int = 5,
    min_sample_s: float = 0.05,
    floor: bool = True,
    epoch_rows: int | None = None,
    target: TargetTask | None = None,
    with_environment: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """Measure one configuration; returns a dict with `RESULT_KEYS` (and the environment).

    ``backend`` is a name or a Backend; ``optimizer`` a name (sgd, momentum, adam, adamw)
    or a factory ``model -> optimizer``. ``floor`` times the GEMM-only floor in this
    process; ``epoch_rows`` times one `nnbench.train_epoch` over that many synthetic rows;
    ``target`` trains a fresh model to a test accuracy (``sizes`` must fit its data).
    """
    sizes = check_sizes(sizes)
    be = nb.get_backend(backend, dtype) if isinstance(backend, str) else backend
    bench = StepBench(sizes, batch_size, be, optimizer, lr, activation, seed)
    timing = time_steps(
        bench, be, samples=samples, warmup=warmup, min_sample_s=min_sample_s, clock=clock
    )
    result = dict.fromkeys(RESULT_KEYS)
    result.update(step_metrics(sizes, batch_size, timing))
    result.update(
        model=format_sizes(sizes),
        batch_size=batch_size,
        backend=be.name,
        device=be.device,
        dtype=be.dtype_name,
        lr=getattr(bench.optimizer, "lr", lr),
        optimizer=optimizer if isinstance(optimizer, str) else type(bench.optimizer).__name__,
    )
    if floor:
        floor_timing = time_steps(
            GemmFloor(be, sizes, batch_size, seed),
            be,
            samples=samples,
            warmup=warmup,
            min_sample_s=min_sample_s,
            clock=clock,
        )
        result.update(
            floor_ms=floor_timing.median_ms,
            floor_ms_spread=floor_timing.spread_ms,
            step_over_floor=timing.median_ms / floor_timing.median_ms,
        )
    if epoch_rows:
        result.update(epoch_s=_epoch_seconds(bench, epoch_rows, seed, clock), epoch_rows=epoch_rows)
    if target is not None:
        model = nb.MLP(
            sizes[0], sizes[1:-1], sizes[-1], activation=activation, seed=seed, backend=be
        )
        opt = optimizer(model) if callable(optimizer) else make_optimizer(optimizer, model, lr)
        result.update(
            time_to_accuracy(
                model,
                nb.CrossEntropyLoss(),
                opt,
                target,
                batch_size=batch_size,
                seed=seed,
                clock=clock,
            )
        )
        result["target"] = target.accuracy
    result["step_alloc_kb"] = traced_peak_bytes(bench, repeats=3) / 1024
    result["peak_host_mb"] = peak_host_mb()
    result["device_mb"] = device_mb(be)
    if with_environment:
        result.update({f"env.{k}": v for k, v in environment().items()})
        result["env.kernels"] = be.kernels()
    return result


def step_metrics(sizes, batch_size: int, timing: Timing) -> dict:
    """The step's timing as result keys: median, spread and fastest step in ms, and from the
    median t (seconds) ``samples_per_s = batch_size / t`` and ``gflops = F / t / 1e9``, where
    F is the forward and backward FLOPs of one step (`nnbench.bench.flops.mlp_flops`)."""
    flops = mlp_flops(sizes, batch_size)["total"]
    median_s = timing.median_ms / 1e3
    return {
        "step_ms_median": timing.median_ms,
        "step_ms_spread": timing.spread_ms,
        "step_ms_min": timing.min_ms,
        "samples": len(timing.samples_ms),
        "steps_per_sample": timing.steps_per_sample,
        "samples_per_s": batch_size / median_s,
        "flops_per_step": flops,
        "gflops": flops / median_s / 1e9,
    }


def _epoch_seconds(bench: StepBench, rows: int, seed: int, clock) -> float:
    """Wall time of one `nnbench.train_epoch` (gather, step, loss and accuracy bookkeeping)
    over ``rows`` synthetic rows, after the step has been warmed up."""
    x, y = synthetic_batch(bench.sizes, rows, seed + 1)
    be = bench.backend
    x, y = be.asarray(x), be.asarray(y, be.int_dtype)
    rng = np.random.default_rng(seed)
    be.synchronize()
    start = clock()
    train_epoch(bench.model, bench.loss_fn, bench.optimizer, x, y, bench.batch_size, rng)
    be.synchronize()
    return clock() - start
