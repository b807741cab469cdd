"""A stacked-training benchmark worker: nnbench's stack or PyTorch's torch.func ensemble, in
a process of its own (`benchmarks/sweep_speed.py`, `nnbench.bench.gpu_stack_table`).

    python -m nnbench.bench.stack_worker {nnbench,torch-func} [--threads N] [--device cpu|cuda]

It speaks `nnbench.bench.protocol`, with one request:
``{"op": "step", "variant": v, "members": M, "sizes": [...], "batch_size": B,
"optimizer": "momentum"|"adam", "samples": k, "warmup": w, "min_sample_s": s}`` ->
``{"step_ms": [...], "steps_per_sample": n}``: the time of one step of all M members; and
(nnbench) ``{"op": "peak", "n": 1024}`` -> ``{"gflops": g}``, the float32 GEMM peak.

Variants, float32, ReLU, softmax cross-entropy, each member its own fixed batch and its own
learning rate (log-spaced, the same for both frameworks):

    nnbench     stack   `nnbench.stack.Stack.step` (``--device cuda``: on CuPy)
                graph   the stacked step replayed as a CUDA graph, where nnbench.stack has one
                floor   the same batched matrix products alone (`StackFloor`)
                solo    one member's `nnbench.train_step` (``members`` is ignored)
    torch-func  stack   `nnbench.reference.torch_ensemble.TorchEnsembleStep`

Threads: every BLAS/OpenMP pool (and PyTorch's intra-op pool) limited to ``--threads``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

FRAMEWORKS = ("nnbench", "torch-func")
VARIANTS = {"nnbench": ("stack", "graph", "floor", "solo"), "torch-func": ("stack",)}
OPTIMIZERS = ("momentum", "adam")
LR_RANGE = {"momentum": (-3.0, -1.0), "adam": (-4.0, -2.0)}  # log10 of the members' lrs


def member_lrs(optimizer: str, members: int) -> np.ndarray:
    """The members' learning rates: log-spaced over a range that trains."""
    low, high = LR_RANGE[optimizer]
    return np.logspace(low, high, members)


def member_batches(sizes, members: int, batch_size: int, seed: int = 0):
    """Every member's fixed batch: ``x (M, B, in)`` float64, ``y (M, B)`` int64 labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((members, batch_size, sizes[0]))
    return x, rng.integers(0, sizes[-1], size=(members, batch_size))


class NnbenchStack:
    """M nnbench members (their own weights, learning rate and batch) as one `Stack`."""

    def __init__(self, backend, sizes, members, batch_size, optimizer, seed=0):
        import nnbench as nb
        from nnbench.stack import Stack

        hidden = list(sizes[1:-1])
        models = [
            nb.MLP(sizes[0], hidden, sizes[-1], seed=seed + i, backend=backend)
            for i in range(members)
        ]
        lrs = member_lrs(optimizer, members)
        opts = [_optimizer(nb, optimizer, m, lr) for m, lr in zip(models, lrs, strict=True)]
        self.backend, self.stack = backend, Stack(models, opts, nb.CrossEntropyLoss())
        x, y = member_batches(sizes, members, batch_size, seed)
        self.x, self.y = backend.asarray(x), backend.asarray(y, backend.int_dtype)

    def __call__(self):
        return self.stack.step(self.x, self.y)

    def synchronize(self) -> None:
        self.backend.synchronize()


def _optimizer(nb, name, model, lr):
    if name == "momentum":
        return nb.SGD(model, lr=lr, momentum=0.9)
    return nb.Adam(model, lr=lr)


class StackWorker:
    """Builds each (variant, members, sizes, batch size, optimizer) step once, times it."""

    def __init__(self, framework: str, threads: int | None = None, device: str = "cpu"):
        self.framework, self.threads, self.device = framework, threads, device
        self._steps: dict = {}
        self.backend = None
        if framework == "torch-func":
            import torch

            if device == "cuda" and not torch.cuda.is_available():
                raise RuntimeError(f"PyTorch {torch.__version__} sees no CUDA device")
            if threads is not None:
                torch.set_num_threads(threads)
        else:
            import nnbench as nb

            self.backend = nb.get_backend("cupy" if device == "cuda" else "numpy", "float32")
        from nnbench.machine import limit_threads

        self._limits = limit_threads(threads)

    def environment(self) -> dict:
        from nnbench.bench.env import environment

        env = environment()
        env["framework"], env["device"] = self.framework, self.device
        if self.backend is not None:
            env["backend"], env["kernels"] = repr(self.backend), self.backend.kernels()
        else:
            import torch

            env["torch"], env["torch_threads"] = torch.__version__, torch.get_num_threads()
        return env

    def handle(self, request: dict) -> dict:
        if request.get("op") == "step":
            return self.step(request)
        if request.get("op") == "env":
            return {"env": self.environment()}
        if request.get("op") == "peak" and self.backend is not None:
            from nnbench.bench.stack_floor import peak_gemm_gflops

            return {"gflops": peak_gemm_gflops(self.backend, int(request.get("n", 1024)))}
        return {"error": f"unknown op {request.get('op')!r}"}

    def step(self, request: dict) -> dict:
        from nnbench.bench.timing import time_steps

        key = (
            request.get("variant", "stack"),
            int(request.get("members", 1)),
            tuple(request["sizes"]),
            int(request["batch_size"]),
            request.get("optimizer", "momentum"),
        )
        if key not in self._steps:
            self._steps[key] = self._build(*key)
        step = self._steps[key]
        if isinstance(step, str):
            return {"unavailable": step}
        options = {k: request[k] for k in ("samples", "warmup", "min_sample_s") if k in request}
        timing = time_steps(step, step, **options)
        return {"step_ms": timing.samples_ms, "steps_per_sample": timing.steps_per_sample}

    def _build(self, variant, members, sizes, batch_size, optimizer):
        if variant not in VARIANTS[self.framework]:
            return f"{self.framework} has no variant {variant!r}"
        if optimizer not in OPTIMIZERS:
            return f"optimizer {optimizer!r} is not measured here (allowed: momentum, adam)"
        if self.framework == "torch-func":
            from nnbench.reference.torch_ensemble import TorchEnsembleStep

            lrs = member_lrs(optimizer, members)
            return TorchEnsembleStep(sizes, members, batch_size, optimizer, lrs, device=self.device)
        if variant == "floor":
            from nnbench.bench.stack_floor import StackFloor

            return _Synced(StackFloor(self.backend, sizes, members, batch_size), self.backend)
        if variant == "solo":
            from nnbench.bench.runner import StepBench

            return _Synced(StepBench(sizes, batch_size, self.backend, optimizer), self.backend)
        import nnbench.stack

        if variant == "graph" and self.device != "cuda":
            return "CUDA graphs need a CUDA device (CPU dry run)"
        if not hasattr(nnbench.stack, "Stack"):
            return "nnbench.stack has no Stack here (the stacked engine is not in this checkout)"
        if variant == "graph":
            return graphed_stack(self.backend, sizes, members, batch_size, optimizer)
        return NnbenchStack(self.backend, sizes, members, batch_size, optimizer)


def graphed_stack(backend, sizes, members, batch_size, optimizer):
    """The stacked step as a CUDA graph, or why there is none."""
    import nnbench.stack as stack

    if not hasattr(stack, "GraphedStack"):
        return "nnbench.stack offers no CUDA-graph step (graphed column not available)"
    return "the graphed stack is not wired into this benchmark yet"


class _Synced:
    """A step with the ``synchronize`` `time_steps` calls (its backend's)."""

    def __init__(self, step, backend):
        self.step, self.backend = step, backend

    def __call__(self):
        return self.step()

    def synchronize(self) -> None:
        self.backend.synchronize()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("framework", choices=FRAMEWORKS)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    from nnbench.bench.protocol import run

    return run(
        lambda: StackWorker(args.framework, args.threads, args.device),
        unavailable=(Exception,),
        describe=lambda exc: f"{type(exc).__name__}: {exc}",
    )


if __name__ == "__main__":
    sys.exit(main())
