"""Seeded train / validation / test splits, stratified by class for classification."""

from __future__ import annotations

import numpy as np

from nnbench.errors import invalid


def part_size(n: int, fraction: float) -> int:
    """Rows held out for ``fraction`` of ``n``: round(n * fraction), at least 1 if fraction > 0."""
    return 0 if fraction == 0 else max(1, round(n * fraction))


def split_indices(
    n: int,
    rng: np.random.Generator,
    val_fraction: float,
    test_fraction: float,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint index arrays (train, val, test) covering range(n), each in random order.

    The test and validation parts have ``part_size(n, fraction)`` rows; the rest trains.
    With ``labels`` (n,) every part holds each class in proportion, to within one row.
    """
    n_test, n_val = part_size(n, test_fraction), part_size(n, val_fraction)
    if n - n_test - n_val < 1:
        raise invalid(
            "samples", n, f"too few to hold out {n_val} validation and {n_test} test rows"
        )
    order = rng.permutation(n) if labels is None else stratified_order(labels, rng)
    test, val, train = np.split(order, [n_test, n_test + n_val])
    return rng.permutation(train), rng.permutation(val), rng.permutation(test)


def stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An ordering of the rows in which every prefix holds each class in proportion.

    Within class c (n_c rows, shuffled) the k-th row gets the key (k + 0.5) / n_c, its
    quantile in the class. Sorting all rows by key, ties broken at random, interleaves the
    classes evenly: the first m rows hold m * n_c / n rows of class c, to within one row.
    """
    keys = np.empty(len(labels))
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        keys[members] = (np.arange(len(members)) + 0.5) / len(members)
    return np.lexsort((rng.random(len(labels)), keys))
