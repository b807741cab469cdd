"""Weights on disk: a model's state dict as a plain ``.npz`` of named arrays.

Files are read with ``allow_pickle=False``, so a file holding pickled Python objects is
refused rather than executed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from nnbench.errors import invalid


def save_weights(path, state: dict[str, np.ndarray]) -> Path:
    """Write ``state`` to ``path`` atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **{key: np.asarray(value) for key, value in state.items()})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_weights(path) -> dict[str, np.ndarray]:
    """The arrays of a weights file; pickled objects are refused with a ValueError."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as exc:  # NumPy: "Object arrays cannot be loaded when allow_pickle=False"
        raise invalid(
            "weights file", str(path), "it holds pickled objects; only plain arrays are loaded"
        ) from exc
    except (OSError, EOFError) as exc:
        raise invalid("weights file", str(path), f"not a readable .npz file: {exc}") from exc
