"""Array backends: the only package that knows NumPy from CuPy.

    >>> be = get_backend("numpy", dtype="float64")

``numpy`` (CPU, the default), ``cupy`` (GPU), ``auto`` (CuPy when usable, else NumPy; it says
which on stderr) and ``strict`` (the reference implementation on array-api-strict, for tests).
``tf32=True`` lets a GPU backend run float32 products on TF32 tensor cores.
"""

from __future__ import annotations

import sys

from nnbench.backend.base import ACTIVATIONS, DTYPES, Backend
from nnbench.backend.numpy_backend import NumpyBackend
from nnbench.errors import BackendUnavailableError, invalid

BACKENDS = ("numpy", "cupy", "auto", "strict")

__all__ = [
    "ACTIVATIONS",
    "BACKENDS",
    "DTYPES",
    "Backend",
    "BackendUnavailableError",
    "NumpyBackend",
    "backend_of",
    "get_backend",
]


def _make_numpy(dtype, tf32):
    return NumpyBackend(dtype)


def _make_strict(dtype, tf32):
    from nnbench.backend.strict import StrictBackend

    return StrictBackend(dtype)


def _make_cupy(dtype, tf32):
    from nnbench.backend.cupy_backend import CupyBackend

    return CupyBackend(dtype, tf32=tf32)


def _make_auto(dtype, tf32):
    try:
        backend = _make_cupy(dtype, tf32)
        reason = f"CuPy sees {backend.device}"
    except BackendUnavailableError as exc:
        backend = _make_numpy(dtype, tf32)
        reason = str(exc).removeprefix("backend=cupy: ").split(";")[0]
    print(f"nnbench: backend=auto picked {backend.name} ({reason})", file=sys.stderr)
    return backend


# Named _make_*: a function called ``_cupy`` here would be replaced by the submodule
# ``nnbench.backend._cupy`` the moment cupy_backend imports it.
_FACTORIES = {
    "numpy": _make_numpy,
    "cupy": _make_cupy,
    "auto": _make_auto,
    "strict": _make_strict,
}


def get_backend(name: str = "numpy", dtype: str = "float32", *, tf32: bool = False) -> Backend:
    """A backend by name: one of BACKENDS, with dtype ``float32`` (default) or ``float64``.
    ``tf32=True`` (cupy, or auto when it picks cupy) lets float32 products use TF32."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise invalid("backend", name, "allowed: " + ", ".join(BACKENDS))
    if dtype not in DTYPES:
        raise invalid("dtype", dtype, "allowed: " + ", ".join(DTYPES))
    if tf32 and name in ("numpy", "strict"):
        raise invalid("tf32", True, f"TF32 is a GPU format: it needs backend=cupy, not {name}")
    return factory(dtype, bool(tf32))


_BY_ARRAY_TYPE: dict = {}


def backend_of(array) -> Backend:
    """The backend that owns ``array`` (NumPy, CuPy or array-api-strict), at its dtype.

    Losses use this so that ``loss_fn(logits, y)`` needs no backend argument. Instances are
    cached per (array type, dtype), so the lookup costs one dictionary access.
    """
    key = (type(array), str(array.dtype))
    backend = _BY_ARRAY_TYPE.get(key)
    if backend is None:
        module = type(array).__module__.split(".")[0]
        name = {"numpy": "numpy", "cupy": "cupy", "array_api_strict": "strict"}.get(module)
        dtype = str(array.dtype).rsplit(".", 1)[-1]
        if name is None or dtype not in DTYPES:
            raise invalid(
                "array",
                f"{type(array).__name__} of {dtype}",
                "expected a float32 or float64 NumPy, CuPy or array-api-strict array",
            )
        backend = _BY_ARRAY_TYPE[key] = get_backend(name, dtype)
    return backend
