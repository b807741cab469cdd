"""Structured-config schemas (registered in Hydra's ConfigStore) and the range checks.

The schema makes every composed config typed and closed: a misspelt key or a value of the
wrong type fails at compose time. `check` then enforces ranges and choices before any
training starts, with one message per mistake: "Invalid optimizer.lr: -1.0 (must be > 0)".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from nnbench.backend import ACTIVATIONS, DTYPES
from nnbench.bench.measure import FRAMEWORKS as BENCH_FRAMEWORKS
from nnbench.bench.measure import OPTIMIZERS as BENCH_OPTIMIZERS
from nnbench.errors import invalid

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
BACKEND_CHOICES = ("numpy", "cupy", "auto")


@dataclass
class BackendConfig:
    name: str = "numpy"  # numpy | cupy | auto
    dtype: str = "float32"  # float32 | float64
    tf32: bool = False  # cupy: float32 products on TF32 tensor cores (10-bit mantissa)


@dataclass
class DatasetConfig:
    """The dataset and its options; options left null take the loader's default, and an
    option the dataset does not have is refused (nnbench.data.dataset_options lists them)."""

    name: str = "digits"  # a name from nnbench.data.DATASETS
    val_fraction: float = 0.15  # share of the data held out for validation
    test_fraction: float = 0.15  # share held out for the final test
    samples: int | None = None  # synthetic datasets: how many points
    noise: float | None = None  # synthetic datasets: noise level
    classes: int | None = None  # spirals: number of arms
    margin: float | None = None  # linear: gap between the two classes
    factor: float | None = None  # circles: inner radius / outer radius
    low: float | None = None  # sine: the x range
    high: float | None = None
    limit: int | None = None  # mnist / fashion_mnist: use only this many training images
    root: str | None = None  # mnist / fashion_mnist: cache folder of the IDX files
    download: bool | None = None  # mnist / fashion_mnist: fetch missing files
    verify: bool | None = None  # mnist / fashion_mnist: check the files' MD5 sums
    standardize: bool | None = None  # mnist / fashion_mnist: per-pixel standardization
    path: str | None = None  # csv: the file
    target: str | None = None  # csv: the target column (default: the last)
    task: str | None = None  # csv: auto | multiclass | binary | regression
    delimiter: str | None = None  # csv: the field separator


@dataclass
class ModelConfig:
    hidden: list[int] = field(default_factory=lambda: [64, 64])  # hidden layer widths
    activation: str = "relu"  # sigmoid | tanh | relu | leaky_relu | identity
    dropout: float = 0.0  # drop probability after each hidden activation, in [0, 1)
    batchnorm: bool = False  # BatchNorm1d between each hidden Dense and its activation
    l1: float = 0.0  # penalty l1 * sum|W| on Dense weights
    l2: float = 0.0  # penalty (l2 / 2) * sum W^2 on Dense weights


@dataclass
class OptimizerConfig:
    name: str = "sgd"  # sgd | momentum | adam | adamw
    lr: float = 0.1  # learning rate, > 0
    momentum: float = 0.0  # SGD momentum in [0, 1)
    nesterov: bool = False  # SGD: Nesterov momentum
    weight_decay: float = 0.0  # >= 0; decoupled for adamw
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam, each in [0, 1)
    eps: float = 1e-8  # Adam


@dataclass
class TrainerConfig:
    epochs: int = 20  # passes over the training set, >= 1
    batch_size: int = 64  # mini-batch size, >= 1
    patience: int | None = None  # early stopping on val/loss after this many flat epochs
    min_delta: float = 0.0  # smallest val/loss decrease that counts as progress
    progress: str = "auto"  # auto (a bar on a terminal) | bar | none
    cuda_graph: bool = False  # cupy: replay each training step as a CUDA graph


@dataclass
class TrackingConfig:
    name: str = "mlflow"  # mlflow | none
    uri: str | None = None
    experiment: str | None = None
    # A multirun skips each job whose configuration already has a run that ended FINISHED
    # (completed or diverged) in the experiment; false runs every job (nnbench.tracking.resume).
    resume: bool = True


@dataclass
class BenchConfig:
    """A benchmark job instead of training (+bench=default, +sweep=backend_vs_reference):
    one framework timed on one synthetic batch, in a process of its own (nnbench.bench.job)."""

    # nnbench-numpy | nnbench-cupy | torch-cpu | torch-cuda | sklearn
    framework: str = "nnbench-numpy"
    model: str = "784-256-256-10"  # layer widths in-...-out; ReLU, softmax cross-entropy, float32
    batch_size: int = 256  # rows per step, >= 1
    optimizer: str = "sgd"  # sgd | adam (every framework has both)
    lr: float | None = None  # > 0; null: 0.01 for sgd, 0.001 for adam, in every framework
    threads: int | None = None  # BLAS/OpenMP threads of the job's process; null: the default
    samples: int = 7  # timed samples, >= 1 (7 or more for a figure worth quoting)
    warmup: int = 5  # untimed steps first, >= 0
    min_sample_s: float = 0.05  # seconds each sample lasts at least, >= 0
    floor: bool = True  # also time the GEMM-only floor (nnbench frameworks)


@dataclass
class Config:
    seed: int = 0  # fixes weights, data split, shuffling and dropout masks
    backend: BackendConfig = field(default_factory=BackendConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    bench: BenchConfig | None = None  # set: run a benchmark job, not training


def register() -> None:
    """Store the schema so that conf/config.yaml can name it first in its defaults."""
    ConfigStore.instance().store(name="nnbench_schema", node=Config)


# ---------------------------------------------------------------------- range checks
def _positive(v):
    return v > 0


def _at_least_one(v):
    return v >= 1


def _non_negative(v):
    return v >= 0


def _unit_interval(v):
    return 0 <= v < 1


def _fraction(v):
    return 0 < v < 1


# (key, predicate, what is allowed): one table, checked in one place.
RANGES = [
    ("optimizer.lr", _positive, "must be > 0"),
    ("optimizer.momentum", _unit_interval, "must be in [0, 1)"),
    ("optimizer.weight_decay", _non_negative, "must be >= 0"),
    ("optimizer.eps", _non_negative, "must be >= 0"),
    ("model.dropout", _unit_interval, "must be in [0, 1)"),
    ("model.l1", _non_negative, "must be >= 0"),
    ("model.l2", _non_negative, "must be >= 0"),
    ("trainer.epochs", _at_least_one, "must be >= 1"),
    ("trainer.batch_size", _at_least_one, "must be >= 1"),
    ("trainer.patience", _at_least_one, "must be >= 1, or null to train every epoch"),
    ("trainer.min_delta", _non_negative, "must be >= 0"),
    ("dataset.val_fraction", _fraction, "must be in (0, 1)"),
    ("dataset.test_fraction", _fraction, "must be in (0, 1)"),
]

CHOICES = [
    ("backend.name", BACKEND_CHOICES),
    ("backend.dtype", DTYPES),
    ("model.activation", ACTIVATIONS),
    ("optimizer.name", OPTIMIZERS),
    ("trainer.progress", ("auto", "bar", "none")),
    ("tracking.name", ("mlflow", "none")),
]


# A benchmark job's keys, checked when the config has a bench section.
BENCH_RANGES = [
    ("bench.batch_size", _at_least_one, "must be >= 1"),
    ("bench.lr", _positive, "must be > 0, or null for the default"),
    ("bench.threads", _at_least_one, "must be >= 1, or null for the default"),
    ("bench.samples", _at_least_one, "must be >= 1"),
    ("bench.warmup", _non_negative, "must be >= 0"),
    ("bench.min_sample_s", _non_negative, "must be >= 0"),
]

BENCH_CHOICES = [
    ("bench.framework", tuple(BENCH_FRAMEWORKS)),
    ("bench.optimizer", BENCH_OPTIMIZERS),
]


def _get(cfg: Any, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def check(cfg: Any) -> None:
    """Raise ValueError for the first value out of range or not among the choices."""
    for key, allowed in CHOICES:
        value = _get(cfg, key)
        if value not in allowed:
            raise invalid(key, value, "allowed: " + ", ".join(allowed))
    from nnbench.data import DATASETS

    if cfg.dataset.name not in DATASETS:
        raise invalid("dataset", cfg.dataset.name, "allowed: " + ", ".join(DATASETS))
    for key, ok, allowed in RANGES:
        value = _get(cfg, key)
        if value is not None and not ok(value):
            raise invalid(key, value, allowed)
    for size in cfg.model.hidden:
        if size < 1:
            raise invalid("model.hidden", list(cfg.model.hidden), "each width must be >= 1")
    for index, beta in enumerate(cfg.optimizer.betas):
        if not _unit_interval(beta):
            raise invalid(f"optimizer.betas[{index}]", beta, "must be in [0, 1)")
    if len(cfg.optimizer.betas) != 2:
        raise invalid("optimizer.betas", list(cfg.optimizer.betas), "expected two values")
    if cfg.dataset.val_fraction + cfg.dataset.test_fraction >= 1:
        raise invalid(
            "dataset.val_fraction + dataset.test_fraction",
            cfg.dataset.val_fraction + cfg.dataset.test_fraction,
            "must leave data to train on (< 1)",
        )
    check_gpu_options(cfg)
    if cfg.get("bench") is not None:
        check_bench(cfg)


# Options that only a GPU backend has; backend=auto may still fall back to numpy, and then
# `nnbench.fit` refuses cuda_graph (TF32 is simply not used there).
GPU_OPTIONS = [
    ("trainer.cuda_graph", "CUDA graphs need backend=cupy"),
    ("backend.tf32", "TF32 is a GPU format: it needs backend=cupy"),
]


def check_gpu_options(cfg: Any) -> None:
    """``trainer.cuda_graph`` and ``backend.tf32`` with a CPU backend are mistakes."""
    if cfg.backend.name in ("cupy", "auto"):
        return
    for key, why in GPU_OPTIONS:
        if _get(cfg, key):
            raise invalid(key, True, f"{why}; this run has backend={cfg.backend.name}")


def check_bench(cfg: Any) -> None:
    """The bench section: its choices and ranges, and layer widths that parse."""
    from nnbench.bench.flops import parse_sizes

    for key, allowed in BENCH_CHOICES:
        value = _get(cfg, key)
        if value not in allowed:
            raise invalid(key, value, "allowed: " + ", ".join(allowed))
    for key, ok, allowed in BENCH_RANGES:
        value = _get(cfg, key)
        if value is not None and not ok(value):
            raise invalid(key, value, allowed)
    try:
        parse_sizes(cfg.bench.model)
    except ValueError:
        allowed = "expected two or more widths >= 1 joined by '-', e.g. 784-256-256-10"
        raise invalid("bench.model", cfg.bench.model, allowed) from None
