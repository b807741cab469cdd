"""Splitting (sizes, disjointness, stratification) and standardization fitted on the
training part only."""

from __future__ import annotations

import numpy as np
import pytest

from nnbench.data import load_dataset
from nnbench.data.split import split_indices
from tests.data.helpers import write_csv


def test_split_parts_are_disjoint_cover_every_row_and_have_the_rounded_sizes():
    train, val, test = split_indices(101, np.random.default_rng(0), 0.2, 0.1)
    assert (len(train), len(val), len(test)) == (71, 20, 10)  # round(20.2), round(10.1)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(101))


def test_a_positive_fraction_holds_out_at_least_one_row():
    train, val, test = split_indices(5, np.random.default_rng(0), 0.01, 0.01)
    assert (len(train), len(val), len(test)) == (3, 1, 1)


def test_stratified_split_keeps_each_class_in_proportion():
    """Classes of 60, 30 and 10 rows; a 20% test part holds 12, 6 and 2 of them (within 1)."""
    labels = np.repeat([0, 1, 2], [60, 30, 10])
    for seed in range(5):
        train, val, test = split_indices(100, np.random.default_rng(seed), 0.3, 0.2, labels)
        for part, expected in ((test, [12, 6, 2]), (val, [18, 9, 3])):
            counts = np.bincount(labels[part], minlength=3)
            assert np.all(np.abs(counts - expected) <= 1), (seed, counts)


def test_digits_split_is_stratified():
    from sklearn.datasets import load_digits

    per_class = np.bincount(load_digits().target)
    ds = load_dataset("digits", seed=4)
    for part in (ds.y_val, ds.y_test):
        expected = per_class * len(part) / per_class.sum()
        assert np.all(np.abs(np.bincount(part, minlength=10) - expected) <= 1)


def test_standardization_uses_the_training_statistics_only(tmp_path):
    """The target is the row id, so each part's raw rows are known: every part must equal
    (raw - mean(raw_train)) / std(raw_train), std with ddof=0. The constant column (0.1,
    whose computed mean is not exactly 0.1) maps to exactly 0."""
    rng = np.random.default_rng(7)
    raw = np.column_stack([rng.normal(3.0, 2.0, 60), np.full(60, 0.1), np.arange(60.0) ** 2])
    rows = [[*map(repr, r), i] for i, r in enumerate(raw.tolist())]
    path = write_csv(tmp_path / "ids.csv", ["f", "const", "sq", "id"], rows)
    ds = load_dataset("csv", path=path, target="id", task="regression", seed=2)
    raw_train = raw[ds.y_train[:, 0].astype(int)]
    mean, std = raw_train.mean(axis=0), raw_train.std(axis=0)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        expected = (raw[y[:, 0].astype(int)] - mean) / std
        np.testing.assert_allclose(x[:, [0, 2]], expected[:, [0, 2]], rtol=1e-12, atol=1e-12)
        assert np.all(x[:, 1] == 0.0)
    np.testing.assert_allclose(ds.x_mean[[0, 2]], mean[[0, 2]], rtol=1e-12)
    np.testing.assert_array_equal(ds.x_std, [std[0], 1.0, std[2]])


@pytest.mark.parametrize("name", ["moons", "spirals", "sine", "digits"])
def test_train_part_is_centred_and_scaled_but_held_out_parts_are_not_exactly(name):
    ds = load_dataset(name, seed=1)
    varying = ds.x_train.std(axis=0) > 0  # digits has constant blank pixels
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.x_train.std(axis=0)[varying], 1.0, rtol=1e-12)
    for x in (ds.x_val, ds.x_test):
        assert np.all(np.abs(x.mean(axis=0)[varying]) < 1.0)  # same scale ...
        assert np.all(np.abs(x.mean(axis=0)[varying]) > 1e-9)  # ... but other statistics


def test_arrays_are_read_only():
    ds = load_dataset("moons", samples=40)
    with pytest.raises(ValueError, match="read-only"):
        ds.x_train[0, 0] = 1.0
