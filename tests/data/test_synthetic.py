"""The synthetic datasets' geometry, checked on the raw samples (before standardization)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnbench.data import load_dataset
from nnbench.data import synthetic as syn


def rng(seed=0):
    return np.random.default_rng(seed)


def test_xor_default_is_the_truth_table_in_every_part_unstandardized():
    ds = load_dataset("xor", seed=5)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        np.testing.assert_array_equal(x, [[0, 0], [0, 1], [1, 0], [1, 1]])
        np.testing.assert_array_equal(y, [[0], [1], [1], [0]])
    assert ds.x_mean is None and ds.x_std is None


def test_noisy_xor_labels_are_the_xor_of_the_nearest_corner():
    s = syn.xor(rng(), noise=0.1, samples=500)
    assert s.holdout and s.standardize and s.x.shape == (500, 2)
    corner = s.x > 0.5  # noise 0.1 never crosses 0.5 in 500 draws (5 sigma)
    np.testing.assert_array_equal(s.y[:, 0], corner[:, 0] ^ corner[:, 1])
    assert 0.08 < np.std(s.x - corner) < 0.12


def test_xor_samples_without_noise_sit_on_the_corners():
    s = syn.xor(rng(), samples=40)
    assert set(np.unique(s.x)) == {0.0, 1.0}
    np.testing.assert_array_equal(s.y[:, 0], s.x[:, 0] != s.x[:, 1])


def test_linear_classes_are_separated_by_the_margin():
    """Over 7200 directions, the widest gap between the classes' projections is the margin
    (plus the chance emptiness next to the line); it cannot be smaller."""
    s = syn.linear(rng(3), samples=500, margin=0.8)
    angles = np.linspace(0, 2 * math.pi, 7200, endpoint=False)
    proj = s.x @ np.stack([np.cos(angles), np.sin(angles)])  # (n, directions)
    ones = s.y[:, 0] == 1
    gap = (proj[ones].min(axis=0) - proj[~ones].max(axis=0)).max()
    assert 0.8 - 0.01 <= gap < 0.8 + 0.1
    assert 150 < ones.sum() < 350


def test_moons_lie_on_the_two_half_circles():
    s = syn.moons(rng(), samples=101, noise=0.0)
    x0, x1 = s.x[s.y[:, 0] == 0], s.x[s.y[:, 0] == 1]
    assert (len(x0), len(x1)) == (50, 51)
    np.testing.assert_allclose(np.hypot(x0[:, 0], x0[:, 1]), 1.0)
    np.testing.assert_allclose(np.hypot(x1[:, 0] - 1, x1[:, 1] - 0.5), 1.0)
    assert x0[:, 1].min() >= 0 and x1[:, 1].max() <= 0.5


def test_circles_have_radius_one_and_factor():
    s = syn.circles(rng(), samples=100, noise=0.0, factor=0.3)
    radius = np.hypot(s.x[:, 0], s.x[:, 1])
    np.testing.assert_allclose(radius[s.y[:, 0] == 0], 1.0)
    np.testing.assert_allclose(radius[s.y[:, 0] == 1], 0.3)
    assert (s.y == 1).sum() == 50


def test_spiral_arms_turn_four_radians_from_evenly_spaced_starts():
    s = syn.spirals(rng(), samples=100, noise=0.0, classes=4)
    assert s.task == "multiclass" and s.y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(s.y), [25, 25, 25, 25])
    r = np.hypot(s.x[:, 0], s.x[:, 1])
    assert r.min() > 0 and r.max() == pytest.approx(1.0)
    angle = 2 * math.pi * s.y / 4 + 4.0 * r
    np.testing.assert_allclose(s.x, r[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1))


def test_spiral_noise_perturbs_the_angle():
    clean = syn.spirals(rng(1), samples=300, noise=0.0)
    noisy = syn.spirals(rng(1), samples=300, noise=0.2)
    np.testing.assert_allclose(np.hypot(*noisy.x.T), np.hypot(*clean.x.T))
    turn = np.angle((noisy.x[:, 0] + 1j * noisy.x[:, 1]) / (clean.x[:, 0] + 1j * clean.x[:, 1]))
    assert 0.15 < turn.std() < 0.25


def test_sine_targets_are_the_sine_of_the_raw_inputs():
    s = syn.sine(rng(), samples=200, noise=0.0, low=-1.0, high=2.0)
    assert s.task == "regression" and s.y.shape == (200, 1)
    assert -1.0 <= s.x.min() and s.x.max() <= 2.0
    np.testing.assert_array_equal(s.y, np.sin(s.x))
    noisy = syn.sine(rng(), samples=4000, noise=0.3)
    assert 0.27 < np.std(noisy.y - np.sin(noisy.x)) < 0.33


def test_sine_keeps_targets_unstandardized():
    ds = load_dataset("sine", samples=200, noise=0.0)
    assert abs(ds.y_train).max() <= 1.0 and abs(ds.y_train).max() > 0.9
    np.testing.assert_allclose(ds.y_train, np.sin(ds.x_train * ds.x_std + ds.x_mean))


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("moons", {"noise": -0.1}, "Invalid noise: -0.1 (must be a number >= 0)"),
        ("moons", {"noise": "0.1"}, "Invalid noise: '0.1' (must be a number >= 0)"),
        ("circles", {"noise": math.nan}, "Invalid noise: nan (must be a number >= 0)"),
        ("moons", {"samples": 2}, "Invalid samples: 2 (must be an integer >= 4)"),
        ("linear", {"samples": True}, "Invalid samples: True (must be an integer >= 4)"),
        ("xor", {"samples": 10.0}, "Invalid samples: 10.0 (must be an integer >= 4)"),
        ("xor", {"noise": -1}, "Invalid noise: -1 (must be a number >= 0)"),
        ("spirals", {"classes": 1}, "Invalid classes: 1 (must be an integer >= 2)"),
        ("circles", {"factor": 1.0}, "Invalid factor: 1.0 (must be in (0, 1))"),
        ("linear", {"margin": -1}, "Invalid margin: -1 (must be a number >= 0)"),
        ("sine", {"low": 1, "high": 0}, "Invalid high: 0 (must be a number > low (1.0))"),
    ],
)
def test_bad_options_give_one_line_messages(name, options, message):
    with pytest.raises(ValueError) as info:
        load_dataset(name, **options)
    assert str(info.value) == message
