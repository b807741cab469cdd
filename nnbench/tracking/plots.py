"""PNG pictures of a run: learning curves and, for 2-D inputs, the decision boundary.

matplotlib is imported here only, with the Agg backend: no display is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


SPLITS = ("train", "val")


def learning_curves(history: list[dict], path: Path, title: str = "") -> Path | None:
    """Loss (and accuracy, for classification) per epoch, training and validation."""
    if not history:
        return None
    panels = (("loss", "loss"),) + ((("acc", "accuracy"),) if "train/acc" in history[0] else ())
    figure = _curves_figure(panels)
    epochs = [r["epoch"] for r in history]
    for (key, split), line in figure.lines.items():
        values = [
            np.nan if r.get(f"{split}/{key}") is None else r[f"{split}/{key}"] for r in history
        ]
        shown = not np.isnan(values).all()
        line.set_data(epochs, values)  # NaN: a gap (an epoch without that number)
        line.set_label(split if shown else f"_{split}")  # an underscore keeps it off the legend
    for ax in figure.axes:
        ax.relim()
        ax.autoscale_view()
        ax.legend(loc="best")
    figure.title.set_text(title)
    figure.fig.savefig(path, dpi=100)
    return path


class _CurvesFigure:
    """The learning-curves figure for one set of panels, built once and redrawn with each
    run's numbers: a warm tracking agent draws many runs' curves, and laying out the axes
    and ticks is half of drawing them."""

    def __init__(self, panels):
        from matplotlib.figure import Figure  # no pyplot: nothing global, nothing to close
        from matplotlib.ticker import MaxNLocator

        self.fig = Figure(figsize=(5 * len(panels), 3.6))
        self.axes = list(self.fig.subplots(1, len(panels), squeeze=False)[0])
        self.lines = {}
        for ax, (key, label) in zip(self.axes, panels, strict=True):
            for split in SPLITS:
                (self.lines[key, split],) = ax.plot([], [], marker=".", label=split)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(label)
            if key == "loss":
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        self.title = self.fig.suptitle("")
        # Fixed margins: tight_layout would measure every tick label first (a third of the time).
        left = 0.18 / len(panels)  # room for the y label and tick labels, in figure widths
        self.fig.subplots_adjust(left=left, right=0.98, bottom=0.14, top=0.87, wspace=0.25)


_FIGURES: dict = {}


def _curves_figure(panels) -> _CurvesFigure:
    if panels not in _FIGURES:
        _pyplot()  # the Agg backend
        _FIGURES[panels] = _CurvesFigure(panels)
    return _FIGURES[panels]


def decision_boundary(model, x: np.ndarray, y: np.ndarray, path: Path, title="") -> Path | None:
    """The predicted class over the input plane, with the points on top (2-D inputs only)."""
    grid = boundary_grid(model, x, y)
    return None if grid is None else draw_decision_boundary(**grid, path=path, title=title)


def boundary_grid(model, x: np.ndarray, y: np.ndarray, size: int = 200) -> dict | None:
    """The model's predicted class on a ``size`` x ``size`` grid covering ``x`` (padded by
    0.5), with the points: the numbers behind the decision-boundary picture. None unless
    the inputs are 2-D."""
    if x.shape[1] != 2:
        return None
    pad = 0.5
    (x0, y0), (x1, y1) = x.min(axis=0) - pad, x.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(x0, x1, size), np.linspace(y0, y1, size))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    logits = model.backend.to_host(model.forward(grid, training=False))
    labels = (logits[:, 0] > 0) if logits.shape[1] == 1 else logits.argmax(axis=1)
    return {"gx": gx, "gy": gy, "labels": labels.reshape(gx.shape), "x": x, "y": np.ravel(y)}


def draw_decision_boundary(gx, gy, labels, x, y, path: Path, title: str = "") -> Path:
    """Draw `boundary_grid`'s numbers: the classes as filled regions, the points on top."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.contourf(gx, gy, labels.astype(float), alpha=0.3, cmap="coolwarm")
    ax.scatter(x[:, 0], x[:, 1], c=y, s=12, cmap="coolwarm", edgecolors="k", lw=0.3)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
