"""What a loader produces (`Samples`) and what `load_dataset` returns (`Dataset`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TASKS = ("binary", "multiclass", "regression")


@dataclass(frozen=True, eq=False)
class Samples:
    """A loader's raw rows, before splitting and standardization.

    ``x`` is float64 (n, features). ``y`` follows the task: int64 (n,) class labels for
    multiclass, float64 (n, 1) 0/1 for binary, float64 (n, k) for regression.
    ``x_test``/``y_test`` hold an official test set when the source has one (then only
    validation is split off ``x``). ``holdout=False`` means there is nothing to hold out:
    the same rows serve as train, validation and test.
    """

    x: np.ndarray
    y: np.ndarray
    task: str
    class_names: tuple[str, ...] | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    holdout: bool = True
    standardize: bool = True


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset split into train, validation and test parts, as read-only host arrays.

    ``x_*``: float64 (n, n_features), standardized with the training part's per-feature
    mean and standard deviation (``x_mean``, ``x_std``; None when the dataset is not
    standardized). ``y_*``: int64 (n,) labels for ``task="multiclass"``, float64 (n, 1) 0/1
    for ``"binary"``, float64 (n, k) for ``"regression"``. ``n_outputs`` is the number of
    classes (multiclass), 1 (binary) or k (regression): the model's output width.
    """

    name: str
    task: str  # "binary" | "multiclass" | "regression"
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_features: int
    n_outputs: int
    class_names: tuple[str, ...] | None = None
    x_mean: np.ndarray | None = None  # (n_features,) training mean, None if not standardized
    x_std: np.ndarray | None = None  # (n_features,) training std (ddof=0; 1 where constant)

    @property
    def sizes(self) -> tuple[int, int, int]:
        """Rows in (train, validation, test)."""
        return len(self.x_train), len(self.x_val), len(self.x_test)

    def describe(self) -> str:
        """One line: ``'moons: binary, 2 features -> 1 output; train 280 / val 60 / test 60'``."""
        train, val, test = self.sizes
        features = _count(self.n_features, "feature")
        outputs = _count(self.n_outputs, "output")
        parts = f"train {train} / val {val} / test {test}"
        return f"{self.name}: {self.task}, {features} -> {outputs}; {parts}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
