"""The report's two pictures: every run's validation-loss curve (one chart, or one panel
per combination of the other swept params: `colors`), and the final metric against each
swept value. A diverged run has no numbers past its divergence: its curve stops there with
an x drawn at the top of the chart, and in the metric chart it sits at the top, marked
(with how many runs share the mark), instead of at a made-up value.
"""

from __future__ import annotations

import math
from pathlib import Path

from nnbench.report import colors
from nnbench.report.runs import RunRow

# How each unranked outcome is drawn at the top of a chart: marker, colour.
UNRANKED_STYLE = {
    "diverged": ("x", "tab:red"),
    "failed": ("v", "black"),
    "interrupted": ("s", "tab:orange"),
    "running": ("o", "tab:gray"),
}
TOP = 0.96  # axes fraction where unranked runs are drawn


def label(row: RunRow, params: list[str]) -> str:
    """The legend text of a run: its swept values (``optimizer.lr=0.1``), else its name."""
    values = [f"{key}={row.params.get(key, '')}" for key in params]
    return ", ".join(values) if values else row.name


_floats = colors.floats
_log_worthy = colors.log_worthy


def _pyplot():
    """pyplot on the Agg backend: files only, no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    """`curves_figure`, written to ``path``."""
    plt = _pyplot()
    return _save(curves_figure(plt, rows, params, key, title), plt, path)


def curves_figure(plt, rows: list[RunRow], params: list[str], key: str, title: str):
    """``key`` (val/loss) per epoch of every run, log y, readable from 2 to 200 runs
    (`colors`): coloured by the numeric swept param on a colour bar, one panel per
    combination of the other swept params; a sweep of categories alone gets distinct
    colours and a legend under the chart, never over it. A diverged run's curve ends at
    its last finite epoch; an x at the top, in its colour, marks the epoch it diverged in
    (side by side, and counted, where several diverged in the same epoch)."""
    rows = sorted(rows, key=lambda row: _sort_key(row, params))
    colouring = colors.scheme(rows, params)
    groups = colors.panels(rows, params, colouring)
    columns = min(6, math.ceil(math.sqrt(len(groups))))
    lines = math.ceil(len(groups) / columns)
    size = (8, 4.5) if len(groups) == 1 else (3.2 * columns + 1, 2.5 * lines + 0.8)
    fig, axes = plt.subplots(
        lines, columns, figsize=size, squeeze=False, sharex=True, sharey=True, layout="constrained"
    )
    handles = {}
    for ax, (panel_title, members) in zip(axes.flat, groups, strict=False):
        palette = colors.distinct_colors(plt, members, colouring)
        handles.update(_draw_curves(ax, members, params, palette, colouring.primary is None))
        ax.set_title(panel_title, fontsize="small")
    for ax in axes.flat[len(groups) :]:
        ax.set_visible(False)
    _finish_curve_axes(axes, rows, key, len(groups))
    diverged = any(row.outcome == "diverged" for row in rows)
    fig.suptitle(title + (" (x: diverged)" if diverged else ""))
    if colouring.primary is not None:
        colouring.colorbar(plt, fig, axes)
    if handles:
        per_column = 12 if len(handles) > 24 else 8
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=max(1, min(6, math.ceil(len(handles) / per_column))),
            fontsize="small",
            frameon=False,
        )
    return fig


def _draw_curves(ax, rows: list[RunRow], params: list[str], palette, named: bool) -> dict:
    """The rows' curves on ``ax``; the legend entries to show ({text: handle}): every run
    when ``named`` (no colour bar says which is which), else one per kind of marker."""
    from matplotlib.lines import Line2D

    entries, spread = {}, _spread(rows)
    _count_diverged(ax, rows)
    for row, color in zip(rows, palette, strict=True):
        steps, values = [s for s, _ in row.curve], [v for _, v in row.curve]
        size = 5 if len(steps) < 3 else 3
        (line,) = ax.plot(steps, values, marker="o", color=color, linewidth=1.2, markersize=size)
        text = label(row, params)
        if row.outcome == "diverged":
            at = (row.diverged_epoch or (row.epochs or 0) + 1) + spread.get(row.run_id, 0.0)
            _mark_top(ax, at, "x", color, None, size=8, width=2)
            if named:
                entries[f"{text} ({row.note()})"] = Line2D(
                    [], [], color=color, marker="x", markersize=8, markeredgewidth=2
                )
            else:
                entries["diverged (x at the epoch)"] = Line2D(
                    [], [], color="gray", marker="x", linestyle="none", markeredgewidth=2
                )
        elif named:
            suffix = "" if row.outcome == "completed" else f" ({row.outcome})"
            entries[text + suffix] = line
    return entries


def _count_diverged(ax, rows: list[RunRow]) -> None:
    """Above the x marks of an epoch where several runs diverged: how many."""
    at: dict[int, int] = {}
    for row in rows:
        if row.outcome == "diverged":
            epoch = row.diverged_epoch or (row.epochs or 0) + 1
            at[epoch] = at.get(epoch, 0) + 1
    for epoch, count in at.items():
        if count > 1:
            ax.annotate(
                f"{count}x",
                (epoch, TOP),
                xycoords=ax.get_xaxis_transform(),
                xytext=(0, 7),
                textcoords="offset points",
                ha="center",
                fontsize="x-small",
                color="tab:red",
            )


def _spread(rows: list[RunRow]) -> dict[str, float]:
    """Offsets (in epochs) that set side by side the diverged runs marked at one epoch."""
    at: dict[int, list[str]] = {}
    for row in rows:
        if row.outcome == "diverged":
            at.setdefault(row.diverged_epoch or 0, []).append(row.run_id)
    offsets = {}
    for ids in at.values():
        width = min(0.8, 0.3 * (len(ids) - 1))
        for i, run_id in enumerate(ids):
            offsets[run_id] = (i / (len(ids) - 1) - 0.5) * width if len(ids) > 1 else 0.0
    return offsets


def _finish_curve_axes(axes, rows: list[RunRow], key: str, used: int) -> None:
    finite = [v for row in rows for _, v in row.curve]
    diverged = any(row.outcome == "diverged" for row in rows)
    for index, ax in enumerate(axes.flat[:used]):
        if finite and min(finite) > 0:
            ax.set_yscale("log")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3, which="both")
        if index % axes.shape[1] == 0:
            ax.set_ylabel(key)
        if index >= used - axes.shape[1]:
            ax.set_xlabel("epoch")
    if diverged and used:
        _headroom(axes.flat[0])  # shared y: room at the top of every panel


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
        elif min(numeric) == 0 and _log_worthy([v for v in numeric if v != 0]):
            # 0 and a log grid (L2 0, 1e-4, 1e-3): linear near 0, log beyond
            ax.set_xscale("symlog", linthresh=min(v for v in numeric if v > 0))
    ranked = sorted(
        (x, row.metrics[metric])
        for x, row in zip(xs, rows, strict=True)
        if row.outcome == "completed" and metric in row.metrics
    )
    style = "o-" if single and numeric is not None and len(set(xs)) == len(xs) else "o"
    alpha = 1.0 if len(ranked) <= 24 else 0.6
    ax.plot([x for x, _ in ranked], [y for _, y in ranked], style, label="completed", alpha=alpha)
    seen = set()
    unranked: dict[tuple, int] = {}
    for x, row in zip(xs, rows, strict=True):
        if row.outcome != "completed":
            unranked[(x, row.outcome)] = unranked.get((x, row.outcome), 0) + 1
    for (x, outcome), count in unranked.items():
        marker, color = UNRANKED_STYLE.get(outcome, ("o", "tab:gray"))
        _mark_top(ax, x, marker, color, outcome if outcome not in seen else None)
        seen.add(outcome)
        if count > 1:  # several runs at one point: say how many
            ax.annotate(
                f"{count}",
                (x, TOP),
                xycoords=ax.get_xaxis_transform(),
                xytext=(6, -3),
                textcoords="offset points",
                fontsize="small",
                color=color,
            )
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


def _headroom(ax, fraction: float = 0.15) -> None:
    """Room above the data for the markers drawn at the top."""
    low, high = ax.get_ylim()
    if ax.get_yscale() == "log":
        ax.set_ylim(low, high * (high / low) ** fraction)
    else:
        ax.set_ylim(low, high + (high - low) * fraction)


def _save(fig, plt, path: Path) -> Path:
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
