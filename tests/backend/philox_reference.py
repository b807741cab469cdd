"""Philox4x32-10 in NumPy: the reference for CupyBackend's dropout masks and uniforms.

Element i of draw ``counter`` of generator ``seed`` comes from the counter block (i low,
i high, counter low, counter high) under the key (seed low, seed high); float32 takes the top
24 bits of the first output word, float64 53 bits of the first two (the kernels' rule,
`nnbench.backend._cupy_kernels`).
"""

from __future__ import annotations

import numpy as np

MASK = np.uint64(0xFFFFFFFF)


def philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of counter words c0..c3 (arrays) under key (k0, k1)."""
    words = [np.asarray(c, dtype=np.uint64) & MASK for c in (c0, c1, c2, c3)]
    k0, k1 = np.uint64(k0) & MASK, np.uint64(k1) & MASK
    for r in range(10):
        if r:
            k0 = (k0 + np.uint64(0x9E3779B9)) & MASK
            k1 = (k1 + np.uint64(0xBB67AE85)) & MASK
        p0 = np.uint64(0xD2511F53) * words[0]
        p1 = np.uint64(0xCD9E8D57) * words[2]
        words = [
            (p1 >> np.uint64(32)) ^ words[1] ^ k0,
            p1 & MASK,
            (p0 >> np.uint64(32)) ^ words[3] ^ k1,
            p0 & MASK,
        ]
    return words


def uniform(seed: int, counter: int, size: int, dtype) -> np.ndarray:
    """The ``size`` uniforms in [0, 1) of one draw, as the kernels compute them."""
    i = np.arange(size, dtype=np.uint64)
    words = philox(
        i & MASK, i >> np.uint64(32), counter & 0xFFFFFFFF, counter >> 32,
        seed & 0xFFFFFFFF, seed >> 32,
    )  # fmt: skip
    if np.dtype(dtype) == np.float32:
        return (words[0] >> np.uint64(8)).astype(np.float32) * np.float32(2.0**-24)
    bits = ((words[0] >> np.uint64(5)) << np.uint64(26)) | (words[1] >> np.uint64(6))
    return bits.astype(np.float64) * 2.0**-53


def dropout_mask(seed: int, counter: int, p: float, shape, dtype) -> np.ndarray:
    """Inverted-dropout mask of one draw: 1 / (1 - p) where the uniform is >= p, else 0."""
    dtype = np.dtype(dtype)
    u = uniform(seed, counter, int(np.prod(shape)), dtype).reshape(shape)
    scale = dtype.type(1.0 / (1.0 - p))
    return np.where(u >= dtype.type(p), scale, dtype.type(0))
