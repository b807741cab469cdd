"""scikit-learn's handwritten digits, bundled with scikit-learn (no download)."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from nnbench.data.dataset import Samples
from nnbench.errors import DatasetUnavailableError

DATA_FILE = ("datasets", "data", "digits.csv.gz")  # inside the sklearn package


def digits(rng: np.random.Generator) -> Samples:
    """1797 grey 8x8 images of handwritten digits (UCI optical digits, as shipped with
    scikit-learn), pixel values 0..16 flattened to 64 features; 10 classes "0".."9".
    The data is fixed, so ``rng`` is unused: the seed only changes the split."""
    table = _read_bundled()
    if table is None:
        x, y = _load_digits()
    else:  # what load_digits reads, without importing scikit-learn (about a second)
        x, y = table[:, :-1], table[:, -1]
    labels = y.astype(np.int64)
    return Samples(x.astype(np.float64), labels, "multiclass", tuple(str(d) for d in range(10)))


def _read_bundled() -> np.ndarray | None:
    """The rows of scikit-learn's digits.csv.gz (64 pixels, then the label), read as its
    ``load_digits`` reads them; None when the file is not where this scikit-learn keeps it."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *DATA_FILE)
    if not path.is_file():
        return None
    with gzip.open(path, "rt") as text:
        return np.loadtxt(text, delimiter=",")


def _load_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DatasetUnavailableError(
            "dataset=digits needs scikit-learn: pip install scikit-learn "
            "(or pick a dataset that needs only NumPy, such as moons or spirals)"
        ) from exc
    return load_digits(return_X_y=True)
