"""Weight initialization, drawn on the host so that every backend starts from the same numbers.

He (Kaiming) normal for the ReLU family: W ~ N(0, gain^2 / fan_in), gain^2 = 2 / (1 + a^2)
with a the negative slope (0 for relu, 0.01 for leaky_relu).
Xavier (Glorot) uniform for sigmoid, tanh and identity: W ~ U(-r, r), r = sqrt(6 / (fan_in +
fan_out)). A layer's scheme follows the activation applied to its output; the output layer,
whose logits meet no activation, takes Xavier uniform. Biases start at zero.
"""

from __future__ import annotations

import math

import numpy as np

from nnbench.backend.base import LEAKY_SLOPE


def he_normal(rng: np.random.Generator, fan_out: int, fan_in: int, slope: float = 0.0):
    std = math.sqrt(2.0 / (1.0 + slope * slope)) / math.sqrt(fan_in)
    return rng.standard_normal((fan_out, fan_in)) * std


def xavier_uniform(rng: np.random.Generator, fan_out: int, fan_in: int):
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=(fan_out, fan_in))


def init_weight(rng: np.random.Generator, fan_out: int, fan_in: int, activation: str):
    """A float64 host array of shape (fan_out, fan_in) for a layer followed by ``activation``."""
    if activation == "relu":
        return he_normal(rng, fan_out, fan_in)
    if activation == "leaky_relu":
        return he_normal(rng, fan_out, fan_in, LEAKY_SLOPE)
    return xavier_uniform(rng, fan_out, fan_in)
