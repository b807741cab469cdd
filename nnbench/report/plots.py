"""The report's two pictures: every run's validation-loss curve on one chart, and the final
metric against each swept value. A diverged run has no numbers past its divergence: its
curve stops there with an x drawn at the top of the chart, and in the metric chart it sits
at the top, marked, instead of at a made-up value.
"""

from __future__ import annotations

import math
from pathlib import Path

from nnbench.report.runs import RunRow
from nnbench.tracking.plots import _pyplot

# How each unranked outcome is drawn at the top of a chart: marker, colour.
UNRANKED_STYLE = {
    "diverged": ("x", "tab:red"),
    "failed": ("v", "black"),
    "interrupted": ("s", "tab:orange"),
    "running": ("o", "tab:gray"),
}
TOP = 0.96  # axes fraction where unranked runs are drawn
DECADES_FOR_LOG = 2.0  # a positive axis spanning at least this many decades is drawn log


def label(row: RunRow, params: list[str]) -> str:
    """The legend text of a run: its swept values (``optimizer.lr=0.1``), else its name."""
    values = [f"{key}={row.params.get(key, '')}" for key in params]
    return ", ".join(values) if values else row.name


def _floats(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def _log_worthy(values: list[float]) -> bool:
    positive = [v for v in values if v > 0]
    if not values or len(positive) < len(values):
        return False
    return math.log10(max(positive) / min(positive)) >= DECADES_FOR_LOG


def _mark_top(ax, x: float, marker: str, color, label, size: float = 9, width: float = 2) -> None:
    """A marker at the top of the axes (x in data, y in axes coordinates): where a run that
    has no number to plot (diverged, failed, interrupted) is shown."""
    ax.plot(
        [x],
        [TOP],
        marker=marker,
        color=color,
        markersize=size,
        markeredgewidth=width,
        linestyle="none",
        transform=ax.get_xaxis_transform(),
        clip_on=False,
        label=label,
    )


def curves(rows: list[RunRow], params: list[str], key: str, path: Path, title: str) -> Path:
    """``key`` (val/loss) per epoch of every run on one chart, log y. A diverged run's
    curve ends at its last finite epoch; an x at the top marks the epoch it diverged in."""
    plt = _pyplot()
    rows = sorted(rows, key=lambda row: _sort_key(row, params))
    colors = _colors(plt, rows, params)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for row, color in zip(rows, colors, strict=True):
        text = label(row, params)
        steps, values = [s for s, _ in row.curve], [v for _, v in row.curve]
        if row.outcome != "diverged":
            suffix = "" if row.outcome == "completed" else f" ({row.outcome})"
            ax.plot(steps, values, marker=".", color=color, label=text + suffix)
            continue
        ax.plot(steps, values, marker=".", color=color)
        at = row.diverged_epoch or (row.epochs or 0) + 1
        _mark_top(ax, at, "x", color, f"{text} ({row.note()})", size=10, width=2.5)
    finite = [v for row in rows for _, v in row.curve]
    if finite and min(finite) > 0:
        ax.set_yscale("log")
    if any(row.outcome == "diverged" for row in rows):
        _headroom(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3, which="both")
    diverged = any(r.outcome == "diverged" for r in rows)
    ax.set_title(title + (" (x: diverged)" if diverged else ""))
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, plt, path)


def metric_vs_params(
    rows: list[RunRow], params: list[str], metric: str, path: Path, title: str
) -> Path | None:
    """The final ``metric`` against each swept param, one panel per param (at most 4)."""
    params = params[:4]
    if not params:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(params), figsize=(5 * len(params), 4), squeeze=False)
    for ax, key in zip(axes[0], params, strict=True):
        _panel(ax, rows, key, metric, single=len(params) == 1)
    fig.suptitle(title)
    return _save(fig, plt, path)


def _panel(ax, rows: list[RunRow], key: str, metric: str, single: bool) -> None:
    raw = [row.params.get(key, "") for row in rows]
    numeric = _floats(raw)
    if numeric is None:  # categories, in order of first appearance
        categories = list(dict.fromkeys(raw))
        xs = [float(categories.index(v)) for v in raw]
        ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
    else:
        xs = numeric
        if _log_worthy(numeric):
            ax.set_xscale("log")
    ranked = sorted(
        (x, row.metrics[metric])
        for x, row in zip(xs, rows, strict=True)
        if row.outcome == "completed" and metric in row.metrics
    )
    style = "o-" if single and numeric is not None else "o"
    ax.plot([x for x, _ in ranked], [y for _, y in ranked], style, label="completed")
    seen = set()
    for x, row in zip(xs, rows, strict=True):
        if row.outcome != "completed":
            marker, color = UNRANKED_STYLE.get(row.outcome, ("o", "tab:gray"))
            legend = row.outcome if row.outcome not in seen else None
            _mark_top(ax, x, marker, color, legend)
            seen.add(row.outcome)
    ys = [y for _, y in ranked]
    if ys and min(ys) > 0 and ("loss" in metric or "mse" in metric):
        ax.set_yscale("log")
    if seen:
        _headroom(ax)
    ax.set_xlabel(key)
    ax.set_ylabel(f"final {metric}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")


def _sort_key(row: RunRow, params: list[str]) -> tuple:
    """Runs in order of their swept values, numbers by value."""
    key = []
    for name in params:
        value = row.params.get(name, "")
        number = _floats([value])
        key.append((0, number[0], "") if number else (1, 0.0, value))
    return (*key, row.name)


def _colors(plt, rows: list[RunRow], params: list[str]) -> list:
    """A sequential colour map along a single numeric swept param (small to large values
    read as a gradient), else the usual colour cycle."""
    values = _floats([row.params.get(params[0], "") for row in rows]) if params else None
    if len(params) == 1 and values is not None and len(rows) > 1:
        cmap = plt.get_cmap("viridis")
        return [cmap(0.8 * i / (len(rows) - 1)) for i in range(len(rows))]
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return [cycle[i % len(cycle)] for i in range(len(rows))]


def _headroom(ax, fraction: float = 0.15) -> None:
    """Room above the data for the markers drawn at the top."""
    low, high = ax.get_ylim()
    if ax.get_yscale() == "log":
        ax.set_ylim(low, high * (high / low) ** fraction)
    else:
        ax.set_ylim(low, high + (high - low) * fraction)


def _save(fig, plt, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
