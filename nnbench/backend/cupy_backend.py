"""CuPy backend: NumPy's in-place paths run unchanged on the GPU (CuPy mirrors NumPy's
ufunc API, ``out=`` included); only the device-specific pieces differ here."""

from __future__ import annotations

import numpy as np

from nnbench.backend._cupy import import_cupy
from nnbench.backend.numpy_backend import NumpyBackend


class CupyBackend(NumpyBackend):
    name = "cupy"

    def __init__(self, dtype: str = "float32"):
        super().__init__(dtype, xp=import_cupy())

    @property
    def device(self) -> str:
        cupy = self.xp
        device_id = cupy.cuda.runtime.getDevice()
        props = cupy.cuda.runtime.getDeviceProperties(device_id)
        name = props["name"]
        return f"cuda:{device_id} ({name.decode() if isinstance(name, bytes) else name})"

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()

    def memory_in_use(self) -> int | None:
        return int(self.xp.get_default_memory_pool().used_bytes())

    def to_host(self, a) -> np.ndarray:
        return self.xp.asnumpy(a)

    def all_finite(self, a) -> bool:
        return bool(self.xp.isfinite(a).all())

    def rng(self, seed: int):
        return self.xp.random.default_rng(seed)

    def uniform(self, rng, shape, out=None):
        return rng.random(shape, dtype=self.dtype, out=out)

    def take_rows(self, x, indices, out=None):
        return super().take_rows(x, self.xp.asarray(indices), out)
