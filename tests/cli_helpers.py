"""Helpers for tests/test_cli.py: run the program, read its output, write small data files."""

from __future__ import annotations

import csv
import gzip
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

METRIC = re.compile(r"(\w+/\w+) (-?\d+\.\d+|nan|inf)")
JOB = re.compile(r"^\[job (\d+)\] (.*)$", re.MULTILINE)
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment for a run: Hydra's error rewriting on, MLflow's store and the data
    cache inside tmp_path."""
    dropped = ("HYDRA_FULL_ERROR", "MLFLOW_TRACKING_URI", "MLFLOW_LOGGING_LEVEL")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["NNBENCH_DATA"] = str(tmp_path / "cache")
    return env


def run_nnbench(tmp_path: Path, *args: str, command=None, tracking="none", timeout=120):
    """``python -m nnbench [tracking=none] ARGS`` (or ``command ...``) in tmp_path.

    MLflow tracking (the default) costs seconds per run, so runs here pass tracking=none
    unless ``tracking`` is None. stdout and stderr are decoded without newline translation,
    so that a "\r" the program writes is seen as written.
    """
    command = command or [sys.executable, "-m", "nnbench"]
    tracking_args = [] if tracking is None else [f"tracking={tracking}"]
    proc = subprocess.run(
        [*command, *tracking_args, *args],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        capture_output=True,
        timeout=timeout,
    )
    proc.stdout, proc.stderr = proc.stdout.decode(), proc.stderr.decode()
    return proc


def metrics(text: str) -> dict[str, float]:
    """{"test/acc": 0.95, ...} from a summary's or a job line's "key value" pairs."""
    return {key: float(value) for key, value in METRIC.findall(text)}


def jobs(stdout: str) -> dict[int, str]:
    """{job number: the rest of its "[job N] ..." line}."""
    return {int(num): rest for num, rest in JOB.findall(stdout)}


def changed(job_line: str) -> dict[str, str]:
    """The overrides a job line starts with: "a=1 b=x: completed ..." -> {"a": "1", "b": "x"}."""
    label = job_line.split(": ", 1)[0]
    return dict(token.split("=", 1) for token in label.split())


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX for uint8 data, written out: 0, 0, type 0x08, ndim, big-endian uint32 sizes, bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_mnist(folder: Path, n_train: int = 60, n_test: int = 20, gz: bool = False) -> Path:
    """Four MNIST-format files of random 28x28 images in folder/mnist; returns ``folder``."""
    rng = np.random.default_rng(0)
    arrays = (
        rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        np.arange(n_train, dtype=np.uint8) % 10,
        rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        np.arange(n_test, dtype=np.uint8) % 10,
    )
    (folder / "mnist").mkdir(parents=True, exist_ok=True)
    for name, array in zip(MNIST_FILES, arrays, strict=True):
        data = idx_bytes(array)
        path = folder / "mnist" / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(data) if gz else data)
    return folder


def write_blobs_csv(path: Path, rows: int = 200) -> Path:
    """Three features and an integer ``label`` column (placed second, not last): the label
    is which of three well-separated centers a row was drawn around."""
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 4.0], [0.0, 4.0, -4.0]])
    labels = np.arange(rows) % 3
    x = centers[labels] + rng.normal(size=(rows, 3))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["f0", "label", "f1", "f2"])
        for features, label in zip(x, labels, strict=True):
            writer.writerow([f"{features[0]:.4f}", int(label), *(f"{v:.4f}" for v in features[1:])])
    return path
