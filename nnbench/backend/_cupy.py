"""The one place that imports CuPy. Importing nnbench never imports it; asking for the
cupy backend does, and fails at once with what to do when CuPy or a GPU is missing."""

from __future__ import annotations

from nnbench.errors import BackendUnavailableError

INSTALL_HINT = (
    "install CuPy with pip install 'nnbench[gpu]' (cupy-cuda12x) on a machine with an "
    "NVIDIA GPU, or use backend=numpy"
)


def import_cupy():
    """Return the cupy module if it imports and sees at least one GPU; else raise."""
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend=cupy: CuPy is not installed; {INSTALL_HINT}"
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError, missing driver libraries, ...
        raise BackendUnavailableError(
            f"backend=cupy: CuPy is installed but no GPU is usable ({exc}); use backend=numpy"
        ) from exc
    if count < 1:
        raise BackendUnavailableError("backend=cupy: CuPy found no GPU; use backend=numpy")
    return cupy
