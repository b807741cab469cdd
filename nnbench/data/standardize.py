"""Per-feature standardization fitted on the training rows only."""

from __future__ import annotations

import numpy as np


def fit_standardizer(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature ``(mean, std)`` of the training rows, std with ddof=0 (as scikit-learn's
    StandardScaler).

    A constant feature (max == min) gets std 1 and its value as mean, so it maps to exactly
    0 in training and to its offset elsewhere, instead of dividing by zero.
    """
    constant = np.ptp(x_train, axis=0) == 0
    mean = np.where(constant, x_train[0], x_train.mean(axis=0))
    std = np.where(constant, 1.0, x_train.std(axis=0))
    return mean, std


def apply_standardizer(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std, row by row; a new float64 array."""
    return (x - mean) / std
