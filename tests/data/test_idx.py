"""The IDX reader against bytes laid out by hand."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from nnbench.data.idx import parse_idx, read_idx
from tests.data.helpers import write_idx


def test_int32_vector_written_byte_by_byte():
    """Magic 00 00 0C 01 (int32, one dimension), size 2, then 1 and -2 big-endian."""
    data = bytes.fromhex("00000c01 00000002 00000001 fffffffe")
    array = parse_idx(data)
    assert array.dtype == np.int32 and array.dtype.isnative
    np.testing.assert_array_equal(array, [1, -2])


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_uint8_images_round_trip_plain_and_gzipped(tmp_path, suffix):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 3, 4), dtype=np.uint8)
    array = read_idx(write_idx(tmp_path / f"img{suffix}", images))
    assert array.dtype == np.uint8 and array.shape == (5, 3, 4)
    np.testing.assert_array_equal(array, images)


def test_float64_matrix(tmp_path):
    values = np.array([[1.5, -2.25], [1e300, -0.0]])
    array = read_idx(write_idx(tmp_path / "m", values, type_code=0x0E, dtype=">f8"))
    assert array.dtype == np.float64
    np.testing.assert_array_equal(array, values)


def _error(data: bytes) -> str:
    with pytest.raises(ValueError) as info:
        parse_idx(data, "f.idx")
    return str(info.value)


def test_bad_magic_number():
    assert _error(bytes.fromhex("01000801")) == (
        "Invalid IDX file: 'f.idx' (bad magic number '01000801', not IDX data)"
    )
    assert "bad magic number '0000ff01'" in _error(bytes.fromhex("0000ff01"))


def test_truncated_header_and_wrong_length():
    assert _error(bytes.fromhex("00000803 00000002")) == (
        "Invalid IDX file: 'f.idx' (truncated header: 3 sizes need 16 bytes)"
    )
    assert _error(bytes.fromhex("00000801 00000003 0102")) == (
        "Invalid IDX file: 'f.idx' (10 bytes, but (3,) of 1-byte items need 11)"
    )


def test_unreadable_gzip_names_the_file(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07")[:-6])
    with pytest.raises(ValueError, match=r"^Invalid IDX file: '.*broken\.gz' \(cannot be read"):
        read_idx(path)
