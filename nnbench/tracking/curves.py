"""The learning-curves picture, drawn straight on matplotlib's Agg renderer.

A run's curves are drawn on the critical path of every tracked run: the training process
waits until its record is complete. Through a matplotlib Figure the two panels cost 70-140
ms (mostly the artists' layout machinery, for a picture whose layout never changes); drawn
here with the same renderer, font and colours they cost a few milliseconds. The picture:
one panel per quantity (loss on a log axis, accuracy), epochs across, a line with dots for
training and one for validation, a grid at the ticks, a legend, the run's title on top.

Ticks come from matplotlib's own locators (`MaxNLocator`, `LogLocator`), so they are the
numbers matplotlib would choose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PANEL_W, HEIGHT = 500, 360  # pixels per panel, at DPI
DPI = 100
LEFT, RIGHT, TOP, BOTTOM = 64, 14, 46, 48  # the plot area's margins inside a panel
COLORS = {"train": "#1f77b4", "val": "#ff7f0e"}  # matplotlib's C0 and C1
GRID, FRAME, TEXT = "#e6e6e6", "#000000", "#000000"
FONT_PT, TITLE_PT = 10, 12
_EXTENTS: dict = {}  # (text, size) -> (width, height, descent)


@dataclass
class Axis:
    """A data interval mapped onto a pixel interval, linear or logarithmic."""

    lo: float
    hi: float
    start: float  # pixel of lo
    end: float  # pixel of hi
    log: bool = False

    def _t(self, v):
        return np.log10(v) if self.log else v

    def pixel(self, values):
        lo, hi = self._t(self.lo), self._t(self.hi)
        return self.start + (self._t(np.asarray(values, float)) - lo) / (hi - lo) * (
            self.end - self.start
        )


def limits(values: np.ndarray, log: bool) -> tuple[float, float]:
    """The finite data's range with matplotlib's 5% margins (in log space on a log axis)."""
    finite = values[np.isfinite(values) & ((values > 0) if log else True)]
    if finite.size == 0:
        return (0.1, 10.0) if log else (0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    return (10**lo, 10**hi) if log else (lo, hi)


def ticks(lo: float, hi: float, log: bool, integer: bool = False) -> list[float]:
    """matplotlib's major ticks inside [lo, hi]: 1-2-5 per decade on a log axis (plain
    numbers on a linear one where the range spans less than two of them)."""
    from matplotlib.ticker import LogLocator, MaxNLocator

    if log:
        found = [t for t in LogLocator(subs=(1.0, 2.0, 5.0)).tick_values(lo, hi) if lo <= t <= hi]
        if len(found) >= 2:
            return found
    locator = MaxNLocator(nbins=6, integer=integer, steps=[1, 2, 2.5, 5, 10])
    return [t for t in locator.tick_values(lo, hi) if lo <= t <= hi]


def label(value: float) -> str:
    return f"{value:g}"


class Canvas:
    """An Agg renderer with the few primitives the picture needs (y grows upwards)."""

    def __init__(self, width: int, height: int):
        from matplotlib.backends.backend_agg import RendererAgg
        from matplotlib.font_manager import FontProperties

        self.renderer = RendererAgg(width, height, DPI)
        self.width, self.height = width, height
        self.fonts = {size: FontProperties(size=size) for size in (FONT_PT, TITLE_PT)}
        self.fill(0, 0, width, height, "#ffffff")

    def gc(self, color: str, width: float = 1.0):
        gc = self.renderer.new_gc()
        gc.set_foreground(color)
        gc.set_linewidth(width)
        gc.set_antialiased(True)
        gc.set_capstyle("butt")
        return gc

    def fill(self, x0, y0, x1, y1, color: str, edge: str | None = None) -> None:
        from matplotlib.colors import to_rgba
        from matplotlib.path import Path as MplPath
        from matplotlib.transforms import IdentityTransform

        box = MplPath([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)], closed=True)
        gc = self.gc(edge or color, 0.8 if edge else 0.0)
        self.renderer.draw_path(gc, box, IdentityTransform(), to_rgba(color))

    def line(self, xs, ys, color: str, width: float = 1.0) -> None:
        from matplotlib.path import Path as MplPath
        from matplotlib.transforms import IdentityTransform

        # A NaN point is a gap: Agg's path pipeline drops it and starts anew after it.
        path = MplPath(np.column_stack([xs, ys]))
        self.renderer.draw_path(self.gc(color, width), path, IdentityTransform())

    def dots(self, xs, ys, color: str, radius: float = 2.2) -> None:
        from matplotlib.colors import to_rgba
        from matplotlib.path import Path as MplPath
        from matplotlib.transforms import Affine2D, IdentityTransform

        points = np.column_stack([xs, ys])
        points = points[np.isfinite(points).all(axis=1)]
        if len(points):
            self.renderer.draw_markers(
                self.gc(color, 0.5),
                MplPath.unit_circle(),
                Affine2D().scale(radius),
                MplPath(points),
                IdentityTransform(),
                to_rgba(color),
            )

    def text(self, x, y, s: str, size=FONT_PT, ha="left", va="baseline", angle=0) -> None:
        """``s`` anchored at (x, y): ``ha`` left/center/right along the text, ``va``
        baseline/center/top across it; ``angle`` 0 or 90 (reading upwards)."""
        prop = self.fonts[size]
        width, height, descent = self.measure(s, size)
        along = {"left": 0.0, "center": width / 2, "right": width}[ha]
        across = {"baseline": 0.0, "center": (height - descent) / 2, "top": height - descent}[va]
        if angle == 90:  # the baseline is vertical, the glyphs stand on its left
            x, y = x + across, y - along
        else:
            x, y = x - along, y - across
        # Agg places text by its baseline's start, counting rows from the top.
        self.renderer.draw_text(self.gc(TEXT), x, self.height - y, s, prop, angle)

    def text_width(self, s: str, size=FONT_PT) -> float:
        return self.measure(s, size)[0]

    def measure(self, s: str, size=FONT_PT) -> tuple[float, float, float]:
        """Width, height and descent of ``s`` in pixels (remembered: tick labels recur)."""
        key = (s, size)
        if key not in _EXTENTS:
            prop = self.fonts[size]
            _EXTENTS[key] = self.renderer.get_text_width_height_descent(s, prop, False)
        return _EXTENTS[key]

    def png(self, path) -> None:
        from PIL import Image

        image = Image.frombuffer(
            "RGBA", (self.width, self.height), self.renderer.buffer_rgba(), "raw", "RGBA", 0, 1
        )
        image.convert("RGB").save(path, format="png", compress_level=1)


def draw_panel(canvas: Canvas, x0: float, epochs, series: dict, ylabel: str, log: bool):
    """One panel at horizontal offset ``x0``: ``series`` is {split: values per epoch}."""
    px0, px1 = x0 + LEFT, x0 + PANEL_W - RIGHT
    py0, py1 = BOTTOM, HEIGHT - TOP
    ex = np.asarray(epochs, float)
    values = np.concatenate([np.asarray(v, float) for v in series.values()])
    xlo, xhi = limits(ex, False)
    ylo, yhi = limits(values, log)
    xaxis, yaxis = Axis(xlo, xhi, px0, px1), Axis(ylo, yhi, py0, py1, log)
    for t in ticks(xlo, xhi, False, integer=True):  # grid, tick marks and labels
        x = float(xaxis.pixel(t))
        canvas.line([x, x], [py0, py1], GRID, 0.8)
        canvas.line([x, x], [py0, py0 - 4], FRAME, 0.8)
        canvas.text(x, py0 - 7, label(t), ha="center", va="top")
    for t in ticks(ylo, yhi, log):
        y = float(yaxis.pixel(t))
        canvas.line([px0, px1], [y, y], GRID, 0.8)
        canvas.line([px0 - 4, px0], [y, y], FRAME, 0.8)
        canvas.text(px0 - 7, y, label(t), ha="right", va="center")
    for split, vals in series.items():
        xs, ys = (
            xaxis.pixel(ex),
            yaxis.pixel(np.where(np.asarray(vals, float) > 0, vals, np.nan) if log else vals),
        )
        canvas.line(xs, ys, COLORS[split], 1.5)
        canvas.dots(xs, ys, COLORS[split])
    canvas.fill(px0, py0, px1, py1, "none", edge=FRAME)
    canvas.text((px0 + px1) / 2, py0 - 26, "epoch", ha="center", va="top")
    canvas.text(x0 + 16, (py0 + py1) / 2, ylabel, ha="center", va="top", angle=90)
    draw_legend(canvas, list(series), px1 - 8, py1 - 8 if not _rising(values) else py0 + 8)


def _rising(values: np.ndarray) -> bool:
    """Whether the curves end high (the legend then goes to the bottom right corner)."""
    finite = values[np.isfinite(values)]
    return finite.size > 1 and finite[-1] > finite[0]


def draw_legend(canvas: Canvas, splits: list[str], right: float, anchor: float) -> None:
    """A boxed legend whose right edge is ``right``; below ``anchor`` when it is the top
    edge (curves that fall), above it when it is the bottom edge (curves that rise)."""
    row, width = 18, 30 + max(canvas.text_width(s) for s in splits) + 12
    height = row * len(splits) + 8
    top = anchor if anchor > HEIGHT / 2 else anchor + height
    canvas.fill(right - width, top - height, right, top, "#ffffff", edge="#cccccc")
    for i, split in enumerate(splits):
        y = top - 4 - row * (i + 0.5)
        x = right - width + 8
        canvas.line([x, x + 20], [y, y], COLORS[split], 1.5)
        canvas.dots([x + 10], [y], COLORS[split])
        canvas.text(x + 28, y, split, va="center")


def draw_curves(history: list[dict], path: Path, title: str = "") -> Path | None:
    """Loss (and accuracy, for classification) per epoch, training and validation."""
    if not history:
        return None
    panels = [("loss", "loss", True)]
    if "train/acc" in history[0]:
        panels.append(("acc", "accuracy", False))
    canvas = Canvas(PANEL_W * len(panels), HEIGHT)
    epochs = [r["epoch"] for r in history]
    for i, (key, ylabel, log) in enumerate(panels):
        series = {}
        for split in COLORS:
            values = [r.get(f"{split}/{key}") for r in history]
            if any(v is not None for v in values):
                series[split] = [math.nan if v is None else v for v in values]
        draw_panel(canvas, i * PANEL_W, epochs, series, ylabel, log)
    if title:
        canvas.text(canvas.width / 2, HEIGHT - 14, title, size=TITLE_PT, ha="center", va="top")
    canvas.png(path)
    return path
