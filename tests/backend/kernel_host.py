"""CupyBackend's kernel sources, compiled without a GPU: with nvcc for the device (does the
code compile as CUDA C++?) and with the host C++ compiler for the numbers (does each kernel's
math give the reference's results?).

An elementwise kernel is CuPy's ``ElementwiseKernel(in_params, out_params, operation)``: this
module writes the loop CuPy would generate around ``operation`` (non-raw inputs read as
values, outputs bound as references, raw arrays indexed, ``i`` the element index), as a
``__device__`` function instantiated for float and double. On the host the same function
runs in a plain loop behind an ``extern "C"`` entry point called through ctypes.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np

from nnbench.backend._cupy_kernels import ELEMENTWISE, PREAMBLE, REDUCE_SOURCE

C_TYPES = {"int32": "int", "float64": "double", "uint64": "unsigned long long"}
DTYPE_NAMES = {"float": "float32", "double": "float64"}

HOST_PRELUDE = """
#include <cmath>
using std::exp; using std::fabs; using std::fmax; using std::isfinite; using std::log;
using std::pow; using std::sqrt; using std::tanh;
"""

# Host entry points of the row functions behind the one-block kernels: the rows in order.
HOST_ROWS = r"""
template <typename T>
static double ce_rows(const T* z, const long long* y, T* g, int n, int classes) {
    double acc = 0.0;
    for (int r = 0; r < n; ++r) {
        long long at = (long long)r * classes;
        acc += nnb_ce_row<T>(z + at, y[r], classes, T(n), g + at);
    }
    return acc / n;
}
template <typename T>
static double count_rows(const T* z, const long long* y, int n, int classes) {
    double acc = 0.0;
    for (int r = 0; r < n; ++r) acc += nnb_argmax<T>(z + (long long)r * classes, classes) == y[r];
    return acc;
}
extern "C" double host_ce_float32(const float* z, const long long* y, float* g, int n, int c) {
    return ce_rows<float>(z, y, g, n, c);
}
extern "C" double host_ce_float64(const double* z, const long long* y, double* g, int n, int c) {
    return ce_rows<double>(z, y, g, n, c);
}
extern "C" double host_count_float32(const float* z, const long long* y, int n, int c) {
    return count_rows<float>(z, y, n, c);
}
extern "C" double host_count_float64(const double* z, const long long* y, int n, int c) {
    return count_rows<double>(z, y, n, c);
}
extern "C" void host_record(double* s, double loss, double correct, double rows) {
    nnb_record(s, loss, correct, rows);
}
extern "C" void host_philox(unsigned int* c, unsigned int k0, unsigned int k1) {
    nnb_philox(c, k0, k1);
}
"""


def parse_params(text: str) -> list[tuple[bool, str, str]]:
    """``"raw T b, int32 k"`` -> [(True, "T", "b"), (False, "int32", "k")]."""
    params = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        words = part.split()
        raw = words[0] == "raw"
        type_, name = words[-2], words[-1]
        params.append((raw, type_, name))
    return params


def _c_type(type_: str) -> str:
    return "T" if type_ == "T" else C_TYPES[type_]


# CuPy takes an array or a scalar for any non-raw input; the emulation needs to know which
# the backend passes. These are the arrays; every other non-raw input is a scalar.
ARRAY_INPUTS = {
    "activation": {"z"},
    "activation_grad": {"y", "dy"},
    "sgd": {"g"},
    "sgd_momentum": {"g"},
    "adam": {"g"},
}


def elementwise_body(name: str) -> tuple[str, list]:
    """The ``__device__`` body template of kernel ``name`` and its argument list
    [(kind, c type, name)], kind one of "in", "out", "raw", "scalar"."""
    params_in, params_out, operation = ELEMENTWISE[name]
    args, decls, binds = [], [], []
    for raw, type_, pname in parse_params(params_in):
        ctype = _c_type(type_)
        if raw:
            args.append(("raw", ctype, pname))
            decls.append(f"const {ctype}* {pname}")
        elif pname in ARRAY_INPUTS.get(name, ()):
            args.append(("in", ctype, pname))
            decls.append(f"const {ctype}* {pname}_p")
            binds.append(f"const {ctype} {pname} = {pname}_p[i];")
        else:
            args.append(("scalar", ctype, pname))
            decls.append(f"{ctype} {pname}")
    for _, type_, pname in parse_params(params_out):
        ctype = _c_type(type_)
        args.append(("out", ctype, pname))
        decls.append(f"{ctype}* {pname}_p")
        binds.append(f"{ctype}& {pname} = {pname}_p[i];")
    body = (
        f"template <typename T>\n__device__ __forceinline__ void body_{name}("
        + ", ".join(decls + ["long long i"])
        + ") {\n    "
        + "\n    ".join(binds)
        + f"\n    {operation};\n}}\n"
    )
    return body, args


def _signature(args, ctype: str) -> tuple[str, str]:
    decls, names = [], []
    for kind, t, pname in args:
        t = ctype if t == "T" else t
        if kind == "scalar":
            decls.append(f"{t} {pname}")
            names.append(pname)
        elif kind == "out":
            decls.append(f"{t}* {pname}_p")
            names.append(f"{pname}_p")
        elif kind == "in":
            decls.append(f"const {t}* {pname}_p")
            names.append(f"{pname}_p")
        else:
            decls.append(f"const {t}* {pname}")
            names.append(pname)
    return ", ".join(decls + ["long long n"]), ", ".join(names)


def device_source() -> str:
    """Everything CupyBackend compiles, with a ``__global__`` entry per elementwise kernel."""
    parts = [PREAMBLE, REDUCE_SOURCE]
    for name in ELEMENTWISE:
        body, args = elementwise_body(name)
        parts.append(body)
        for ctype, dtype in DTYPE_NAMES.items():
            decls, names = _signature(args, ctype)
            parts.append(
                f'extern "C" __global__ void k_{name}_{dtype}({decls}) {{\n'
                "    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;\n"
                f"    if (i < n) body_{name}<{ctype}>({names}, i);\n}}\n"
            )
    return "\n".join(parts)


def host_source() -> str:
    parts = [HOST_PRELUDE, PREAMBLE]
    for name in ELEMENTWISE:
        body, args = elementwise_body(name)
        parts.append(body)
        for ctype, dtype in DTYPE_NAMES.items():
            decls, names = _signature(args, ctype)
            parts.append(
                f'extern "C" void k_{name}_{dtype}({decls}) {{\n'
                f"    for (long long i = 0; i < n; ++i) body_{name}<{ctype}>({names}, i);\n}}\n"
            )
    parts.append(HOST_ROWS)
    return "\n".join(parts)


def compile_device(directory: Path) -> subprocess.CompletedProcess:
    """``nvcc --ptx`` of `device_source` for sm_90 (the H100); the completed process."""
    source = directory / "kernels.cu"
    source.write_text(device_source())
    return subprocess.run(
        ["nvcc", "--ptx", "-arch=sm_90", "-o", str(directory / "kernels.ptx"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def host_compiler() -> str | None:
    return shutil.which("g++") or shutil.which("clang++")


class HostKernels:
    """The host build of the kernels: ``run(name, dtype, *args)`` calls elementwise kernel
    ``name`` over the elements of its output arrays, arrays being NumPy arrays."""

    def __init__(self, directory: Path):
        source = directory / "host_kernels.cpp"
        source.write_text(host_source())
        library = directory / "host_kernels.so"
        subprocess.run(
            [host_compiler(), "-O1", "-shared", "-fPIC", "-o", str(library), str(source)],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.lib = ctypes.CDLL(str(library))

    def run(self, name: str, dtype: str, *values) -> None:
        _, args = elementwise_body(name)
        ctype_of = {"T": ctypes.c_float if dtype == "float32" else ctypes.c_double}
        ctype_of.update(int=ctypes.c_int, double=ctypes.c_double)
        ctype_of["unsigned long long"] = ctypes.c_ulonglong
        converted, size = [], None
        for (kind, t, _), value in zip(args, values, strict=True):
            if kind == "scalar":
                converted.append(ctype_of[t](value))
                continue
            array = value
            assert array.flags.c_contiguous
            if kind == "out":
                size = array.size
            converted.append(ctypes.c_void_p(array.ctypes.data))
        getattr(self.lib, f"k_{name}_{dtype}")(*converted, ctypes.c_longlong(size))

    def cross_entropy(self, logits, labels, grad) -> float:
        function = getattr(self.lib, f"host_ce_{logits.dtype}")
        function.restype = ctypes.c_double
        n, classes = logits.shape
        return function(*_pointers(logits, labels, grad), n, classes)

    def count_correct(self, logits, labels) -> float:
        function = getattr(self.lib, f"host_count_{logits.dtype}")
        function.restype = ctypes.c_double
        n, classes = logits.shape
        return function(*_pointers(logits, labels), n, classes)

    def record(self, stats, loss: float, correct: float, rows: float) -> None:
        self.lib.host_record(
            ctypes.c_void_p(stats.ctypes.data),
            ctypes.c_double(loss),
            ctypes.c_double(correct),
            ctypes.c_double(rows),
        )

    def philox(self, counter, key) -> list[int]:
        block = np.array(counter, dtype=np.uint32)
        self.lib.host_philox(
            ctypes.c_void_p(block.ctypes.data), ctypes.c_uint(key[0]), ctypes.c_uint(key[1])
        )
        return [int(v) for v in block]


def _pointers(*arrays):
    return [ctypes.c_void_p(np.ascontiguousarray(a).ctypes.data) for a in arrays]
