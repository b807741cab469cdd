"""Every dataset through `load_dataset`: shapes, dtypes, tasks, split sizes, seeds, errors."""

from __future__ import annotations

import numpy as np
import pytest

import nnbench as nb
from nnbench.data import DATASETS, Dataset, load_dataset
from tests.data.helpers import write_csv, write_mnist


def _csv(tmp_path):
    rng = np.random.default_rng(5)
    rows = [[*rng.normal(size=3).round(3), i % 3] for i in range(40)]
    return {"path": write_csv(tmp_path / "t.csv", ["a", "b", "c", "label"], rows)}


def _idx(name):
    def options(tmp_path):
        write_mnist(tmp_path / name, n_train=60, n_test=20)
        return {"root": tmp_path, "verify": False, "download": False}

    return options


# name -> (options factory, task, n_features, n_outputs, (train, val, test)) written by hand:
# with the default fractions 0.15, n rows give round(0.15 n) test and validation rows.
CASES = {
    "xor": (lambda p: {}, "binary", 2, 1, (4, 4, 4)),
    "linear": (lambda p: {"samples": 40}, "binary", 2, 1, (28, 6, 6)),
    "moons": (lambda p: {"samples": 40}, "binary", 2, 1, (28, 6, 6)),
    "circles": (lambda p: {"samples": 40}, "binary", 2, 1, (28, 6, 6)),
    "spirals": (lambda p: {"samples": 60, "classes": 4}, "multiclass", 2, 4, (42, 9, 9)),
    "sine": (lambda p: {"samples": 40}, "regression", 1, 1, (28, 6, 6)),
    "digits": (lambda p: {}, "multiclass", 64, 10, (1257, 270, 270)),
    "mnist": (_idx("mnist"), "multiclass", 784, 10, (51, 9, 20)),
    "fashion_mnist": (_idx("fashion_mnist"), "multiclass", 784, 10, (51, 9, 20)),
    "csv": (_csv, "multiclass", 3, 3, (28, 6, 6)),
}


def test_datasets_lists_every_name():
    assert isinstance(DATASETS, tuple)
    assert set(DATASETS) == set(CASES)


def _load(name, tmp_path, seed=0, **extra) -> Dataset:
    return load_dataset(name, seed=seed, **CASES[name][0](tmp_path), **extra)


@pytest.mark.parametrize("name", list(CASES))
def test_loads_with_the_documented_shapes_and_dtypes(name, tmp_path):
    _, task, features, outputs, sizes = CASES[name]
    ds = _load(name, tmp_path)
    expected = (name, task, features, outputs, sizes)
    assert (ds.name, ds.task, ds.n_features, ds.n_outputs, ds.sizes) == expected
    parts = ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test))
    for (x, y), n in zip(parts, sizes, strict=True):
        assert x.dtype == np.float64 and x.shape == (n, features)
        assert not x.flags.writeable and not y.flags.writeable
        if task == "multiclass":
            assert y.dtype == np.int64 and y.shape == (n,)
            assert 0 <= y.min() and y.max() < outputs
        else:
            assert y.dtype == np.float64 and y.shape == (n, outputs)
        if task == "binary":
            assert set(np.unique(y)) <= {0.0, 1.0}
    if task == "regression":
        assert ds.class_names is None
    else:
        assert len(ds.class_names) == max(outputs, 2)
    assert ds.describe().startswith(f"{name}: {task}, {features} feature")


@pytest.mark.parametrize("name", list(CASES))
def test_same_seed_gives_identical_arrays(name, tmp_path):
    first, second = _load(name, tmp_path, seed=3), _load(name, tmp_path, seed=3)
    for part in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(first, part), getattr(second, part))


@pytest.mark.parametrize("name", [n for n in CASES if n != "xor"])
def test_another_seed_gives_another_split(name, tmp_path):
    first, second = _load(name, tmp_path, seed=0), _load(name, tmp_path, seed=1)
    assert first.sizes == second.sizes
    assert not np.array_equal(first.x_val, second.x_val)


def test_describe_is_one_readable_line():
    ds = load_dataset("sine", samples=20, val_fraction=0.25, test_fraction=0.25)
    assert ds.describe() == "sine: regression, 1 feature -> 1 output; train 10 / val 5 / test 5"


def test_zero_validation_fraction_gives_an_empty_validation_part():
    ds = load_dataset("moons", samples=40, val_fraction=0.0)
    assert ds.sizes == (34, 0, 6)
    assert ds.x_val.shape == (0, 2) and ds.y_val.shape == (0, 1)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: load_dataset("foo"),
            "Invalid dataset: 'foo' (allowed: xor, linear, moons, circles, spirals, sine, "
            "digits, mnist, fashion_mnist, csv)",
        ),
        (
            lambda: load_dataset("moons", sample=10),
            "Invalid option for dataset 'moons': 'sample' (allowed: samples, noise)",
        ),
        (
            lambda: load_dataset("digits", noise=0.1),
            "Invalid option for dataset 'digits': 'noise' (allowed: none)",
        ),
        (lambda: load_dataset("moons", seed=-1), "Invalid seed: -1 (must be an integer >= 0)"),
        (lambda: load_dataset("moons", seed=1.5), "Invalid seed: 1.5 (must be an integer >= 0)"),
        (
            lambda: load_dataset("moons", val_fraction=1.0),
            "Invalid val_fraction: 1.0 (must be in [0, 1))",
        ),
        (
            lambda: load_dataset("moons", test_fraction=-0.1),
            "Invalid test_fraction: -0.1 (must be in [0, 1))",
        ),
        (
            lambda: load_dataset("moons", val_fraction=0.6, test_fraction=0.5),
            "Invalid test_fraction: 0.5 (val_fraction + test_fraction must be < 1)",
        ),
        (
            lambda: load_dataset("moons", samples=4, val_fraction=0.5, test_fraction=0.4),
            "Invalid samples: 4 (too few to hold out 2 validation and 2 test rows)",
        ),
    ],
)
def test_bad_arguments_give_one_line_messages(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("name", "options", "loss"),
    [
        ("xor", {}, nb.BCEWithLogitsLoss),
        ("spirals", {"samples": 60}, nb.CrossEntropyLoss),
        ("sine", {"samples": 40}, nb.MSELoss),
    ],
)
def test_datasets_feed_fit_and_evaluate_on_every_backend(backend, name, options, loss):
    """The contract with the trainer: read-only host arrays of these dtypes are accepted."""
    ds = load_dataset(name, **options)
    model = nb.MLP(ds.n_features, [4], ds.n_outputs, activation="tanh", seed=0, backend=backend)
    loss_fn = loss()
    train, validation = (ds.x_train, ds.y_train), (ds.x_val, ds.y_val)
    optimizer = nb.SGD(model, lr=0.1)
    result = nb.fit(model, loss_fn, optimizer, train, epochs=2, batch_size=8, validation=validation)
    assert result.outcome == "completed" and np.isfinite(result.history[-1]["val/loss"])
    assert np.isfinite(nb.evaluate(model, loss_fn, ds.x_test, ds.y_test)["loss"])
