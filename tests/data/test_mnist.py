"""MNIST and Fashion-MNIST from small IDX files written here; downloads from file:// mirrors.

No test touches the network: an autouse fixture refuses every URL that is not file://.
"""

from __future__ import annotations

import dataclasses
import io
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from nnbench.data import DatasetUnavailableError, load_dataset
from nnbench.data import mnist as mnist_module
from tests.data.helpers import IDX_NAMES, md5, write_idx, write_mnist

OFFLINE = dict(verify=False, download=False)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    real = urllib.request.urlopen

    def local_only(url, *args, **kwargs):
        if not str(url).startswith("file:"):
            raise urllib.error.URLError("network disabled in tests")
        return real(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only)


def use_source(monkeypatch, name="mnist", mirrors=None, md5s=None):
    """Replace the registry's source for ``name``: other mirrors and/or checksums."""
    source = mnist_module.SOURCES[name]
    changes = {}
    if mirrors is not None:
        changes["mirrors"] = tuple(mirrors)
    if md5s is not None:
        changes["files"] = tuple(zip(IDX_NAMES, md5s, strict=True))
    monkeypatch.setitem(mnist_module.SOURCES, name, dataclasses.replace(source, **changes))


def rows(images: np.ndarray) -> list[bytes]:
    return sorted(image.tobytes() for image in images)


def as_images(x: np.ndarray) -> np.ndarray:
    return np.rint(x * 255).astype(np.uint8).reshape(-1, 28, 28)


def test_pixels_are_scaled_and_the_official_test_set_is_the_test_part(tmp_path):
    train_images, train_labels, test_images, test_labels = write_mnist(tmp_path / "mnist")
    ds = load_dataset("mnist", root=tmp_path, val_fraction=0.2, **OFFLINE)
    assert ds.sizes == (40, 10, 20) and ds.x_mean is None
    np.testing.assert_array_equal(ds.x_test, test_images.reshape(20, 784) / 255.0)
    np.testing.assert_array_equal(ds.y_test, test_labels)
    x = np.concatenate([ds.x_train, ds.x_val])
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert rows(as_images(x)) == rows(train_images)
    pairs = {
        (im.tobytes(), int(label)) for im, label in zip(train_images, train_labels, strict=True)
    }
    y = np.concatenate([ds.y_train, ds.y_val])
    assert {(im.tobytes(), int(label)) for im, label in zip(as_images(x), y, strict=True)} == pairs


def test_uncompressed_files_are_read_too(tmp_path):
    write_mnist(tmp_path / "mnist", gz=False)
    ds = load_dataset("mnist", root=tmp_path, download=False)  # verify=True: nothing to check
    assert ds.sizes == (42, 8, 20)


def test_limit_keeps_a_seeded_random_subset_of_training_images(tmp_path):
    train_images, *_ = write_mnist(tmp_path / "mnist")
    first = load_dataset("mnist", root=tmp_path, limit=40, **OFFLINE)
    assert first.sizes == (34, 6, 20)
    kept = rows(as_images(np.concatenate([first.x_train, first.x_val])))
    assert set(kept) <= set(rows(train_images))
    other = load_dataset("mnist", root=tmp_path, limit=40, seed=1, **OFFLINE)
    assert rows(as_images(np.concatenate([other.x_train, other.x_val]))) != kept


def test_fashion_mnist_names_its_classes(tmp_path):
    write_mnist(tmp_path / "fashion_mnist")
    ds = load_dataset("fashion_mnist", root=tmp_path, **OFFLINE)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert len(ds.class_names) == 10 == ds.n_outputs


def test_standardize_option_fits_the_training_pixels(tmp_path):
    write_mnist(tmp_path / "mnist")
    ds = load_dataset("mnist", root=tmp_path, standardize=True, **OFFLINE)
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-12)


def test_cached_files_are_checked_against_the_expected_md5(tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    write_mnist(folder)
    md5s = [md5(folder / name) for name in IDX_NAMES]
    use_source(monkeypatch, md5s=md5s)
    assert load_dataset("mnist", root=tmp_path, download=False).sizes == (42, 8, 20)
    use_source(monkeypatch, md5s=[*md5s[:3], "0" * 32])
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("mnist", root=tmp_path, download=False)
    assert str(info.value) == (
        f"{folder / IDX_NAMES[3]} has MD5 {md5s[3]}, not the official file's {'0' * 32}: "
        "delete it to download it again, or pass verify=False to use it as it is"
    )
    assert load_dataset("mnist", root=tmp_path, **OFFLINE).sizes == (42, 8, 20)


def test_official_checksums_refuse_files_that_are_not_the_official_ones(tmp_path):
    write_mnist(tmp_path / "mnist")
    with pytest.raises(DatasetUnavailableError, match="not the official file's f68b3c2d"):
        load_dataset("mnist", root=tmp_path)


def test_missing_files_are_downloaded_once_and_verified(tmp_path, monkeypatch):
    server = tmp_path / "server"
    write_mnist(server)
    md5s = [md5(server / name) for name in IDX_NAMES]
    broken = (tmp_path / "nowhere").as_uri() + "/"
    use_source(monkeypatch, mirrors=[broken, server.as_uri() + "/"], md5s=md5s)
    ds = load_dataset("mnist", root=tmp_path / "cache")
    assert ds.sizes == (42, 8, 20)
    cached = sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir())
    assert cached == sorted(IDX_NAMES)  # no temporary files left behind
    for name in IDX_NAMES:
        (server / name).unlink()
    assert load_dataset("mnist", root=tmp_path / "cache").sizes == (42, 8, 20)


def test_a_download_with_the_wrong_checksum_is_refused_and_not_kept(tmp_path, monkeypatch):
    server = tmp_path / "server"
    write_mnist(server)
    md5s = [md5(server / name) for name in IDX_NAMES]
    use_source(monkeypatch, mirrors=[server.as_uri() + "/"], md5s=[*md5s[:2], "0" * 32, md5s[3]])
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("mnist", root=tmp_path / "cache")
    assert f"checksum mismatch: md5 {md5s[2]}, expected {'0' * 32}" in str(info.value)
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(
        IDX_NAMES[:2]
    )  # the verified files stay; the bad one and its temporary file are gone


def test_an_interrupted_download_leaves_no_file(tmp_path, monkeypatch):
    class Dropping(io.BytesIO):
        def read(self, size=-1):
            if self.tell():
                raise ConnectionResetError("connection dropped")
            return super().read(4)

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Dropping(b"0123456789"))
    with pytest.raises(DatasetUnavailableError, match="connection dropped"):
        load_dataset("mnist", root=tmp_path)
    assert list((tmp_path / "mnist").iterdir()) == []


def test_offline_gives_one_error_saying_which_files_to_put_where(tmp_path):
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("mnist", root=tmp_path)
    message = str(info.value)
    assert message.startswith(
        "dataset=mnist needs train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz in {tmp_path / 'mnist'} "
        "(download failed: https://ossci-datasets.s3.amazonaws.com/mnist/"
        "train-images-idx3-ubyte.gz: <urlopen error network disabled in tests>; "
        "http://yann.lecun.com/exdb/mnist/train-images-idx3-ubyte.gz: "
    )
    assert message.endswith(
        "download them from https://ossci-datasets.s3.amazonaws.com/mnist/ into that folder "
        "(gzipped or not), or point the root option or NNBENCH_DATA at a folder holding them"
    )
    assert "\n" not in message


def test_download_false_lists_only_the_missing_files(tmp_path):
    write_mnist(tmp_path / "fashion_mnist")
    (tmp_path / "fashion_mnist" / IDX_NAMES[1]).unlink()
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("fashion_mnist", root=tmp_path, **OFFLINE)
    assert str(info.value).startswith(
        f"dataset=fashion_mnist needs {IDX_NAMES[1]} in {tmp_path / 'fashion_mnist'} "
        "(download=False); download them from http://fashion-mnist.s3-website"
    )


def test_root_defaults_to_nnbench_data_then_the_user_cache(tmp_path, monkeypatch):
    write_mnist(tmp_path / "mnist")
    monkeypatch.setenv("NNBENCH_DATA", str(tmp_path))
    assert load_dataset("mnist", **OFFLINE).sizes == (42, 8, 20)
    monkeypatch.delenv("NNBENCH_DATA")
    assert mnist_module.data_root() == Path.home() / ".cache" / "nnbench"


def test_inconsistent_files_are_refused(tmp_path):
    folder = tmp_path / "mnist"
    write_mnist(folder)
    write_idx(folder / IDX_NAMES[1], np.zeros(49, dtype=np.uint8))
    with pytest.raises(ValueError) as info:
        load_dataset("mnist", root=tmp_path, **OFFLINE)
    assert str(info.value) == (
        f"Invalid IDX file: '{folder / IDX_NAMES[1]}' "
        "(expected 50 labels (one per image), got shape (49,))"
    )
    write_idx(folder / IDX_NAMES[1], np.full(50, 10, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\(labels must lie in 0\.\.9\)$"):
        load_dataset("mnist", root=tmp_path, **OFFLINE)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limit": 0}, "Invalid limit: 0 (must be an integer >= 2)"),
        ({"verify": "yes"}, "Invalid verify: 'yes' (must be true or false)"),
        ({"download": 1}, "Invalid download: 1 (must be true or false)"),
        ({"standardize": "no"}, "Invalid standardize: 'no' (must be true or false)"),
        ({"root": 5}, "Invalid root: 5 (must be a file-system path)"),
    ],
)
def test_bad_options_give_one_line_messages(options, message):
    with pytest.raises(ValueError) as info:
        load_dataset("mnist", **options)
    assert str(info.value) == message
