"""The classic demonstrations, drawn with NumPy from the data seed.

Every function takes the data ``rng`` and keyword options and returns raw `Samples`;
`load_dataset` splits and standardizes them. 2-D classification sets have binary 0/1
targets, except spirals (one class per arm).
"""

from __future__ import annotations

import math

import numpy as np

from nnbench.data.dataset import Samples
from nnbench.data.options import check_int, check_real

MIN_SAMPLES = 4
SPIRAL_SWEEP = 4.0  # radians each spiral arm turns through from centre to rim (CS231n's data)


def _samples(value) -> int:
    return check_int("samples", value, MIN_SAMPLES)


def _noise(value) -> float:
    return check_real("noise", value, "must be a number >= 0", lambda v: v >= 0)


def _binary(x: np.ndarray, labels: np.ndarray) -> Samples:
    y = np.asarray(labels, dtype=np.float64).reshape(-1, 1)  # (n, 1) of 0/1
    return Samples(np.asarray(x, dtype=np.float64), y, "binary", ("0", "1"))


def xor(rng: np.random.Generator, *, noise=0.0, samples=None) -> Samples:
    """XOR: the problem a single perceptron cannot solve (no line separates its classes).

    With the defaults it is the 4-row truth table (0,0)->0, (0,1)->1, (1,0)->1, (1,1)->0.
    A truth table has nothing to hold out, so those four rows are the train, validation and
    test parts alike, and the inputs stay 0/1 as written (they are not standardized).
    With ``noise > 0`` or ``samples=N`` (default 200), N rows are drawn at random corners
    plus Gaussian noise of standard deviation ``noise``, then split and standardized.
    """
    noise = _noise(noise)
    if noise == 0 and samples is None:
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
        y = np.array([[0], [1], [1], [0]], dtype=np.float64)
        return Samples(x, y, "binary", ("0", "1"), holdout=False, standardize=False)
    n = _samples(200 if samples is None else samples)
    corners = rng.integers(0, 2, size=(n, 2))
    labels = corners[:, 0] ^ corners[:, 1]
    return _binary(corners + noise * rng.standard_normal((n, 2)), labels)


def linear(rng: np.random.Generator, *, samples=200, margin=0.5) -> Samples:
    """Two linearly separable 2-D classes: a Gaussian cloud cut by a random line through the
    origin, each side pushed ``margin / 2`` away from it, so a gap of ``margin`` separates
    the classes (before standardization, which keeps them separable)."""
    n = _samples(samples)
    margin = check_real("margin", margin, "must be a number >= 0", lambda v: v >= 0)
    angle = rng.uniform(0, 2 * math.pi)
    normal = np.array([math.cos(angle), math.sin(angle)])  # unit normal of the line
    x = rng.standard_normal((n, 2))
    side = x @ normal >= 0  # (n,)
    x += np.where(side, 0.5, -0.5)[:, None] * margin * normal
    return _binary(x, side)


def moons(rng: np.random.Generator, *, samples=1000, noise=0.1) -> Samples:
    """Two interleaving half circles (as scikit-learn's make_moons): class 0 on the upper
    unit half circle, class 1 on the lower one shifted to (1, 0.5); Gaussian noise of
    standard deviation ``noise`` on both coordinates."""
    n, noise = _samples(samples), _noise(noise)
    n_upper = n // 2
    t = rng.uniform(0, math.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    labels = np.arange(n) >= n_upper  # first half class 0, the rest class 1
    x = np.where(labels[:, None], lower, upper)
    return _binary(x + noise * rng.standard_normal((n, 2)), labels)


def circles(rng: np.random.Generator, *, samples=1000, noise=0.05, factor=0.5) -> Samples:
    """A circle inside a circle: class 0 on the unit circle, class 1 on the circle of radius
    ``factor`` (0 < factor < 1); Gaussian noise of standard deviation ``noise``. No line
    separates them."""
    n, noise = _samples(samples), _noise(noise)
    factor = check_real("factor", factor, "must be in (0, 1)", lambda v: 0 < v < 1)
    labels = np.arange(n) >= n // 2
    radius = np.where(labels, factor, 1.0)
    t = rng.uniform(0, 2 * math.pi, n)
    x = radius[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)
    return _binary(x + noise * rng.standard_normal((n, 2)), labels)


def spirals(rng: np.random.Generator, *, samples=1500, noise=0.2, classes=3) -> Samples:
    """``classes`` interleaved spiral arms, one class each (CS231n's spiral data, with the
    arms' start angles spaced evenly). Along arm j the radius runs up to 1 while the angle
    sweeps 4 radians from 2 pi j / classes; ``noise`` is the standard deviation (radians)
    of Gaussian noise on the angle. Multiclass even for two arms."""
    n, noise = _samples(samples), _noise(noise)
    k = check_int("classes", classes, 2)
    labels = np.arange(n) % k  # (n,) arms of nearly equal size
    counts = np.bincount(labels, minlength=k)
    rank = (np.arange(n) // k + 1) / counts[labels]  # position along the arm, in (0, 1]
    theta = 2 * math.pi * labels / k + SPIRAL_SWEEP * rank + noise * rng.standard_normal(n)
    x = rank[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return Samples(x, labels.astype(np.int64), "multiclass", tuple(str(j) for j in range(k)))


def sine(rng: np.random.Generator, *, samples=1000, noise=0.1, low=-math.pi, high=math.pi):
    """1-D regression: x uniform on [low, high], y = sin(x) + Gaussian noise of standard
    deviation ``noise``. Targets stay as drawn (only x is standardized); train with MSE."""
    n, noise = _samples(samples), _noise(noise)
    low = check_real("low", low, "must be a finite number", lambda v: True)
    high = check_real("high", high, f"must be a number > low ({low})", lambda v: v > low)
    x = rng.uniform(low, high, (n, 1))
    y = np.sin(x) + noise * rng.standard_normal((n, 1))  # (n, 1)
    return Samples(x, y, "regression")
