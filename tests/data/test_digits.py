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


def test_read_without_importing_scikit_learn_as_load_digits_reads_them():
    """The bundled file is read directly (importing scikit-learn costs about a second of
    every run): the same values, in the same order, as scikit-learn's loader gives."""
    from sklearn.datasets import load_digits

    from nnbench.data.digits import _read_bundled

    table = _read_bundled()
    x, y = load_digits(return_X_y=True)
    np.testing.assert_array_equal(table[:, :-1], x)
    np.testing.assert_array_equal(table[:, -1], y)


def test_without_scikit_learn_the_error_says_what_to_install(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sklearn" else find_spec(name, *a),
    )
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DatasetUnavailableError, match=r"^dataset=digits needs scikit-learn: pip"):
        load_dataset("digits")
