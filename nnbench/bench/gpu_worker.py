"""One framework of the GPU benchmark table (`nnbench.bench.gpu_table`), in a process of its own.

    python -m nnbench.bench.gpu_worker {nnbench-cupy,torch-cuda,nnbench-numpy} [--tf32] [--cpu]

It speaks `nnbench.bench.protocol` (a worker that cannot run here announces itself
``unavailable``), with one request:
``{"op": "step", "variant": v, "sizes": [...], "batch_size": B, "optimizer": "sgd",
"samples": k, "warmup": w, "min_sample_s": s, "floor": bool}`` -> ``{"step_ms": [...],
"steps_per_sample": n, "floor_ms": [...]?, "note": "..."?, "memory": {...}?}``.

Variants, all float32 with ReLU and softmax cross-entropy on one fixed batch:

    nnbench-cupy   eager   CupyBackend(fused=False): NumPy's paths on CuPy
                   fused   CupyBackend(): the fused kernels (what backend=cupy trains with)
                   graph   the fused step replayed as a CUDA graph (trainer.cuda_graph=true)
    torch-cuda     eager   PyTorch eager on the GPU (`nnbench.reference.torch_mlp.TorchStep`)
                   graph   the whole PyTorch step (forward, backward, optimizer step with
                           Adam's capturable=True) captured with torch.cuda.graph
    nnbench-numpy  eager   the NumPy backend on the CPU's cores, for nnbench-cupy / numpy

``--tf32`` lets float32 products use TF32 (CuPy: ``backend.tf32``; PyTorch:
``torch.set_float32_matmul_precision("high")``). ``--cpu``: a dry run without a GPU, for
tests: nnbench-cupy's variants run on NumPy (the graph through `HostCapturer`) and PyTorch
on the CPU (no graph). Imports neither Hydra nor MLflow.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

FRAMEWORKS = ("nnbench-cupy", "torch-cuda", "nnbench-numpy")
VARIANTS = {
    "nnbench-cupy": ("eager", "fused", "graph"),
    "torch-cuda": ("eager", "graph"),
    "nnbench-numpy": ("eager",),
}


class GraphStep:
    """nnbench's step on a fixed batch, replayed as a CUDA graph (or through any capturer):
    what `nnbench.fit` does per batch with ``cuda_graph=True``."""

    def __init__(self, sizes, batch_size, backend, optimizer, capturer, seed=0):
        import nnbench as nb
        from nnbench.bench.runner import make_optimizer, synthetic_batch
        from nnbench.graphed import GraphedTraining

        model = nb.MLP(sizes[0], sizes[1:-1], sizes[-1], seed=seed, backend=backend)
        loss_fn = nb.CrossEntropyLoss()
        trainer = GraphedTraining(model, loss_fn, make_optimizer(optimizer, model), capturer)
        x, y = synthetic_batch(sizes, batch_size, seed)
        x, y = model.check_input(x), loss_fn.prepare(backend, (batch_size, sizes[-1]), y)
        xb, yb, self._step = trainer.buffers(batch_size, x, y)
        xb[...], yb[...] = x, y
        xp = backend.xp
        trainer.stats[...] = xp.asarray([1.0, 0, 0, 0, 0, 0, 0], dtype=xp.float64)
        trainer.optimizer.begin_gated_steps()
        backend.synchronize()  # the batch is in place before another stream reads it
        self.rows, self.graphs = batch_size, trainer.graphs

    def __call__(self) -> None:
        self.graphs.run(self.rows, self._step)

    def synchronize(self) -> None:
        self.graphs.synchronize()


class TorchGraphStep:
    """PyTorch's whole training step captured as one CUDA graph, after PyTorch's recipe
    (torch.cuda.graphs, "whole network capture"): warm-up iterations on a side stream, then
    zero_grad(set_to_none=True), and forward, backward and optimizer.step() captured."""

    def __init__(self, sizes, batch_size, optimizer, seed=0, warmup=3):
        import torch

        from nnbench.reference.torch_mlp import DEFAULT_LR, build_mlp

        self.torch = torch
        rng = np.random.default_rng(seed)
        model = build_mlp(sizes, device="cuda")
        loss_fn = torch.nn.CrossEntropyLoss()
        params, lr = model.parameters(), DEFAULT_LR[optimizer]
        if optimizer == "adam":
            opt = torch.optim.Adam(params, lr=lr, capturable=True)
        else:
            opt = torch.optim.SGD(params, lr=lr)
        x = torch.from_numpy(rng.standard_normal((batch_size, sizes[0])).astype(np.float32))
        y = torch.from_numpy(rng.integers(0, sizes[-1], size=batch_size))
        x, y = x.to("cuda"), y.to("cuda")
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                opt.zero_grad(set_to_none=True)
                loss_fn(model(x), y).backward()
                opt.step()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.loss = loss_fn(model(x), y)
            self.loss.backward()
            opt.step()
        # The graph holds raw addresses, no references: whatever it reads or writes must
        # outlive it, or the caching allocator hands that memory to the next cell's tensors
        # (replays then read someone else's labels: a device-side assert).
        self.model, self.optimizer, self.x, self.y = model, opt, x, y

    def __call__(self) -> None:
        self.graph.replay()

    def synchronize(self) -> None:
        self.torch.cuda.synchronize()


class GpuWorker:
    """Builds each (variant, sizes, batch size, optimizer) step once and times it."""

    def __init__(self, framework: str, tf32: bool = False, cpu: bool = False):
        self.framework, self.tf32, self.cpu = framework, tf32, cpu
        self._steps: dict = {}
        self._floors: dict = {}
        self.backends = self._backends()

    def _backends(self) -> dict:
        import nnbench as nb

        if self.framework == "torch-cuda":
            import torch

            if not self.cpu and not torch.cuda.is_available():
                raise RuntimeError(f"PyTorch {torch.__version__} sees no CUDA device")
            torch.set_float32_matmul_precision("high" if self.tf32 else "highest")
            return {}
        if self.framework == "nnbench-numpy" or self.cpu:
            numpy = nb.get_backend("numpy", "float32")
            return {"eager": numpy, "fused": numpy, "graph": numpy}
        from nnbench.backend.cupy_backend import CupyBackend

        fused = CupyBackend("float32", tf32=self.tf32)
        return {"eager": CupyBackend("float32", fused=False), "fused": fused, "graph": fused}

    def environment(self) -> dict:
        from nnbench.bench.env import environment

        env = environment()
        env["framework"], env["tf32"], env["cpu_dry_run"] = self.framework, self.tf32, self.cpu
        if self.framework == "torch-cuda":
            import torch

            env["torch"] = torch.__version__
            if torch.cuda.is_available():
                env["device"] = torch.cuda.get_device_name(0)
        elif self.backends:
            backend = self.backends["fused"]
            env["device"] = backend.device
            env["backend"] = repr(backend)
        return env

    def handle(self, request: dict) -> dict:
        if request.get("op") == "step":
            return self.step(request)
        if request.get("op") == "env":
            return {"env": self.environment()}
        return {"error": f"unknown op {request.get('op')!r}"}

    def step(self, request: dict) -> dict:
        from nnbench.bench.timing import time_steps

        variant = request["variant"]
        sizes, batch_size = tuple(request["sizes"]), int(request["batch_size"])
        key = (variant, sizes, batch_size, request.get("optimizer", "sgd"))
        if key not in self._steps:
            self._steps[key] = self._build(*key)
        step = self._steps[key]
        if isinstance(step, str):
            return {"unavailable": step}
        options = {
            "samples": int(request.get("samples", 7)),
            "warmup": int(request.get("warmup", 5)),
            "min_sample_s": float(request.get("min_sample_s", 0.05)),
        }
        target = step if hasattr(step, "synchronize") else step.backend  # StepBench
        timing = time_steps(step, target, **options)
        response = {"step_ms": timing.samples_ms, "steps_per_sample": timing.steps_per_sample}
        if isinstance(step, GraphStep) and step.graphs.failures:
            response["note"] = "capture failed, eager steps: " + "; ".join(
                step.graphs.failures.values()
            )
        if request.get("floor") and self.framework == "nnbench-cupy" and variant != "eager":
            response["floor_ms"] = self._floor(sizes, batch_size, options)
            response["memory"] = self.backends["fused"].memory_stats()
        return response

    def _build(self, variant, sizes, batch_size, optimizer):
        if variant not in VARIANTS[self.framework]:
            return f"{self.framework} has no variant {variant!r}"
        if self.framework == "torch-cuda":
            if variant == "graph":
                if self.cpu:
                    return "CUDA graphs need a CUDA device (CPU dry run)"
                return TorchGraphStep(sizes, batch_size, optimizer)
            from nnbench.reference.torch_mlp import TorchStep

            return TorchStep(sizes, batch_size, optimizer, device="cpu" if self.cpu else "cuda")
        backend = self.backends[variant]
        if variant == "graph":
            from nnbench.backend.cuda_graph import CupyCapturer, HostCapturer

            capturer = HostCapturer() if self.cpu else CupyCapturer(backend.xp)
            return GraphStep(sizes, batch_size, backend, optimizer, capturer)
        from nnbench.bench.runner import StepBench

        return StepBench(sizes, batch_size, backend, optimizer)

    def _floor(self, sizes, batch_size, options) -> list:
        from nnbench.bench.floor import GemmFloor
        from nnbench.bench.timing import time_steps

        backend = self.backends["fused"]
        floor = self._floors.get((sizes, batch_size))
        if floor is None:
            floor = self._floors[(sizes, batch_size)] = GemmFloor(backend, sizes, batch_size)
        return time_steps(floor, backend, **options).samples_ms


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("framework", choices=FRAMEWORKS)
    parser.add_argument("--tf32", action="store_true")
    parser.add_argument("--cpu", action="store_true", help="a dry run without a GPU")
    args = parser.parse_args(argv)
    from nnbench.bench.protocol import run

    # No CuPy, no GPU, no torch: any failure to start is announced, and the table says why.
    return run(
        lambda: GpuWorker(args.framework, args.tf32, args.cpu),
        unavailable=(Exception,),
        describe=lambda exc: f"{type(exc).__name__}: {exc}",
    )


if __name__ == "__main__":
    sys.exit(main())
