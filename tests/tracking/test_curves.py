"""The learning-curves picture (nnbench.tracking.curves): one panel per quantity, each
split's line where its numbers say, matplotlib's ticks, and gaps instead of failures."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nnbench.tracking import curves


def history(epochs=20, val=True, acc=True):
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "train/loss": 2.0 / e}
        if acc:
            row["train/acc"] = 1 - 1 / (e + 1)
        if val:
            row["val/loss"] = 2.2 / e
            if acc:
                row["val/acc"] = 1 - 1.2 / (e + 1)
        rows.append(row)
    return rows


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def color_mask(image: np.ndarray, hex_color: str, tolerance: int = 40) -> np.ndarray:
    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
    return np.abs(image - rgb).sum(axis=2) < tolerance


def test_classification_has_two_panels_and_regression_one(tmp_path):
    curves.draw_curves(history(), tmp_path / "c.png", "title")
    curves.draw_curves(history(acc=False), tmp_path / "r.png")
    assert Image.open(tmp_path / "c.png").size == (2 * curves.PANEL_W, curves.HEIGHT)
    assert Image.open(tmp_path / "r.png").size == (curves.PANEL_W, curves.HEIGHT)


def test_each_split_is_drawn_in_its_colour_only_when_it_has_numbers(tmp_path):
    curves.draw_curves(history(val=False), tmp_path / "t.png")
    image = pixels(tmp_path / "t.png")
    assert color_mask(image, curves.COLORS["train"]).sum() > 500
    assert color_mask(image, curves.COLORS["val"]).sum() == 0


def test_points_land_where_the_axes_put_them(tmp_path):
    """A constant accuracy of 0.5 over 10 epochs: the accuracy panel's train line is the
    horizontal row its y axis maps 0.5 to (image rows count from the top)."""
    rows = [{"epoch": e, "train/loss": 1.0, "train/acc": 0.5} for e in range(1, 11)]
    rows[-1]["train/acc"] = 0.7  # a range for the axis: 0.5 ... 0.7
    curves.draw_curves(rows, tmp_path / "p.png")
    image = pixels(tmp_path / "p.png")[:, curves.PANEL_W :]  # the accuracy panel
    lo, hi = curves.limits(np.array([0.5] * 9 + [0.7]), log=False)
    axis = curves.Axis(lo, hi, curves.BOTTOM, curves.HEIGHT - curves.TOP)
    expected_row = curves.HEIGHT - float(axis.pixel(0.5))
    mask = color_mask(image, curves.COLORS["train"])
    column = curves.LEFT + 40  # between epochs 1 and 9, clear of the legend
    rows_hit = np.nonzero(mask[:, column])[0]
    assert rows_hit.size and abs(rows_hit.mean() - expected_row) < 1.5, (rows_hit, expected_row)


def test_missing_and_nonpositive_values_leave_gaps(tmp_path):
    rows = history(epochs=6)
    rows[2]["val/loss"] = None  # an epoch without validation
    rows[3]["train/loss"] = 0.0  # nothing to put on a log axis
    rows[4]["train/loss"] = float("nan")
    assert curves.draw_curves(rows, tmp_path / "g.png") == tmp_path / "g.png"
    assert curves.draw_curves([], tmp_path / "none.png") is None


def test_a_missing_value_is_a_gap_in_the_line(tmp_path):
    """Epoch 5 without an accuracy: nothing of the line is drawn across it."""
    rows = [{"epoch": e, "train/loss": 1.0, "train/acc": 0.5} for e in range(1, 11)]
    rows[-1]["train/acc"] = 0.7
    rows[4]["train/acc"] = None
    curves.draw_curves(rows, tmp_path / "gap.png")
    image = pixels(tmp_path / "gap.png")[:, curves.PANEL_W :]
    xlo, xhi = curves.limits(np.arange(1.0, 11.0), log=False)
    x5 = float(curves.Axis(xlo, xhi, curves.LEFT, curves.PANEL_W - curves.RIGHT).pixel(5))
    mask = color_mask(image, curves.COLORS["train"])
    assert mask[:, int(x5) - 15 : int(x5) + 16].sum() == 0
    assert mask[:, int(x5) - 60 : int(x5) - 20].sum() > 0  # the line before the gap is there


@pytest.mark.parametrize(
    "lo, hi, log, expected",
    [
        (0.015, 1.2, True, [0.02, 0.05, 0.1, 0.2, 0.5, 1.0]),
        (0.5, 10.5, False, [2, 4, 6, 8, 10]),
    ],
)
def test_ticks_are_matplotlibs(lo, hi, log, expected):
    assert curves.ticks(lo, hi, log, integer=not log) == pytest.approx(expected)


def test_a_narrow_log_range_gets_plain_ticks():
    found = curves.ticks(0.50, 0.65, log=True)
    assert len(found) >= 3 and all(0.5 <= t <= 0.65 for t in found)
