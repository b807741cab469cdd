"""nnbench: one from-scratch MLP on NumPy or CuPy, for learning, teaching and measuring.

    import nnbench as nb
    be = nb.get_backend("numpy", dtype="float64")
    model = nb.MLP(in_features=2, hidden=[8, 8], out_features=3, activation="tanh", backend=be)
    loss = nb.train_step(model, nb.CrossEntropyLoss(), nb.SGD(model, lr=0.1), x, y)

Importing nnbench needs only NumPy: Hydra, MLflow and CuPy load where they are used.
"""

from nnbench.backend import BACKENDS, Backend, BackendUnavailableError, get_backend
from nnbench.nn import (
    MLP,
    Activation,
    BatchNorm1d,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    Dense,
    Dropout,
    MSELoss,
)
from nnbench.optim import SGD, Adam, AdamW
from nnbench.train import FitResult, evaluate, fit, train_epoch, train_step

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "MLP",
    "SGD",
    "Activation",
    "Adam",
    "AdamW",
    "BCEWithLogitsLoss",
    "Backend",
    "BackendUnavailableError",
    "BatchNorm1d",
    "CrossEntropyLoss",
    "Dense",
    "Dropout",
    "FitResult",
    "MSELoss",
    "evaluate",
    "fit",
    "get_backend",
    "train_epoch",
    "train_step",
]
