"""A run's decision-boundary picture, for 2-D inputs: the model's predicted class over the
input plane with the points on top, drawn with pyplot on the Agg backend (no display). The
other picture of a run, its learning curves, is `nnbench.tracking.curves`. matplotlib is
imported inside the functions, which only the tracking agent calls: a training run never
loads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
