"""The shipped Hydra configs, composed in-process with Hydra's compose API.

Every option of every group is found by listing conf/<group>/*.yaml, so a new file
is covered without editing this test. Each composes against the structured schema and
passes `nnbench.config.check`; the range and choice tables reject bad values with the
uniform "Invalid <key>: <value> (<allowed>)" message.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

import nnbench.conf
import numpy as np
import pytest
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from omegaconf import OmegaConf

import nnbench as nb
from nnbench import config, parts
from nnbench.data.registry import DATASETS, dataset_options

CONF = Path(nnbench.conf.__file__).parent
GROUPS = (
    "backend",
    "dataset",
    "model",
    "optimizer",
    "trainer",
    "tracking",
    "sweep",
    "experiment",
    "bench",
)
APPENDED = ("sweep", "experiment", "bench")  # not in the defaults list: +group=option
SPLIT_KEYS = ("name", "val_fraction", "test_fraction")  # dataset keys that are not options


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def selector(group: str, option: str) -> str:
    return f"{'+' if group in APPENDED else ''}{group}={option}"


def compose_cfg(*overrides: str, hydra_cfg: bool = False):
    config.register()
    with initialize_config_module("nnbench.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra_cfg)


def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), f"no yaml files in conf/{group}"


# ------------------------------------------------------------- every option composes
ALL_OPTIONS = [(g, o) for g in GROUPS for o in options(g)]


@pytest.mark.parametrize(("group", "option"), ALL_OPTIONS, ids=[f"{g}={o}" for g, o in ALL_OPTIONS])
def test_option_composes_and_passes_check(group, option):
    cfg = compose_cfg(selector(group, option))
    config.check(cfg)
    if group in ("backend", "optimizer", "dataset"):
        assert cfg[group].name == option


@pytest.mark.parametrize("option", options("backend"))
def test_backend_option_instantiates(option):
    """Every backend but cupy is built here (cupy needs a GPU and is tested elsewhere)."""
    if option == "cupy":
        pytest.skip("cupy is not instantiated in the config tests")
    cfg = compose_cfg(f"backend={option}")
    backend = nb.get_backend(cfg.backend.name, cfg.backend.dtype)
    assert backend.dtype_name == cfg.backend.dtype
    assert backend.name in (("numpy", "cupy") if option == "auto" else (option,))


def test_every_dataset_schema_key_is_an_option_of_some_dataset():
    """A schema key that no loader takes could never be set without an error."""
    fields = set(OmegaConf.structured(config.DatasetConfig)) - set(SPLIT_KEYS)
    taken = set().union(*(dataset_options(name) for name in DATASETS))
    assert fields <= taken, fields - taken


@pytest.mark.parametrize("option", options("dataset"))
def test_dataset_option_sets_only_options_its_loader_takes(option):
    cfg = compose_cfg(f"dataset={option}").dataset
    set_keys = {k for k in cfg if k not in SPLIT_KEYS and OmegaConf.select(cfg, k) is not None}
    set_keys |= {k for k in cfg if OmegaConf.is_missing(cfg, k)}
    assert set_keys <= set(dataset_options(cfg.name))


@pytest.mark.parametrize(
    "option", [o for o in options("dataset") if o not in ("mnist", "fashion_mnist", "csv")]
)
def test_dataset_option_loads(option):
    """The datasets that need no files load with the options their yaml sets."""
    data = parts.load(compose_cfg(f"dataset={option}").dataset, seed=0)
    assert len(data.x_train) > 0 and len(data.x_test) > 0
    assert data.x_train.shape[1] == data.n_features


# Written out from the yaml headers: (class, lr, momentum or betas, weight decay, decoupled).
OPTIMIZERS = {
    "sgd": dict(cls=nb.SGD, lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0),
    "momentum": dict(cls=nb.SGD, lr=0.05, momentum=0.9, nesterov=False, weight_decay=0.0),
    "adam": dict(
        cls=nb.Adam,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        decoupled_weight_decay=False,
    ),
    "adamw": dict(
        cls=nb.AdamW,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.01,
        decoupled_weight_decay=True,
    ),
}


@pytest.mark.parametrize("option", options("optimizer"))
def test_optimizer_option_builds_the_documented_optimizer(option):
    assert option in OPTIMIZERS, f"add the expected hyperparameters of optimizer={option}"
    expected = dict(OPTIMIZERS[option])
    cfg = compose_cfg(f"optimizer={option}")
    model = nb.MLP(3, [4], 2, seed=0, backend=nb.get_backend("numpy", "float64"))
    optimizer = parts.build_optimizer(model, cfg.optimizer)
    assert type(optimizer) is expected.pop("cls")
    for attribute, value in expected.items():
        assert getattr(optimizer, attribute) == pytest.approx(value), attribute


# Written out from the yaml files: (hidden widths, activation).
MODELS = {
    "mlp": ([64, 64], "relu"),
    "perceptron": ([], "identity"),
    "deep_linear": ([32, 32, 32], "identity"),
}


@pytest.mark.parametrize("option", options("model"))
def test_model_option_builds_the_documented_network(option):
    assert option in MODELS, f"add the expected architecture of model={option}"
    cfg = compose_cfg(f"model={option}").model
    model = nb.MLP(
        in_features=3,
        hidden=list(cfg.hidden),
        out_features=2,
        activation=cfg.activation,
        dropout=cfg.dropout,
        batchnorm=cfg.batchnorm,
        l1=cfg.l1,
        l2=cfg.l2,
        backend=nb.get_backend("numpy", "float64"),
    )
    assert (list(model.hidden), model.activation) == MODELS[option]


# ------------------------------------------------------------- the schema is closed
@pytest.mark.parametrize("override", ["model.hiden=3", "trainer.epoch=3", "lr=0.1"])
def test_schema_rejects_a_misspelt_key(override):
    with pytest.raises(ConfigCompositionException):
        compose_cfg(override)


@pytest.mark.parametrize(
    "override", ["trainer.epochs=abc", "model.batchnorm=maybe", "optimizer.lr=fast", "seed=1.5"]
)
def test_schema_rejects_a_wrong_type(override):
    with pytest.raises(ConfigCompositionException):
        compose_cfg(override)


# ------------------------------------------------------------- range and choice tables
# For each predicate of config.RANGES: values it must reject and boundary values it must
# accept, chosen by hand from the "allowed" text.
BOUNDARIES = {
    config._positive: ([0, -1], [1e-12]),
    config._at_least_one: ([0, -1], [1]),
    config._non_negative: ([-1e-12, -1], [0]),
    config._unit_interval: ([1.0, -1e-12], [0.0, 0.999]),
    config._fraction: ([0.0, 1.0], [0.01]),
}
RANGE_IDS = [key for key, _, _ in config.RANGES]


@functools.cache
def _default_cfg():
    return compose_cfg()


def _with(key: str, value):
    """The default config (composed once) with one value changed, type-checked by the schema."""
    cfg = copy.deepcopy(_default_cfg())
    OmegaConf.update(cfg, key, value)
    return cfg


@pytest.mark.parametrize(("key", "predicate", "allowed"), config.RANGES, ids=RANGE_IDS)
def test_range_rejects_a_bad_value(key, predicate, allowed):
    assert predicate in BOUNDARIES, f"add boundary values for {predicate.__name__}"
    for bad in BOUNDARIES[predicate][0]:
        cfg = _with(key, bad)
        shown = repr(OmegaConf.select(cfg, key))  # as typed by the schema: 0 -> 0.0 for floats
        assert float(shown) == bad
        message = f"Invalid {key}: {shown} ({allowed})"
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            config.check(cfg)


@pytest.mark.parametrize(("key", "predicate", "allowed"), config.RANGES, ids=RANGE_IDS)
def test_range_accepts_a_boundary_value(key, predicate, allowed):
    for good in BOUNDARIES[predicate][1]:
        config.check(_with(key, good))


@pytest.mark.parametrize(("key", "choices"), config.CHOICES, ids=[k for k, _ in config.CHOICES])
def test_choice_rejects_an_unknown_value(key, choices):
    message = f"Invalid {key}: 'nope' (allowed: {', '.join(choices)})"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        config.check(_with(key, "nope"))


@pytest.mark.parametrize(("key", "choices"), config.CHOICES, ids=[k for k, _ in config.CHOICES])
def test_choice_accepts_every_allowed_value(key, choices):
    cfg = copy.deepcopy(_default_cfg())
    for choice in choices:
        OmegaConf.update(cfg, key, choice)
        config.check(cfg)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("model.hidden", [8, 0], "Invalid model.hidden: [8, 0] (each width must be >= 1)"),
        ("optimizer.betas", [0.9, 1.0], "Invalid optimizer.betas[1]: 1.0 (must be in [0, 1))"),
        ("optimizer.betas", [0.9], "Invalid optimizer.betas: [0.9] (expected two values)"),
        ("dataset.name", "nope", "Invalid dataset: 'nope' (allowed: "),
    ],
)
def test_checks_outside_the_tables(key, value, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        config.check(_with(key, value))


def test_split_fractions_must_leave_training_data():
    cfg = _with("dataset.val_fraction", 0.5)
    OmegaConf.update(cfg, "dataset.test_fraction", 0.5)
    with pytest.raises(ValueError, match=r"^Invalid dataset\.val_fraction \+ dataset\.test"):
        config.check(cfg)
    OmegaConf.update(cfg, "dataset.test_fraction", 0.49)
    config.check(cfg)


# ------------------------------------------------------------- sweeps and experiments
def _sweep_params(cfg) -> dict[str, list[str]]:
    """{key: [value, ...]} of hydra.sweeper.params, parsed as Hydra's basic sweeper does."""
    params = cfg.hydra.sweeper.params or {}
    parser = OverridesParser.create()
    parsed = parser.parse_overrides([f"{key}={values}" for key, values in params.items()])
    return {o.get_key_element(): list(o.sweep_string_iterator()) for o in parsed}


@pytest.mark.parametrize("option", options("sweep"))
def test_sweep_is_a_multirun_with_params(option):
    cfg = compose_cfg(f"+sweep={option}", hydra_cfg=True)
    assert cfg.hydra.mode == RunMode.MULTIRUN
    params = _sweep_params(cfg)
    assert params and all(len(values) >= 2 for values in params.values())


@pytest.mark.parametrize(
    "option",
    [(g, o) for g in APPENDED for o in options(g)],
    ids=[f"{g}={o}" for g in APPENDED for o in options(g)],
)
def test_every_swept_value_composes_and_passes_check(option):
    """Each job a sweep or multirun experiment launches is a valid configuration."""
    selected = selector(*option)
    params = _sweep_params(compose_cfg(selected, hydra_cfg=True))
    for key, values in params.items():
        for value in values:
            config.check(compose_cfg(selected, f"{key}={value}"))


@pytest.mark.parametrize("option", options("experiment"))
def test_experiment_header_names_its_command(option):
    text = (CONF / "experiment" / f"{option}.yaml").read_text()
    lines = text.splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    assert lines[0] == "# @package _global_"
    assert any(f"python -m nnbench +experiment={option}" in line for line in header)


def test_lr_sweep_grid_spans_small_to_divergent():
    """The lr sweep's documented picture needs rates on both sides of the right one."""
    cfg = compose_cfg("+sweep=lr", hydra_cfg=True)
    rates = np.array([float(v) for v in _sweep_params(cfg)["optimizer.lr"]])
    assert cfg.optimizer.name == "sgd"
    assert rates.min() <= 1e-3 and rates.max() >= 10
