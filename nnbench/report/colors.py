"""The colours of a report's runs, and how the curves chart is split into panels, so that
it stays readable from 2 to 200 runs.

A sweep with a numeric swept param is coloured by that param (the one with the most
distinct values) along a colour map, with a colour bar: a log scale where its grid spans
decades. The other swept params, if any, split the chart into panels, one per
combination of their values. A sweep of categories alone gets distinct colours and a
legend. Within a panel no two runs share a colour: runs with the same value are told apart
by a lighter or darker shade.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nnbench.report.runs import RunRow
from nnbench.tracking.names import run_name

DECADES_FOR_LOG = 2.0  # a positive axis spanning at least this many decades is drawn log
MAX_PANELS = 36  # more combinations than this: one panel, coloured by the numeric param
COLOR_MAP = "viridis"
COLOR_SPAN = (0.0, 0.9)  # the part of the map used: its palest yellow is hard to see


@dataclass
class Scheme:
    """How the runs are coloured: by ``primary``'s value (``norm`` maps it to 0..1 of
    the colour map), else by position in the cycle of distinct colours."""

    primary: str | None  # the numeric param colouring the runs
    values: dict[str, float]  # run id -> primary's value
    log: bool
    low: float
    high: float

    def fraction(self, value: float) -> float:
        if self.high == self.low:
            return 0.5
        if self.log:
            span = math.log10(self.high) - math.log10(self.low)
            return (math.log10(value) - math.log10(self.low)) / span
        return (value - self.low) / (self.high - self.low)

    def color(self, plt, value: float):
        low, high = COLOR_SPAN
        return plt.get_cmap(COLOR_MAP)(low + (high - low) * self.fraction(value))

    def colorbar(self, plt, fig, axes) -> None:
        from matplotlib.colors import ListedColormap, LogNorm, Normalize

        cmap = plt.get_cmap(COLOR_MAP)
        low, high = COLOR_SPAN
        shown = ListedColormap(cmap([low + (high - low) * i / 255 for i in range(256)]))
        norm = (LogNorm if self.log else Normalize)(vmin=self.low, vmax=self.high)
        if self.low == self.high:
            norm = Normalize(vmin=self.low - 1, vmax=self.high + 1)
        mappable = plt.cm.ScalarMappable(norm=norm, cmap=shown)
        bar = fig.colorbar(mappable, ax=axes, fraction=0.04, pad=0.02, aspect=30)
        bar.set_label(self.primary)


def floats(values: list[str]) -> list[float] | None:
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return numbers if all(math.isfinite(n) for n in numbers) else None


def log_worthy(values: list[float]) -> bool:
    positive = [v for v in values if v > 0]
    if not values or len(positive) < len(values):
        return False
    return math.log10(max(positive) / min(positive)) >= DECADES_FOR_LOG


def scheme(rows: list[RunRow], params: list[str]) -> Scheme:
    """Colour by the numeric swept param with the most distinct values (the first such on
    a tie), if any."""
    best, best_count = None, 1
    for key in params:
        numbers = floats([row.params.get(key, "") for row in rows])
        if numbers is not None and len(set(numbers)) > best_count:
            best, best_count = key, len(set(numbers))
    if best is None:
        return Scheme(None, {}, False, 0.0, 0.0)
    values = {row.run_id: float(row.params[best]) for row in rows}
    numbers = list(values.values())
    return Scheme(best, values, log_worthy(numbers), min(numbers), max(numbers))


def panels(rows: list[RunRow], params: list[str], colouring: Scheme) -> list[tuple[str, list]]:
    """(title, rows) per panel: one per combination of the swept params other than the
    colouring one, in order of first appearance; one untitled panel when there is no
    such param, no colouring param, or too many combinations."""
    others = [key for key in params if key != colouring.primary]
    if colouring.primary is None or not others:
        return [("", rows)]
    groups: dict[str, list] = {}
    for row in rows:
        groups.setdefault(combination(row, others), []).append(row)
    if len(groups) > MAX_PANELS:
        return [("", rows)]
    return list(groups.items())


def combination(row: RunRow, keys: list[str]) -> str:
    """``l2=1e-4 batchnorm=True``: the row's values of ``keys``, short."""
    return run_name([f"{key}={row.params.get(key, '')}" for key in keys])


def distinct_colors(plt, rows: list[RunRow], colouring: Scheme) -> list:
    """One colour per row, no two alike: by the colouring param's value, shaded apart
    where values repeat; else as many distinct colours as rows."""
    from matplotlib.colors import to_rgba

    if colouring.primary is None:
        return cycle_colors(plt, len(rows))
    colors, seen = [], {}
    for row in rows:
        base = to_rgba(colouring.color(plt, colouring.values[row.run_id]))
        repeat = seen.get(base, 0)
        seen[base] = repeat + 1
        colors.append(shade(base, repeat))
    return colors


def shade(rgba, step: int):
    """``rgba`` for step 0, then alternately darker and lighter, further at each step."""
    if step == 0:
        return rgba
    amount = min(0.15 * ((step + 1) // 2), 0.75)
    target = 0.0 if step % 2 else 1.0
    r, g, b, a = rgba
    return (*(c + (target - c) * amount for c in (r, g, b)), a)


def cycle_colors(plt, count: int) -> list:
    """``count`` distinct colours: Matplotlib's 10 (20 for up to 20), else spread over a
    rainbow-like map."""
    if count <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(count)]
    if count <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(count)]
    return [plt.get_cmap("turbo")(0.05 + 0.9 * i / (count - 1)) for i in range(count)]
