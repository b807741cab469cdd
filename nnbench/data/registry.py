"""Every dataset by name: ``load_dataset(name, seed=..., **options)``."""

from __future__ import annotations

import inspect

import numpy as np

from nnbench.data import digits, mnist, synthetic, tabular
from nnbench.data.dataset import Dataset
from nnbench.data.options import check_int, check_real
from nnbench.data.prepare import prepare
from nnbench.errors import invalid

LOADERS = {
    "xor": synthetic.xor,
    "linear": synthetic.linear,
    "moons": synthetic.moons,
    "circles": synthetic.circles,
    "spirals": synthetic.spirals,
    "sine": synthetic.sine,
    "digits": digits.digits,
    "mnist": mnist.mnist,
    "fashion_mnist": mnist.fashion_mnist,
    "csv": tabular.csv_file,
}
DATASETS = tuple(LOADERS)


def load_dataset(
    name: str, *, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15, **options
) -> Dataset:
    """The dataset ``name`` split into train / validation / test and standardized.

    ``seed`` fixes both the drawn data (synthetic sets) and the split. ``val_fraction`` and
    ``test_fraction`` are shares of all rows (for mnist and fashion_mnist, whose official
    test set is the test part, ``val_fraction`` is a share of the training file and
    ``test_fraction`` is unused). ``options`` are the dataset's own keyword arguments, listed
    by `dataset_options`; anything else is refused.
    """
    loader = _loader(name)
    allowed = dataset_options(name)
    for option in options:
        if option not in allowed:
            raise invalid(f"option for dataset {name!r}", option, _allowed(allowed))
    seed = check_int("seed", seed, 0)
    val_fraction, test_fraction = _fractions(val_fraction, test_fraction)
    data_seed, split_seed = np.random.SeedSequence(seed).spawn(2)
    samples = loader(np.random.default_rng(data_seed), **options)
    return prepare(name, samples, np.random.default_rng(split_seed), val_fraction, test_fraction)


def dataset_options(name: str) -> dict[str, object]:
    """The options ``name`` accepts, with their defaults."""
    parameters = inspect.signature(_loader(name)).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _loader(name: str):
    if not isinstance(name, str) or name not in LOADERS:
        raise invalid("dataset", name, "allowed: " + ", ".join(DATASETS))
    return LOADERS[name]


def _allowed(options) -> str:
    return "allowed: " + (", ".join(options) if options else "none")


def _fractions(val_fraction, test_fraction) -> tuple[float, float]:
    val = check_real("val_fraction", val_fraction, "must be in [0, 1)", lambda v: 0 <= v < 1)
    test = check_real("test_fraction", test_fraction, "must be in [0, 1)", lambda v: 0 <= v < 1)
    if val + test >= 1:
        raise invalid("test_fraction", test, "val_fraction + test_fraction must be < 1")
    return val, test
