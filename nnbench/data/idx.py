"""The IDX file format of MNIST and Fashion-MNIST, read with NumPy.

Layout (all integers big-endian): two zero bytes; one byte naming the element type; one
byte with the number of dimensions d; d unsigned 32-bit sizes; then the elements in C
order. A ``.gz`` file is the same bytes gzip-compressed.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from nnbench.errors import invalid

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip-compressed when it ends in .gz)."""
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise invalid("IDX file", str(path), f"cannot be read: {exc}") from exc
    return parse_idx(data, str(path))


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into a native-byte-order array of the stored type and shape."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise invalid("IDX file", source, f"bad magic number {data[:4].hex()!r}, not IDX data")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise invalid("IDX file", source, f"truncated header: {ndim} sizes need {header} bytes")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(IDX_TYPES[data[2]])
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise invalid(
            "IDX file",
            source,
            f"{len(data)} bytes, but {shape} of {dtype.itemsize}-byte items need {expected}",
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))
