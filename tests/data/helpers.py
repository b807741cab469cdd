"""Small files written by hand for the data tests: IDX images and CSV tables."""

from __future__ import annotations

import csv
import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np

IDX_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def idx_bytes(array: np.ndarray, type_code: int, dtype: str) -> bytes:
    """The IDX layout, spelled out: 0, 0, type byte, ndim byte, big-endian uint32 sizes,
    then the elements big-endian in C order."""
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def write_idx(path: Path, array: np.ndarray, type_code: int = 0x08, dtype: str = ">u1") -> Path:
    data = idx_bytes(array, type_code, dtype)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_mnist(folder: Path, n_train: int = 50, n_test: int = 20, seed: int = 0, gz=True):
    """Four MNIST-format files of random 28x28 uint8 images with labels 0..9 (every class
    present in the training file); returns (train_images, train_labels, test_images,
    test_labels) as written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = (
        rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        np.arange(n_train, dtype=np.uint8) % 10,
        rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=n_test, dtype=np.uint8),
    )
    for name, array in zip(IDX_NAMES, arrays, strict=True):
        write_idx(folder / (name if gz else name.removesuffix(".gz")), array)
    return arrays


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path
