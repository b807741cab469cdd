"""The CPU kernels in ``_native.c``: compiled once per machine, loaded with ctypes.

NumPy has no fused operations: Adam's update costs it seven passes over the parameters and a
ReLU layer's backward two passes plus a third for the bias gradient. The kernels in
``_native.c`` do each in one pass. They are compiled on first use with the system C compiler
(``$CC``, else ``cc``) into a private cache folder, named by a digest of the source, the
compiler and the flags, so that an edited source or another compiler builds anew; parallel
processes each compile to a temporary file and rename it into place. The folder is
``$NNBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/nnbench``, else ``~/.cache/nnbench``; it must
belong to the user and be writable by no one else (a library loaded from there runs as
the user), else the kernels are not used.

A machine without a compiler can use a library built elsewhere from the same source:
``python -m nnbench.backend --build-kernels FOLDER`` writes ``FOLDER/nnbench-native.so``
(for every x86-64 vector unit), and ``NNBENCH_NATIVE_LIBRARY=FOLDER/nnbench-native.so``
loads it; the Docker image does this. Every library carries the digest of the source it
was built from, and one built from another version is refused.

Without a compiler or a prebuilt library (the slim Docker image's own Python), with
``NNBENCH_NATIVE=0``, or when anything above fails, `kernels` returns None and
`NumpyBackend` takes its NumPy path, which computes the same results up to the last bits
(a seeded float64 run on the two paths differs there); `status` says which, for the run's
environment record.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import weakref
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("_native.c")
LIBRARY_NAME = "nnbench-native.so"  # what --build writes
# -ffp-contract=off: no fused multiply-adds, so every kernel rounds as its NumPy path does.
# -fno-math-errno and -fno-trapping-math let sqrt and the ReLU selects compile to vector
# instructions; neither changes a result.
FLAGS = (
    "-O3",
    "-shared",
    "-fPIC",
    "-std=c99",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fno-trapping-math",
)
CLONES = ("-DNNBENCH_CLONES",)  # one library for every x86-64 vector unit, where supported
FLAG_SETS = (FLAGS + CLONES, FLAGS)  # tried in this order: not every compiler has clones
NO_COMPILER = "no C compiler (set CC, or install one: apt-get install gcc)"
COMPILE_TIMEOUT_S = 120

_STATE: dict = {}  # "library", "status", and a Kernels per dtype name; filled on first use


class Kernels:
    """The library's functions for one dtype, with their argument types set."""

    def __init__(self, library: ctypes.CDLL, dtype):
        dtype = np.dtype(dtype)
        suffix = {"float32": "f32", "float64": "f64"}[dtype.name]
        real = ctypes.c_float if dtype.name == "float32" else ctypes.c_double
        ptr, i64 = ctypes.c_void_p, ctypes.c_int64

        def bind(name, argtypes, restype=None):
            function = getattr(library, f"{name}_{suffix}")
            function.argtypes, function.restype = argtypes, restype
            return function

        self.adam = bind("adam", [i64, ptr, ptr, ptr, ptr] + [real] * 6)
        self.momentum = bind("momentum", [i64, ptr, ptr, ptr, real, real, ctypes.c_int])
        self.bias_act = bind("bias_act", [i64, i64, i64, i64, ptr, ptr, real])
        self.act_backward = bind("act_backward", [i64, i64, i64, i64, ptr, ptr, real, ptr])
        self.cross_entropy = bind(
            "cross_entropy", [i64, i64, i64, i64, ptr, ptr, i64, i64, ptr], ctypes.c_double
        )
        # Stacks of members (nnbench.stack): the solo kernels above, once per member.
        self.adam_stack = bind("adam_stack", [i64, i64] + [ptr] * 10)
        self.momentum_stack = bind("momentum_stack", [i64, i64] + [ptr] * 5 + [ctypes.c_int])
        self.cross_entropy_stack = bind(
            "cross_entropy_stack", [i64] * 6 + [ptr, ptr] + [i64] * 4 + [ptr, ptr, ptr]
        )


def kernels(dtype) -> Kernels | None:
    """The kernels for ``dtype`` (float32 or float64), or None where they are unavailable."""
    library = _library()
    if library is None:
        return None
    key = np.dtype(dtype).name
    if key not in _STATE:
        _STATE[key] = Kernels(library, key)
    return _STATE[key]


def status() -> str:
    """``on (<compiler>)`` or ``off: <why>``, after trying to load the kernels."""
    _library()
    return _STATE["status"]


def cache_dir() -> Path:
    if os.environ.get("NNBENCH_CACHE_DIR"):
        return Path(os.environ["NNBENCH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nnbench"


def _library():
    if "library" not in _STATE:
        try:
            _STATE["library"], _STATE["status"] = _load()
        except Exception as exc:  # any failure leaves the NumPy path, which is always right
            _STATE["library"], _STATE["status"] = None, f"off: {type(exc).__name__}: {exc}"
    return _STATE["library"]


def _load():
    if os.environ.get("NNBENCH_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None, "off: NNBENCH_NATIVE=0"
    prebuilt = os.environ.get("NNBENCH_NATIVE_LIBRARY")
    if prebuilt:
        return _open_prebuilt(Path(prebuilt))
    compiler = _compiler()
    if compiler is None:
        return None, f"off: {NO_COMPILER}"
    folder = cache_dir()
    problem = _private_folder(folder)
    if problem:
        return None, f"off: {problem}"
    version = _compiler_version(compiler)
    for flags in FLAG_SETS:
        key = [_source(), version.encode(), " ".join(flags).encode()]
        digest = hashlib.sha256(b"\0".join(key))
        path = folder / f"nnbench-native-{digest.hexdigest()[:20]}.so"
        if not path.exists() and not _compile(compiler, flags, path):
            continue
        try:
            library = _open(path)
        except OSError:  # a damaged file (a full disk, say): built again, once
            path.unlink(missing_ok=True)
            if not _compile(compiler, flags, path):
                continue
            library = _open(path)
        if library is None:
            return None, f"off: {path} was not built from this {SOURCE.name}"
        return library, f"on ({version.splitlines()[0] if version else compiler})"
    return None, f"off: {compiler} could not compile {SOURCE.name}"


def _open_prebuilt(path: Path):
    """NNBENCH_NATIVE_LIBRARY: a library that only its owner (or root) may replace."""
    try:
        info = path.stat()
    except OSError as exc:
        return None, f"off: NNBENCH_NATIVE_LIBRARY={path}: {exc.strerror or exc}"
    if _others_can_write(info, owners=(0, os.getuid())):
        return None, f"off: NNBENCH_NATIVE_LIBRARY={path} is writable by others"
    library = _open(path)
    if library is None:
        return None, f"off: NNBENCH_NATIVE_LIBRARY={path} was not built from this {SOURCE.name}"
    return library, f"on (prebuilt {path})"


@functools.cache
def _source() -> bytes:
    return SOURCE.read_bytes()


def source_digest() -> str:
    """What a library built from this source returns from nnbench_native_digest()."""
    return hashlib.sha256(_source()).hexdigest()[:16]


def _compiler(name: str | None = None) -> str | None:
    """The path of ``name``, else of ``$CC``, else of ``cc``; None where there is none."""
    return shutil.which(name or os.environ.get("CC") or "cc")


def _others_can_write(info: os.stat_result, owners) -> bool:
    """Whether a file or folder belongs to someone outside ``owners`` or is writable by
    its group or by others: a library loaded from there could be replaced by them."""
    return info.st_uid not in owners or bool(info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _open(path: Path):
    """The library at ``path`` if it was built from this source, else None."""
    library = ctypes.CDLL(str(path))
    library.nnbench_native_digest.restype = ctypes.c_char_p
    if library.nnbench_native_digest().decode() != source_digest():
        return None
    return library


def build(folder: Path, compiler: str | None = None) -> Path:
    """Compile the library for every x86-64 vector unit into ``folder``/`LIBRARY_NAME`
    (for a machine without a compiler: see NNBENCH_NATIVE_LIBRARY); raises on failure.
    It is left readable by every user (mode 0755), who all load it: an image's runs go as
    whichever uid `docker run -u` names."""
    compiler = _compiler(compiler)
    if compiler is None:
        raise RuntimeError(NO_COMPILER)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LIBRARY_NAME
    for flags in FLAG_SETS:
        if _compile(compiler, flags, path):
            path.chmod(0o755)
            if _open(path) is None:
                raise RuntimeError(f"{path} does not load")
            return path
    raise RuntimeError(f"{compiler} could not compile {SOURCE}")


def _private_folder(folder: Path) -> str | None:
    """Create ``folder`` (mode 0700); a reason not to load from it, or None."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError as exc:
        return f"cache folder {folder}: {exc.strerror or exc}"
    if _others_can_write(info, owners=(os.getuid(),)):
        return f"cache folder {folder} is not private to this user (mode, owner)"
    return None


def _compiler_version(compiler: str) -> str:
    try:
        done = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def _compile(compiler: str, flags, path: Path) -> bool:
    """Compile into a temporary file beside ``path``, then rename it into place (atomic: a
    concurrent process sees either no library or a whole one)."""
    handle, temporary = tempfile.mkstemp(suffix=".so.tmp", dir=path.parent)
    os.close(handle)
    try:
        digest = f'-DNNBENCH_DIGEST="{source_digest()}"'
        done = subprocess.run(
            [compiler, *flags, digest, "-o", temporary, str(SOURCE), "-lm"],
            capture_output=True,
            timeout=COMPILE_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            return False
        os.replace(temporary, path)
        return True
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def address(a) -> int:
    """The address of a NumPy array's first element. Reading it costs about a microsecond,
    and a training step passes the same buffers every time: addresses are remembered per
    array object while it lives (an array's memory never moves; a dead array's id, reused
    by a new one, fails the identity check)."""
    hit = _ADDRESSES.get(id(a))
    if hit is not None and hit[0]() is a:
        return hit[1]
    value = a.__array_interface__["data"][0]
    if len(_ADDRESSES) >= _MAX_ADDRESSES:
        _ADDRESSES.clear()
    _ADDRESSES[id(a)] = (weakref.ref(a), value)
    return value


_ADDRESSES: dict = {}  # id(array) -> (weak reference to it, address)
_MAX_ADDRESSES = 4096
