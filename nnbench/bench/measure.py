"""One framework's full benchmark, in a process of its own: the worker a bench job starts.

    python -m nnbench.bench.measure nnbench-numpy --threads 1

It speaks `nnbench.bench.protocol` with the requests of `nnbench.bench.worker` and one
more, ``{"op": "bench",
"sizes": [...], "batch_size": B, "optimizer": "sgd", "lr": null, "seed": 0, "samples": k,
"warmup": w, "min_sample_s": s, "floor": true}``, answered with a flat result: the keys of
`nnbench.bench.RESULT_KEYS` (what this framework does not measure is null) and the machine
as ``env.*`` keys. A framework that cannot run here announces itself ``unavailable``.

The frameworks (`FRAMEWORKS`), all float32 with ReLU and softmax cross-entropy:

    nnbench-numpy   `nnbench.bench.benchmark` on the NumPy backend: step, GEMM-only floor,
                    step / floor, peak host memory, allocations per step
    nnbench-cupy    the same on the CuPy backend (its device pool as device_mb)
    torch-cpu       `nnbench.reference.torch_mlp.TorchStep`, PyTorch eager on the CPU
    torch-cuda      the same on the first CUDA device (peak allocated as device_mb)
    sklearn         `nnbench.reference.sklearn_mlp.SklearnStep`, MLPClassifier's solver step
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from nnbench.bench.memory import peak_host_mb
from nnbench.bench.protocol import run
from nnbench.bench.worker import Worker
from nnbench.errors import BackendUnavailableError

# name -> (the worker's framework, where it runs)
FRAMEWORKS = {
    "nnbench-numpy": ("nnbench", "numpy"),
    "nnbench-cupy": ("nnbench", "cupy"),
    "torch-cpu": ("torch", "cpu"),
    "torch-cuda": ("torch", "cuda"),
    "sklearn": ("sklearn", "cpu"),
}
OPTIMIZERS = ("sgd", "adam")  # the ones every framework has
INSTALL = "pip install 'nnbench[reference]'"
MB = 1024 * 1024


def check_available(name: str) -> None:
    """Raise BackendUnavailableError saying why framework ``name`` cannot run here (the
    CuPy backend says so itself when it is created)."""
    library, _ = FRAMEWORKS[name]
    if library == "torch" and importlib.util.find_spec("torch") is None:
        raise BackendUnavailableError(f"{name}: PyTorch is not installed; {INSTALL}")
    if library == "sklearn" and importlib.util.find_spec("sklearn") is None:
        raise BackendUnavailableError(f"{name}: scikit-learn is not installed; {INSTALL}")
    if name == "torch-cuda":
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"torch-cuda: PyTorch {torch.__version__} sees no CUDA device; use torch-cpu"
            )


class BenchWorker(Worker):
    """A `Worker` for one of `FRAMEWORKS` that also answers ``bench`` requests."""

    def __init__(self, name: str, threads: int | None):
        check_available(name)
        library, self.place = FRAMEWORKS[name]
        cupy_backend = None
        if self.place == "cupy":  # raises BackendUnavailableError without CuPy or a GPU
            import nnbench as nb

            cupy_backend = nb.get_backend("cupy", "float32")
        super().__init__(library, threads)  # imports, then limits the thread pools
        if cupy_backend is not None:
            self.backend = cupy_backend
        self.name = name

    def handle(self, request: dict) -> dict:
        if request.get("op") == "bench":
            return self.bench(request)
        return super().handle(request)

    def bench(self, request: dict) -> dict:
        sizes, batch_size = tuple(request["sizes"]), int(request["batch_size"])
        optimizer, lr, seed = request["optimizer"], request.get("lr"), int(request.get("seed", 0))
        timing = {
            "samples": int(request.get("samples", 7)),
            "warmup": int(request.get("warmup", 5)),
            "min_sample_s": float(request.get("min_sample_s", 0.05)),
        }
        if self.framework == "nnbench":
            from nnbench.bench.runner import benchmark

            result = benchmark(
                sizes,
                batch_size=batch_size,
                backend=self.backend,
                optimizer=optimizer,
                lr=lr,
                seed=seed,
                floor=bool(request.get("floor", True)),
                with_environment=False,
                **timing,
            )
        else:
            result = self.reference(sizes, batch_size, optimizer, lr, seed, timing)
        result["peak_host_mb"] = peak_host_mb()
        result.update({f"env.{key}": value for key, value in self.environment().items()})
        return result

    def reference(self, sizes, batch_size, optimizer, lr, seed, timing: dict) -> dict:
        """PyTorch's or scikit-learn's step, timed as nnbench's is; no GEMM floor."""
        from nnbench.bench.flops import format_sizes
        from nnbench.bench.memory import traced_peak_bytes
        from nnbench.bench.runner import RESULT_KEYS, step_metrics
        from nnbench.bench.timing import time_steps

        step = self.reference_step(sizes, batch_size, optimizer, lr, seed)
        result = dict.fromkeys(RESULT_KEYS)
        result.update(step_metrics(sizes, batch_size, time_steps(step, step, **timing)))
        result.update(
            model=format_sizes(sizes),
            batch_size=batch_size,
            backend=self.framework,
            device=self.device_name(),
            dtype="float32",
            optimizer=optimizer,
            lr=step.lr,
        )
        if self.framework == "sklearn":  # tracemalloc sees NumPy's buffers, not torch's
            result["step_alloc_kb"] = traced_peak_bytes(step, repeats=3) / 1024
        if self.place == "cuda":
            import torch

            result["device_mb"] = torch.cuda.max_memory_allocated() / MB
        return result

    def reference_step(self, sizes, batch_size, optimizer, lr=None, seed=0):
        """The reference's step callable, with its learning rate as ``lr``."""
        if self.framework == "torch":
            from nnbench.reference.torch_mlp import TorchStep

            step = TorchStep(sizes, batch_size, optimizer, lr, seed, device=self.place)
            step.lr = step.optimizer.param_groups[0]["lr"]
            return step
        from nnbench.reference.sklearn_mlp import SklearnStep

        step = SklearnStep(sizes, batch_size, optimizer, lr, seed)
        step.lr = step.clf.learning_rate_init
        return step

    def _build_step(self, sizes, batch_size, optimizer):
        """The worker's ``step`` request, on this framework's device."""
        if self.framework == "nnbench":
            return super()._build_step(sizes, batch_size, optimizer)
        return self.reference_step(sizes, batch_size, optimizer)

    def device_name(self) -> str:
        if self.place != "cuda":
            return "cpu"
        import torch

        return f"cuda:0 ({torch.cuda.get_device_name(0)})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("framework", choices=list(FRAMEWORKS))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    unavailable = (BackendUnavailableError, ImportError)
    return run(lambda: BenchWorker(args.framework, args.threads), unavailable)


if __name__ == "__main__":
    sys.exit(main())
