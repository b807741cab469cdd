"""What a job trains, built from its checked config: the dataset, the backend, the model,
the loss that fits the dataset's task, and the optimizer (`build` -> `Parts`)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

import nnbench as nb
from nnbench.data import load_dataset

LOSSES = {
    "multiclass": nb.CrossEntropyLoss,
    "binary": nb.BCEWithLogitsLoss,
    "regression": nb.MSELoss,
}
SPLIT_KEYS = ("name", "val_fraction", "test_fraction")


@dataclass
class Parts:
    """What a job trains, built from its config."""

    data: object  # nnbench.data's Dataset: the splits, task, sizes
    backend: object  # nnbench.backend.Backend
    model: nb.MLP
    loss_fn: object  # one of LOSSES
    optimizer: object  # nb.SGD, nb.Adam or nb.AdamW


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
            message = str(exc).replace("Invalid ", "Invalid dataset.", 1)
            raise ValueError(message.replace(f" {what}=", f" dataset.{what}=")) from exc
        raise


def make_backend(cfg: DictConfig):
    """The backend ``backend.name`` at ``backend.dtype`` (``backend.tf32`` on a GPU)."""
    return nb.get_backend(cfg.name, cfg.dtype, tf32=cfg.tf32)


def build(cfg: DictConfig, data=None, backend=None) -> Parts:
    """Dataset, backend, model, loss and optimizer, from a checked config; ``data`` and
    ``backend``, when given, are those the config names, made already (a stacked sweep's
    members share them)."""
    data = load(cfg.dataset, cfg.seed) if data is None else data
    if backend is None:
        backend = make_backend(cfg.backend)
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
    return Parts(data, backend, model, LOSSES[data.task](), build_optimizer(model, cfg.optimizer))
