"""MNIST and Fashion-MNIST from their official IDX files, cached and verified by MD5.

The files live in ``<root>/<name>/`` where ``root`` is the ``root`` option, else the
``NNBENCH_DATA`` environment variable, else ``~/.cache/nnbench``. Missing files are
downloaded once (checksums and mirrors as in torchvision's ``datasets/mnist.py``).
A ``.gz`` file is checked against the official MD5; an uncompressed file put there by hand
has no official checksum and is only checked for a well-formed IDX layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnbench.data.dataset import Samples
from nnbench.data.download import DownloadError, fetch, file_md5
from nnbench.data.idx import read_idx
from nnbench.data.options import check_bool, check_int, check_path
from nnbench.errors import DatasetUnavailableError, invalid

DEFAULT_ROOT = "~/.cache/nnbench"


@dataclass(frozen=True)
class ImageSource:
    """Where one IDX dataset comes from. ``files``: (name, md5 of that .gz) for the training
    images, training labels, test images and test labels, in that order."""

    files: tuple[tuple[str, str], ...]
    mirrors: tuple[str, ...]
    class_names: tuple[str, ...]


_IDX_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_MNIST_MD5 = (
    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "d53e105ee54ea40749a09fcbcd1e9432",
    "9fb629c4189551a2d022fa330f9573f3",
    "ec29112dd5afa0611ce80d1b7f02629c",
)
_FASHION_MD5 = (
    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "25c81989df183df01b3e8a0aad5dffbe",
    "bef4ecab320f06d8554ea6380940ec79",
    "bb300cfdad3c16e7a12a480ee83cd310",
)
_FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
SOURCES = {
    "mnist": ImageSource(
        files=tuple(zip(_IDX_NAMES, _MNIST_MD5, strict=True)),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        class_names=tuple(str(d) for d in range(10)),
    ),
    "fashion_mnist": ImageSource(
        files=tuple(zip(_IDX_NAMES, _FASHION_MD5, strict=True)),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        class_names=_FASHION_CLASSES,
    ),
}


def mnist(rng, *, root=None, limit=None, verify=True, download=True, standardize=False):
    """MNIST: 70,000 grey 28x28 handwritten digits, 60,000 to train and 10,000 to test;
    10 classes "0".."9". See `load_images` for the options."""
    return load_images("mnist", rng, root, limit, verify, download, standardize)


def fashion_mnist(rng, *, root=None, limit=None, verify=True, download=True, standardize=False):
    """Fashion-MNIST (Zalando): 70,000 grey 28x28 photos of clothing in MNIST's format and
    split; 10 classes from "T-shirt/top" to "Ankle boot". See `load_images` for the options."""
    return load_images("fashion_mnist", rng, root, limit, verify, download, standardize)


def load_images(name, rng, root, limit, verify, download, standardize) -> Samples:
    """Pixels scaled to [0, 1] and flattened to 784 features; the official test set is the
    test part (validation comes from the training file).

    ``limit=N`` keeps N training-file images chosen at random (the test set stays whole, so
    test accuracy stays comparable). ``verify=False`` skips the MD5 check of cached files.
    ``download=False`` never touches the network. ``standardize`` is off by default: the
    pixels are already on one scale, and per-pixel statistics of nearly always blank border
    pixels would blow their rare ink up to huge values.
    """
    source = SOURCES[name]
    folder = data_root(root) / name
    limit = None if limit is None else check_int("limit", limit, 2)
    verify, download = check_bool("verify", verify), check_bool("download", download)
    standardize = check_bool("standardize", standardize)
    paths = ensure_files(name, source, folder, verify, download)
    train_images, train_labels = _read_pair(paths[0], paths[1], len(source.class_names))
    test_images, test_labels = _read_pair(paths[2], paths[3], len(source.class_names))
    if limit is not None and limit < len(train_labels):
        keep = np.sort(rng.choice(len(train_labels), size=limit, replace=False))
        train_images, train_labels = train_images[keep], train_labels[keep]
    return Samples(
        x=_pixels(train_images),
        y=train_labels,
        task="multiclass",
        class_names=source.class_names,
        x_test=_pixels(test_images),
        y_test=test_labels,
        standardize=standardize,
    )


def data_root(root=None) -> Path:
    """The cache folder: ``root``, else $NNBENCH_DATA, else ~/.cache/nnbench."""
    if root is None:
        root = os.environ.get("NNBENCH_DATA") or DEFAULT_ROOT
    return check_path("root", root)


def ensure_files(name, source: ImageSource, folder: Path, verify: bool, download: bool):
    """The paths of the four IDX files, downloading the missing ones when allowed."""
    paths = [_cached(folder, filename, md5, verify) for filename, md5 in source.files]
    if not download and not all(path.exists() for path in paths):
        raise _unavailable(name, source, folder, "download=False")
    for (filename, md5), path in zip(source.files, paths, strict=True):
        if path.exists():
            continue
        try:
            fetch([mirror + filename for mirror in source.mirrors], folder / filename, md5)
        except DownloadError as exc:
            raise _unavailable(name, source, folder, f"download failed: {exc}") from exc
    return paths


def _cached(folder: Path, filename: str, md5: str, verify: bool) -> Path:
    """The file to read: the .gz when present (its MD5 checked if ``verify``), else the
    uncompressed file when present, else the .gz still to be downloaded."""
    gz, plain = folder / filename, folder / filename.removesuffix(".gz")
    if gz.exists():
        if verify:
            _check_md5(gz, md5)
        return gz
    return plain if plain.exists() else gz


def _check_md5(path: Path, md5: str) -> None:
    actual = file_md5(path)
    if actual != md5:
        raise DatasetUnavailableError(
            f"{path} has MD5 {actual}, not the official file's {md5}: delete it to download "
            "it again, or pass verify=False to use it as it is"
        )


def _unavailable(name, source: ImageSource, folder: Path, reason: str):
    missing = [f for f, _ in source.files if not _cached(folder, f, "", False).exists()]
    return DatasetUnavailableError(
        f"dataset={name} needs {', '.join(missing)} in {folder} ({reason}); download them "
        f"from {source.mirrors[0]} into that folder (gzipped or not), or point the root "
        "option or NNBENCH_DATA at a folder holding them"
    )


def _read_pair(images_path: Path, labels_path: Path, classes: int):
    """(images (n, rows, cols) uint8, labels (n,) int64), checked against each other."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        got = f"{images.dtype} {images.shape}"
        raise invalid("IDX file", str(images_path), f"expected uint8 (n, rows, cols), got {got}")
    if labels.shape != (len(images),):
        expected = f"expected {len(images)} labels (one per image), got shape {labels.shape}"
        raise invalid("IDX file", str(labels_path), expected)
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise invalid("IDX file", str(labels_path), f"labels must lie in 0..{classes - 1}")
    return images, labels.astype(np.int64)


def _pixels(images: np.ndarray) -> np.ndarray:
    """(n, rows, cols) uint8 -> (n, rows * cols) float64 in [0, 1]."""
    return images.reshape(len(images), -1) / np.float64(255)
