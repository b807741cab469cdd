"""Which GPU a multirun job uses: the one place that decides it.

Job ``n`` of a sweep runs on GPU ``n mod G``, where ``G`` counts the GPUs this process sees
(CUDA_VISIBLE_DEVICES applies). With ``hydra/launcher=joblib_gpus`` (``G`` jobs at once) the
first ``G`` jobs get one GPU each; later ones follow ``n mod G``, so when jobs finish out
of order two may share a GPU for a while (slower, not wrong). A launcher that gives each
job its own GPU (SLURM's ``gpus_per_node=1``, Ray's ``num_gpus=1``) makes ``G`` = 1: the
job uses the GPU it was given.

The device is chosen with ``cupy.cuda.Device(i).use()`` rather than by setting
CUDA_VISIBLE_DEVICES: joblib reuses a worker process for several jobs, and CUDA reads that
variable once per process.
"""

from __future__ import annotations

from nnbench.backend import _cupy

GPU_BACKENDS = ("cupy", "auto")


def gpu_count() -> int:
    """GPUs usable here: 0 without CuPy or a GPU."""
    return _cupy.device_count()


def parallel_jobs() -> int:
    """How many jobs to run at once for one job per GPU: the GPU count, at least 1 (on a
    machine without a GPU each cupy job stops with the backend's message)."""
    return max(1, gpu_count())


def use_job_gpu(backend: str, job_num: int) -> int | None:
    """Put job ``job_num`` of a multirun on GPU ``job_num mod count`` when ``backend``
    may run on a GPU; the device index, or None when no GPU is used (a CPU backend, or
    no usable GPU: ``get_backend`` then says why for backend=cupy)."""
    if backend not in GPU_BACKENDS:
        return None
    count = gpu_count()
    if count == 0:
        return None
    device = job_num % count
    _cupy.use_device(device)
    return device
