"""A user's own table: a CSV file with a header row, one target column, numeric features."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from nnbench.data.dataset import Samples
from nnbench.data.options import check_choice, check_path
from nnbench.errors import invalid

CSV_TASKS = ("auto", "multiclass", "binary", "regression")
OTHER_DELIMITERS = (";", "\t", "|")  # what a one-column header may really be separated by
MAX_AUTO_CLASSES = 20  # task="auto": an integer target with at most this many values classifies


def csv_file(rng, *, path=None, target=None, task="auto", delimiter=",") -> Samples:
    """Rows of the CSV file ``path``; the first row names the columns.

    ``target`` (default: the last column) is what to predict; every other column is a
    numeric feature. ``task="auto"`` classifies when the target is text, or integers with at
    most 20 distinct values (labels 0..k-1 in sorted order, ``class_names`` the original
    values), and regresses on any other numeric target. ``task`` may also be "multiclass",
    "binary" (exactly two classes) or "regression". ``rng`` is unused: the file is fixed.
    """
    if path is None:
        raise invalid("path", None, "dataset=csv needs path=<file.csv>")
    task = check_choice("task", task, CSV_TASKS)
    delimiter = _delimiter(delimiter)
    header, rows, lines = _read_rows(check_path("path", path), delimiter)
    column = _target_column(header, target)
    names = [name for i, name in enumerate(header) if i != column]
    x = _features([[v for i, v in enumerate(r) if i != column] for r in rows], names, lines)
    y, task, class_names = _targets([r[column] for r in rows], header[column], lines, task)
    return Samples(x, y, task, class_names)


def _delimiter(value) -> str:
    """One character; ``tab`` (or a written ``\\t``) is the tab character."""
    value = "\t" if value in ("tab", "\\t") else value
    if not isinstance(value, str) or len(value) != 1:
        raise invalid("delimiter", value, "one character, e.g. ',' or ';', or tab")
    return value


def _read_rows(path: Path, delimiter: str):
    """(header, data rows, their line numbers); blank lines are skipped."""
    if path.is_dir():
        raise invalid("path", str(path), "a folder, not a file: name the CSV file in it")
    if not path.is_file():
        raise invalid("path", str(path), "no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            numbered = list(enumerate(csv.reader(f, delimiter=delimiter), start=1))
    except UnicodeDecodeError as exc:
        where = f"byte {exc.object[exc.start]:#04x} at offset {exc.start} is not UTF-8 text"
        raise invalid("path", str(path), f"not a CSV text file: {where}") from None
    except csv.Error as exc:
        raise invalid("path", str(path), f"not a CSV text file: {exc}") from None
    except OSError as exc:
        raise invalid("path", str(path), f"cannot be read: {exc.strerror or exc}") from None
    numbered = [(n, row) for n, row in numbered if any(cell.strip() for cell in row)]
    if not numbered:
        raise invalid("path", str(path), "the file is empty; a header row is required")
    header = [name.strip() for name in numbered[0][1]]
    if len(header) < 2:
        raise invalid("path", str(path), _one_column(header, delimiter))
    if all(_number(name) is not None for name in header):
        raise invalid("header", header, "the first row must name the columns")
    if len(numbered) < 2:
        raise invalid("path", str(path), "needs a header row, data rows and two columns or more")
    for n, row in numbered[1:]:
        if len(row) != len(header):
            where = f"line {n} has {len(row)} fields; the header has {len(header)}"
            raise invalid("row", row, where)
    return header, [row for _, row in numbered[1:]], [n for n, _ in numbered[1:]]


def _one_column(header: list[str], delimiter: str) -> str:
    """Why a header of one column is refused, with the separator it seems to use."""
    found = [d for d in OTHER_DELIMITERS if d != delimiter and d in header[0]]
    if found:
        setting = (
            "dataset.delimiter=tab" if found[0] == "\t" else f"'dataset.delimiter=\"{found[0]}\"'"
        )
        return (
            f"the header has one column when split at {delimiter!r}, and holds {found[0]!r}: "
            f"set the separator with {setting}"
        )
    return f"the header has one column when split at {delimiter!r}; two or more are needed"


def _target_column(header: list[str], target) -> int:
    if target is None:
        return len(header) - 1
    if target not in header:
        raise invalid("target", target, "available columns: " + ", ".join(header))
    if header.count(target) > 1:
        raise invalid("target", target, "more than one column has this name")
    return header.index(target)


def _features(rows: list[list[str]], names: list[str], lines: list[int]) -> np.ndarray:
    """(n, features) float64; the first cell that is not a finite number is reported."""
    x = np.empty((len(rows), len(names)))
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            value = _number(cell)
            if value is None:
                where = f"line {lines[r]}: features must be finite numbers"
                raise invalid(f"value in column {names[c]!r}", cell, where)
            x[r, c] = value
    return x


def _targets(cells: list[str], name: str, lines: list[int], task: str):
    """(y, task, class_names) for the target column's cells."""
    numbers = [_number(cell) for cell in cells]
    numeric = None not in numbers
    if task == "auto":
        integer = numeric and all(v.is_integer() for v in numbers)
        few = len(set(numbers)) <= MAX_AUTO_CLASSES
        task = "multiclass" if not numeric or (integer and few) else "regression"
    if task == "regression":
        if not numeric:
            bad = numbers.index(None)
            where = f"line {lines[bad]}: regression targets must be finite numbers"
            raise invalid(f"value in column {name!r}", cells[bad], where)
        return np.array(numbers, dtype=np.float64).reshape(-1, 1), task, None
    return _classes(numbers if numeric else [c.strip() for c in cells], name, task)


def _classes(keys: list, name: str, task: str):
    """Labels 0..k-1 in the sorted order of the distinct ``keys``, with their names."""
    classes = sorted(set(keys))
    if len(classes) < 2:
        raise invalid("target", name, "the column holds a single value: nothing to classify")
    if task == "binary" and len(classes) != 2:
        raise invalid("task", task, f"column {name!r} has {len(classes)} classes, binary needs 2")
    index = {key: i for i, key in enumerate(classes)}
    labels = np.array([index[key] for key in keys], dtype=np.int64)
    names = tuple(_class_name(c) for c in classes)
    if task == "binary":
        return labels.astype(np.float64).reshape(-1, 1), task, names
    return labels, task, names


def _class_name(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(cell: str) -> float | None:
    """``float(cell)`` when it is a finite number, else None."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
