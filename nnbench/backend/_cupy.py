"""The one place that imports CuPy. Importing nnbench never imports it; asking for the
cupy backend does, and fails at once with what to do when CuPy or a GPU is missing."""

from __future__ import annotations

from nnbench.errors import BackendUnavailableError

INSTALL_HINT = (
    "install CuPy with pip install 'nnbench[gpu]' (or cupy-cuda12x / cupy-cuda13x to match "
    "the CUDA driver) on a machine with an NVIDIA GPU, or use backend=numpy"
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


def device_count() -> int:
    """GPUs CuPy can use here (0 without CuPy, a driver or a GPU); CUDA_VISIBLE_DEVICES
    applies. Asking does not create a CUDA context."""
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # ImportError, CUDARuntimeError, missing driver libraries, ...
        return 0


def use_device(index: int) -> None:
    """Make GPU ``index`` the current device of the calling thread: arrays and kernels
    created after this go there."""
    import_cupy().cuda.Device(index).use()
