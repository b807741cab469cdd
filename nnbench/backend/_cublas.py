"""The matrix products of a Dense layer as direct cuBLAS calls, which CUDA graphs can capture.

CuPy refuses every cuBLAS call while a stream is capturing ("calling cuBLAS API during stream
capture is currently unsupported", CuPy 13 and 14), although cuBLAS supports capture when its
workspace is set by the caller (cuBLAS documentation, "CUDA Graphs Support"; PyTorch does the
same). So CupyBackend calls cuBLAS itself, through ctypes, with a handle of its own: its
stream follows CuPy's current stream, its workspace is a CuPy buffer set after every stream
change, and its math mode is TF32 when asked for (``backend.tf32``).

cuBLAS is column-major; nnbench's arrays are row-major (C-contiguous). A row-major (r, c)
array is, read column-major, its (c, r) transpose with leading dimension c, so each product
is planned on the transposes. The plans (`linear_plan` and friends) are plain functions of
shapes, checked on the CPU against a column-major reference (tests/backend).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass

import numpy as np

OP_N, OP_T = 0, 1  # cublasOperation_t
DEFAULT_MATH, TF32_MATH = 0, 3  # cublasMath_t: CUBLAS_DEFAULT_MATH, CUBLAS_TF32_TENSOR_OP_MATH
WORKSPACE_BYTES = 32 * 1024 * 1024  # what cuBLAS recommends for Hopper
INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Gemm:
    """C = op(A) @ op(B) in cuBLAS's column-major terms: op(A) is (m, k), op(B) (k, n)."""

    transa: int
    transb: int
    m: int
    n: int
    k: int
    a: object
    lda: int
    b: object
    ldb: int
    c: object
    ldc: int


@dataclass(frozen=True)
class Gemv:
    """y = A @ x in column-major terms, A (m, n) with leading dimension lda."""

    m: int
    n: int
    a: object
    lda: int
    x: object
    y: object


def linear_plan(x, weight, out) -> Gemm:
    """out (B, O) = x (B, I) @ weight (O, I).T, i.e. out.T = weight @ x.T column-major."""
    rows, fan_in = x.shape
    fan_out = weight.shape[0]
    return Gemm(OP_T, OP_N, fan_out, rows, fan_in, weight, fan_in, x, fan_in, out, fan_out)


def weight_grad_plan(dout, x, grad_weight) -> Gemm:
    """grad_weight (O, I) = dout.T @ x, i.e. grad_weight.T = x.T @ dout column-major."""
    rows, fan_out = dout.shape
    fan_in = x.shape[1]
    return Gemm(OP_N, OP_T, fan_in, fan_out, rows, x, fan_in, dout, fan_out, grad_weight, fan_in)


def input_grad_plan(dout, weight, dx) -> Gemm:
    """dx (B, I) = dout (B, O) @ weight (O, I), i.e. dx.T = weight.T @ dout.T column-major."""
    rows, fan_out = dout.shape
    fan_in = weight.shape[1]
    return Gemm(OP_N, OP_N, fan_in, rows, fan_out, weight, fan_in, dout, fan_out, dx, fan_in)


def bias_grad_plan(dout, ones, grad_bias) -> Gemv:
    """grad_bias (O,) = the sum of dout's rows = dout.T @ ones, dout.T being (O, B)
    column-major with leading dimension O: no reduction temporaries."""
    rows, fan_out = dout.shape
    return Gemv(fan_out, rows, dout, fan_out, ones, grad_bias)


def plannable(dtype, *arrays) -> bool:
    """Whether the arrays can go to cuBLAS as planned: C-contiguous, of ``dtype`` (float32 or
    float64), with every dimension in cuBLAS's 32-bit range and no empty one."""
    for a in arrays:
        if a.dtype != dtype or not a.flags.c_contiguous:
            return False
        if any(d < 1 or d > INT_MAX for d in a.shape):
            return False
    return np.dtype(dtype).name in ("float32", "float64")  # a dtype or a type (np.float32)


# ---------------------------------------------------------------------- the library
def _loaded_cublas() -> str | None:
    """The path of the libcublas this process has loaded (CuPy's), from /proc/self/maps."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rsplit(" ", 1)[-1].strip()
                name = os.path.basename(path)
                if name.startswith("libcublas.so") and not name.startswith("libcublasLt"):
                    return path
    except OSError:
        pass
    return None


def load_library(cupy):
    """libcublas as a ctypes library: the one CuPy loaded (created its own handle first so
    that it is loaded), else the first found by name."""
    try:
        cupy.cuda.device.get_cublas_handle()
    except AttributeError:  # an older or newer layout: a product loads cuBLAS just as well
        cupy.matmul(cupy.ones((2, 2)), cupy.ones((2, 2)))
    candidates = [_loaded_cublas(), "libcublas.so.13", "libcublas.so.12"]
    candidates.append(ctypes.util.find_library("cublas"))
    errors = []
    for name in filter(None, candidates):
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            errors.append(f"{name}: {exc}")
    raise OSError("libcublas not found (" + "; ".join(errors) + ")")


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"cuBLAS {what} failed with status {status}")


class Cublas:
    """A cuBLAS handle of our own, on CuPy's current stream, for float32 and float64."""

    def __init__(self, cupy, tf32: bool = False):
        self.cupy = cupy
        self.lib = lib = load_library(cupy)
        self.tf32 = tf32
        handle = ctypes.c_void_p()
        _check(lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
        self.handle = handle
        _check(lib.cublasSetMathMode(handle, TF32_MATH if tf32 else DEFAULT_MATH), "SetMathMode")
        self.workspace = cupy.empty(WORKSPACE_BYTES, dtype=cupy.uint8)
        self._stream = None
        self._scalars = {
            "float32": (ctypes.c_float(1.0), ctypes.c_float(0.0)),
            "float64": (ctypes.c_double(1.0), ctypes.c_double(0.0)),
        }
        self._gemm = {"float32": lib.cublasSgemm_v2, "float64": lib.cublasDgemm_v2}
        self._gemv = {"float32": lib.cublasSgemv_v2, "float64": lib.cublasDgemv_v2}

    def _bind(self) -> None:
        """Follow CuPy's current stream (a no-op while it stays the same, so nothing is set
        while a graph captures: the warm-up step has set it already)."""
        stream = self.cupy.cuda.get_current_stream().ptr
        if stream == self._stream:
            return
        lib = self.lib
        _check(lib.cublasSetStream_v2(self.handle, ctypes.c_void_p(stream)), "SetStream")
        # SetStream resets the workspace to cuBLAS's own pool: set ours again.
        setter = getattr(lib, "cublasSetWorkspace_v2", None)
        if setter is not None:
            ws = ctypes.c_void_p(self.workspace.data.ptr)
            _check(setter(self.handle, ws, ctypes.c_size_t(WORKSPACE_BYTES)), "SetWorkspace")
        self._stream = stream

    def gemm(self, plan: Gemm) -> None:
        self._bind()
        dtype = str(plan.c.dtype)
        one, zero = self._scalars[dtype]
        ptr = ctypes.c_void_p
        status = self._gemm[dtype](
            self.handle,
            ctypes.c_int(plan.transa),
            ctypes.c_int(plan.transb),
            ctypes.c_int(plan.m),
            ctypes.c_int(plan.n),
            ctypes.c_int(plan.k),
            ctypes.byref(one),
            ptr(plan.a.data.ptr),
            ctypes.c_int(plan.lda),
            ptr(plan.b.data.ptr),
            ctypes.c_int(plan.ldb),
            ctypes.byref(zero),
            ptr(plan.c.data.ptr),
            ctypes.c_int(plan.ldc),
        )
        _check(status, "gemm")

    def gemv(self, plan: Gemv) -> None:
        self._bind()
        dtype = str(plan.y.dtype)
        one, zero = self._scalars[dtype]
        ptr = ctypes.c_void_p
        status = self._gemv[dtype](
            self.handle,
            ctypes.c_int(OP_N),
            ctypes.c_int(plan.m),
            ctypes.c_int(plan.n),
            ctypes.byref(one),
            ptr(plan.a.data.ptr),
            ctypes.c_int(plan.lda),
            ptr(plan.x.data.ptr),
            ctypes.c_int(1),
            ctypes.byref(zero),
            ptr(plan.y.data.ptr),
            ctypes.c_int(1),
        )
        _check(status, "gemv")


_HANDLES: dict = {}


def cublas(cupy, tf32: bool) -> Cublas:
    """The process's `Cublas` for the current device and math mode (created on first use)."""
    key = (cupy.cuda.runtime.getDevice(), bool(tf32))
    found = _HANDLES.get(key)
    if found is None:
        found = _HANDLES[key] = Cublas(cupy, tf32)
    return found
