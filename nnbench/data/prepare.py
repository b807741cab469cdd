"""From a loader's `Samples` to a `Dataset`: split, standardize, freeze."""

from __future__ import annotations

import numpy as np

from nnbench.data.dataset import Dataset, Samples
from nnbench.data.split import split_indices
from nnbench.data.standardize import apply_standardizer, fit_standardizer


def prepare(
    name: str, samples: Samples, rng: np.random.Generator, val_fraction: float, test_fraction: float
) -> Dataset:
    """Split ``samples`` with ``rng`` (stratified for classification), standardize x with the
    training part's statistics, and return read-only arrays.

    An official test set (``samples.x_test``) is kept as the test part; validation is then
    ``val_fraction`` of the other rows and ``test_fraction`` is not used. Without holdout the
    same rows are train, validation and test.
    """
    parts = _split(samples, rng, val_fraction, test_fraction)
    mean = std = None
    if samples.standardize:
        mean, std = fit_standardizer(parts[0][0])
        parts = [(apply_standardizer(x, mean, std), y) for x, y in parts]
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = [
        (_frozen(x, np.float64), _frozen(y, y.dtype)) for x, y in parts
    ]
    return Dataset(
        name=name,
        task=samples.task,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        n_features=x_train.shape[1],
        n_outputs=_outputs(samples),
        class_names=samples.class_names,
        x_mean=None if mean is None else _frozen(mean, np.float64),
        x_std=None if std is None else _frozen(std, np.float64),
    )


def _split(samples: Samples, rng, val_fraction: float, test_fraction: float) -> list:
    x, y = samples.x, samples.y
    if not samples.holdout:
        return [(x, y)] * 3
    labels = None if samples.task == "regression" else y.reshape(len(y), -1)[:, 0]
    if samples.x_test is not None:
        train, val, _ = split_indices(len(x), rng, val_fraction, 0.0, labels)
        return [(x[train], y[train]), (x[val], y[val]), (samples.x_test, samples.y_test)]
    train, val, test = split_indices(len(x), rng, val_fraction, test_fraction, labels)
    return [(x[train], y[train]), (x[val], y[val]), (x[test], y[test])]


def _outputs(samples: Samples) -> int:
    if samples.task == "multiclass":
        return len(samples.class_names)
    return 1 if samples.task == "binary" else samples.y.shape[1]


def _frozen(a: np.ndarray, dtype) -> np.ndarray:
    """``a`` contiguous and read-only (copied only if needed), so that no caller can change
    the dataset in place."""
    a = np.ascontiguousarray(a, dtype=dtype)
    a.setflags(write=False)
    return a
