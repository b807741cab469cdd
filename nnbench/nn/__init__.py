"""Layers, losses and the MLP, written once against the backend interface."""

from nnbench.nn.activation import Activation
from nnbench.nn.batchnorm import BatchNorm1d
from nnbench.nn.dense import Dense
from nnbench.nn.dropout import Dropout
from nnbench.nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss
from nnbench.nn.mlp import MLP

__all__ = [
    "MLP",
    "Activation",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "CrossEntropyLoss",
    "Dense",
    "Dropout",
    "Loss",
    "MSELoss",
]
