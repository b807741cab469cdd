"""Checks for dataset options: each returns the value in its canonical type or raises
``ValueError("Invalid <option>: <value> (<allowed>)")``."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nnbench.errors import invalid


def check_int(what: str, value, minimum: int) -> int:
    """An integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise invalid(what, value, f"must be an integer >= {minimum}")
    return int(value)


def check_real(what: str, value, allowed: str, ok: Callable[[float], bool]) -> float:
    """A finite real number (int or float, not a bool) for which ``ok`` holds."""
    number = isinstance(value, (int, float, np.integer, np.floating))
    if isinstance(value, bool) or not number or not math.isfinite(value) or not ok(value):
        raise invalid(what, value, allowed)
    return float(value)


def check_bool(what: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise invalid(what, value, "must be true or false")
    return bool(value)


def check_choice(what: str, value, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise invalid(what, value, "allowed: " + ", ".join(choices))
    return value


def check_path(what: str, value) -> Path:
    """A file-system path given as a string or ``os.PathLike``; ``~`` is expanded."""
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise invalid(what, value, "must be a file-system path")
    return Path(value).expanduser()
