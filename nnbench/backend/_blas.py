"""One-pass ``y = alpha * x + beta * y`` through the BLAS that NumPy itself links.

NumPy has no fused multiply-add ufunc: ``p -= lr * g`` costs two passes over the buffers
(a multiply into a temporary, then a subtraction) and ``m = b1 * m + (1 - b1) * g`` three.
The BLAS that NumPy's wheels bundle exports ``?axpy`` (``y += alpha * x``) and OpenBLAS's
``?axpby`` (``y = alpha * x + beta * y``), which do each in one pass and share the thread
pool NumPy's matrix products use (another BLAS, such as SciPy's own copy, would bring a
second pool that fights the first). The library is found with threadpoolctl and accepted
only when it lives in NumPy's installation and passes a check on a small vector; otherwise
`axpy` and `axpby` return False and the caller takes its NumPy path.
``NNBENCH_NO_BLAS_AXPY=1`` turns them off.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

# Symbol patterns per BLAS build, with their integer type: scipy-openblas64 (NumPy >= 2
# wheels, ILP64), then plain ILP64 and LP64 builds. {t} is s or d, {f} axpy or axpby.
_CANDIDATES = (
    ("scipy_cblas_{t}{f}64_", ctypes.c_int64),
    ("cblas_{t}{f}64_", ctypes.c_int64),
    ("scipy_cblas_{t}{f}", ctypes.c_int),
    ("cblas_{t}{f}", ctypes.c_int),
)
_DTYPES = ((np.float32, "s", ctypes.c_float), (np.float64, "d", ctypes.c_double))
_ROUTINES: dict | None = None  # (name, np.dtype) -> ctypes function, filled once
_CONTROLLER = None  # threadpoolctl.ThreadpoolController, created once (thread_pools)

# Below this many elements the NumPy passes cost less than the ctypes call (~4 us).
MIN_SIZE = 16384


def axpy(alpha: float, x, y) -> bool:
    """``y += alpha * x`` in place, for contiguous 1-D float32/float64 NumPy arrays of one
    dtype and at least `MIN_SIZE` elements; returns False (doing nothing) otherwise."""
    function = _usable("axpy", x, y)
    if function is None:
        return False
    function(y.size, alpha, x.ctypes.data, 1, y.ctypes.data, 1)
    return True


def axpby(alpha: float, x, beta: float, y) -> bool:
    """``y = alpha * x + beta * y`` in place, under `axpy`'s conditions and with alpha and
    beta nonzero (where BLAS may skip reading an operand); returns False otherwise."""
    function = _usable("axpby", x, y) if alpha and beta else None
    if function is None:
        return False
    function(y.size, alpha, x.ctypes.data, 1, beta, y.ctypes.data, 1)
    return True


def _usable(name: str, x, y):
    if type(x) is not np.ndarray or type(y) is not np.ndarray:  # e.g. CuPy arrays
        return None
    if y.size < MIN_SIZE or x.dtype != y.dtype or x.ndim != 1 or x.shape != y.shape:
        return None
    if not (x.flags.c_contiguous and y.flags.c_contiguous and y.flags.writeable):
        return None
    return _routines().get((name, y.dtype))


def _routines() -> dict:
    global _ROUTINES
    if _ROUTINES is None:
        _ROUTINES = {}
        library = None if os.environ.get("NNBENCH_NO_BLAS_AXPY") else _numpy_blas()
        if library is not None:
            for dtype, letter, scalar in _DTYPES:
                for name in ("axpy", "axpby"):
                    function = _bind(library, letter, name, scalar)
                    if function is not None and _works(name, function, dtype):
                        _ROUTINES[(name, np.dtype(dtype))] = function
    return _ROUTINES


def thread_pools():
    """threadpoolctl's controller of the thread pools loaded when first asked (NumPy's BLAS
    among them), created once: creating it scans every loaded library (15-20 ms). None
    without threadpoolctl. Its ``info()`` reads the pools' current thread counts."""
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return None
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


def _numpy_blas():
    """The ctypes handle of the BLAS inside NumPy's installation, or None."""
    controller = thread_pools()
    if controller is None:
        return None
    site = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    for lib in controller.lib_controllers:
        path = os.path.abspath(lib.filepath or "")
        inside = path.startswith(site) and "numpy" in os.path.relpath(path, site).lower()
        if lib.user_api == "blas" and inside and getattr(lib, "dynlib", None) is not None:
            return lib.dynlib
    return None


def _bind(library, letter: str, name: str, scalar):
    for pattern, integer in _CANDIDATES:
        function = getattr(library, pattern.format(t=letter, f=name), None)
        if function is not None:
            function.restype = None
            pointer = ctypes.c_void_p
            if name == "axpy":  # n, alpha, x, incx, y, incy
                function.argtypes = [integer, scalar, pointer, integer, pointer, integer]
            else:  # n, alpha, x, incx, beta, y, incy
                function.argtypes = [integer, scalar, pointer, integer, scalar, pointer, integer]
            return function
    return None


def _works(name: str, function, dtype) -> bool:
    """A check on five elements: right results, so the right calling convention."""
    x = np.arange(1.0, 6.0, dtype=dtype)
    y = np.full(5, 10.0, dtype=dtype)
    if name == "axpy":
        function(5, -2.0, x.ctypes.data, 1, y.ctypes.data, 1)  # 10 - 2x
        expected = [8.0, 6.0, 4.0, 2.0, 0.0]
    else:
        function(5, -2.0, x.ctypes.data, 1, 0.5, y.ctypes.data, 1)  # 5 - 2x
        expected = [3.0, 1.0, -1.0, -3.0, -5.0]
    return bool(np.array_equal(y, np.array(expected, dtype=dtype)))
