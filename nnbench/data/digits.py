"""scikit-learn's handwritten digits, bundled with scikit-learn (no download)."""

from __future__ import annotations

import numpy as np

from nnbench.data.dataset import Samples
from nnbench.errors import DatasetUnavailableError


def digits(rng: np.random.Generator) -> Samples:
    """1797 grey 8x8 images of handwritten digits (UCI optical digits, as shipped with
    scikit-learn), pixel values 0..16 flattened to 64 features; 10 classes "0".."9".
    The data is fixed, so ``rng`` is unused: the seed only changes the split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DatasetUnavailableError(
            "dataset=digits needs scikit-learn: pip install scikit-learn "
            "(or pick a dataset that needs only NumPy, such as moons or spirals)"
        ) from exc
    x, y = load_digits(return_X_y=True)
    labels = y.astype(np.int64)
    return Samples(x.astype(np.float64), labels, "multiclass", tuple(str(d) for d in range(10)))
