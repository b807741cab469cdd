"""dataset=digits: scikit-learn's bundled 8x8 digits, and the error without scikit-learn."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from nnbench.data import DatasetUnavailableError, load_dataset


def test_digits_are_the_1797_bundled_images():
    ds = load_dataset("digits", val_fraction=0.0, test_fraction=0.0)
    assert ds.sizes == (1797, 0, 0) and ds.class_names == tuple("0123456789")
    np.testing.assert_array_equal(np.bincount(ds.y_train).sum(), 1797)
    pixels = ds.x_train * ds.x_std + ds.x_mean  # back to the raw 0..16 grey levels
    np.testing.assert_allclose(pixels, np.rint(pixels), atol=1e-9)
    assert pixels.min() == pytest.approx(0) and pixels.max() == pytest.approx(16)


def test_without_scikit_learn_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DatasetUnavailableError, match=r"^dataset=digits needs scikit-learn: pip"):
        load_dataset("digits")
