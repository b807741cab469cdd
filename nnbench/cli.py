"""``python -m nnbench``: compose the config with Hydra, build the pieces, delegate to `fit`.

This is the only module that sees the Hydra config: everything below it takes plain values.
"""

from __future__ import annotations

import math
import time

import hydra
from omegaconf import DictConfig

import nnbench as nb
from nnbench import config as schema
from nnbench.data import load_dataset
from nnbench.progress import make_progress
from nnbench.usage import exit_on_user_error, reporting_user_errors

schema.register()

LOSSES = {
    "multiclass": nb.CrossEntropyLoss,
    "binary": nb.BCEWithLogitsLoss,
    "regression": nb.MSELoss,
}
SPLIT_KEYS = ("name", "val_fraction", "test_fraction")


def build_optimizer(model, cfg: DictConfig):
    """sgd and momentum are nb.SGD; adam is nb.Adam; adamw is nb.AdamW."""
    if cfg.name in ("sgd", "momentum"):
        return nb.SGD(
            model,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    adam = nb.AdamW if cfg.name == "adamw" else nb.Adam
    return adam(
        model, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay
    )


def load(cfg: DictConfig, seed: int):
    """The dataset named by ``cfg.name`` with the options that are set; errors name the
    config key (``dataset.path``), as the user typed it."""
    options = {key: value for key, value in cfg.items() if key not in SPLIT_KEYS}
    options = {key: value for key, value in options.items() if value is not None}
    try:
        return load_dataset(
            cfg.name,
            seed=seed,
            val_fraction=cfg.val_fraction,
            test_fraction=cfg.test_fraction,
            **options,
        )
    except ValueError as exc:
        what = str(exc).removeprefix("Invalid ").split(":")[0]
        if what in cfg:
            raise ValueError(str(exc).replace("Invalid ", "Invalid dataset.", 1)) from exc
        raise


def train(cfg: DictConfig, multirun: bool = False) -> dict:
    """Build dataset, backend, model, loss and optimizer from ``cfg``; train; evaluate."""
    schema.check(cfg)
    data = load(cfg.dataset, cfg.seed)
    backend = nb.get_backend(cfg.backend.name, cfg.backend.dtype)
    model = nb.MLP(
        in_features=data.n_features,
        hidden=list(cfg.model.hidden),
        out_features=data.n_outputs,
        activation=cfg.model.activation,
        dropout=cfg.model.dropout,
        batchnorm=cfg.model.batchnorm,
        l1=cfg.model.l1,
        l2=cfg.model.l2,
        seed=cfg.seed,
        backend=backend,
    )
    loss_fn = LOSSES[data.task]()
    optimizer = build_optimizer(model, cfg.optimizer)
    progress = make_progress(cfg.trainer.progress, cfg.trainer.epochs, multirun)
    start = time.perf_counter()
    result = nb.fit(
        model,
        loss_fn,
        optimizer,
        (data.x_train, data.y_train),
        validation=(data.x_val, data.y_val),
        epochs=cfg.trainer.epochs,
        batch_size=cfg.trainer.batch_size,
        seed=cfg.seed,
        patience=cfg.trainer.patience,
        min_delta=cfg.trainer.min_delta,
        callback=progress,
    )
    progress.close()
    final = dict(result.history[-1]) if result.history else {}
    if result.outcome == "completed":
        test = nb.evaluate(model, loss_fn, data.x_test, data.y_test)
        if data.task == "regression":
            final["test/mse"] = test["loss"]
        else:
            final["test/loss"], final["test/acc"] = test["loss"], test["acc"]
    return {
        "result": result,
        "metrics": final,
        "seconds": time.perf_counter() - start,
        "data": data,
        "model": model,
        "backend": backend,
    }


def _format_metrics(metrics: dict) -> str:
    keys = ("train/loss", "val/loss", "val/acc", "test/acc", "test/mse")
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in keys if k in metrics)


def summary(cfg: DictConfig, run: dict, output_dir: str) -> str:
    result, model, backend = run["result"], run["model"], run["backend"]
    sizes = "-".join(str(s) for s in [model.in_features, *model.hidden, model.out_features])
    lines = [
        f"nnbench: {cfg.dataset.name}, MLP {sizes} {model.activation}, "
        f"{cfg.optimizer.name} lr={cfg.optimizer.lr}, {backend.name} {backend.dtype_name} "
        f"({backend.device})",
        f"{result.message} in {run['seconds']:.2f} s",
    ]
    if run["metrics"]:
        lines.append("  " + _format_metrics(run["metrics"]))
    if cfg.tracking.name == "none":
        lines.append("not recorded (tracking=none)")
    lines.append(f"outputs: {output_dir}")
    return "\n".join(lines)


def job_line(job_num: int, overrides: list[str], run: dict) -> str:
    """One line per multirun job: what it changed (not the +sweep/+experiment switch), how
    it ended and its final metrics."""
    changed = [o for o in overrides if not o.startswith(("+sweep=", "+experiment="))]
    label = " ".join(changed) or "(defaults)"
    return f"[job {job_num}] {label}: {run['result'].message}  {_format_metrics(run['metrics'])}"


def objective(run: dict) -> float:
    """The value a sweeper minimizes: validation loss, +inf for a diverged run."""
    value = run["metrics"].get("val/loss", math.inf)
    return value if run["result"].outcome == "completed" and math.isfinite(value) else math.inf


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    with exit_on_user_error():
        run = train(cfg, multirun=multirun)
    if multirun:
        print(job_line(hydra_cfg.job.num, list(hydra_cfg.overrides.task), run), flush=True)
    else:
        print(summary(cfg, run, hydra_cfg.runtime.output_dir), flush=True)
    return objective(run)


def main() -> None:
    """Console entry point: ``nnbench`` and ``python -m nnbench``."""
    with reporting_user_errors():
        _hydra_main()
