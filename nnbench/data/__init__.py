"""The dataset registry: every dataset by name, split and standardized the same way.

    >>> from nnbench.data import load_dataset
    >>> ds = load_dataset("moons", seed=0, samples=400, noise=0.2)
    >>> ds.describe()
    'moons: binary, 2 features -> 1 output; train 280 / val 60 / test 60'

Only NumPy is needed (scikit-learn for ``digits``); no Hydra, no MLflow.
"""

from nnbench.data.dataset import Dataset
from nnbench.data.registry import DATASETS, load_dataset
from nnbench.errors import DatasetUnavailableError

__all__ = ["DATASETS", "Dataset", "DatasetUnavailableError", "load_dataset"]
