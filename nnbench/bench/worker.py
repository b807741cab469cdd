"""A benchmark worker: one framework in its own process, answering JSON requests.

    python -m nnbench.bench.worker {nnbench,torch,sklearn} --threads N

Running each framework in a process of its own keeps thread pools apart (NumPy's OpenBLAS
and PyTorch's OpenMP in one process slow each other down badly on a small machine), and a
long-lived worker lets a controller interleave frameworks round by round (A B A B ...)
without paying imports each time. Thread pools are limited after every import.

It speaks `nnbench.bench.protocol`, with these requests:

- ``{"op": "step", "sizes": [...], "batch_size": B, "optimizer": "sgd", "samples": k,
  "warmup": w, "min_sample_s": s, "floor": bool}`` -> ``{"step_ms": [...],
  "steps_per_sample": n, "floor_ms": [...]}`` (``floor_ms`` from nnbench only).
- ``{"op": "target", "sizes": [...], "data": "<file.npz>", "accuracy": a,
  "batch_size": B, "optimizer": name, "lr": lr, "max_epochs": e, "seed": s}`` ->
  ``{"time_to_target_s": t, "epochs_to_target": e or null, "target_acc": a}``.
- ``{"op": "env"}`` -> ``{"env": ...}``, the machine as it is now.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from nnbench.bench.protocol import run

FRAMEWORKS = ("nnbench", "torch", "sklearn")


class Worker:
    """Builds and caches one step per (sizes, batch size, optimizer) and times it."""

    def __init__(self, framework: str, threads: int | None):
        self.framework = framework
        self.threads = threads
        self._steps: dict = {}
        self._floors: dict = {}
        if framework == "torch":
            import torch

            if threads is not None:
                torch.set_num_threads(threads)
        elif framework == "sklearn":
            import sklearn.neural_network  # noqa: F401  (load its libraries before limiting)
        import nnbench as nb

        self.backend = nb.get_backend("numpy", "float32")
        from nnbench.machine import limit_threads

        self._limits = limit_threads(threads)

    def environment(self) -> dict:
        from nnbench.bench.env import environment

        env = environment()
        if self.framework == "nnbench":
            env["kernels"] = self.backend.kernels()
        if self.framework == "torch":
            import torch

            env["torch_threads"] = torch.get_num_threads()
        return env

    # ------------------------------------------------------------------ requests
    def handle(self, request: dict) -> dict:
        op = request.get("op")
        if op == "step":
            return self.step(request)
        if op == "target":
            return self.target(request)
        if op == "env":
            return {"env": self.environment()}
        return {"error": f"unknown op {op!r}"}

    def step(self, request: dict) -> dict:
        from nnbench.bench.timing import time_steps

        sizes, batch_size = tuple(request["sizes"]), int(request["batch_size"])
        optimizer = request.get("optimizer", "sgd")
        step = self._step(sizes, batch_size, optimizer)
        options = {
            "samples": int(request.get("samples", 7)),
            "warmup": int(request.get("warmup", 5)),
            "min_sample_s": float(request.get("min_sample_s", 0.05)),
        }
        timing = time_steps(step, step.synchronize_target, **options)
        response = {"step_ms": timing.samples_ms, "steps_per_sample": timing.steps_per_sample}
        if request.get("floor") and self.framework == "nnbench":
            floor = self._floors.get((sizes, batch_size))
            if floor is None:
                from nnbench.bench.floor import GemmFloor

                floor = self._floors[(sizes, batch_size)] = GemmFloor(
                    self.backend, sizes, batch_size
                )
            response["floor_ms"] = time_steps(floor, self.backend, **options).samples_ms
        return response

    def _step(self, sizes, batch_size, optimizer):
        key = (sizes, batch_size, optimizer)
        if key not in self._steps:
            self._steps[key] = _Timed(self._build_step(sizes, batch_size, optimizer))
        return self._steps[key]

    def _build_step(self, sizes, batch_size, optimizer):
        if self.framework == "nnbench":
            from nnbench.bench.runner import StepBench

            return StepBench(sizes, batch_size, self.backend, optimizer)
        if self.framework == "torch":
            from nnbench.reference.torch_mlp import TorchStep

            return TorchStep(sizes, batch_size, optimizer)
        from nnbench.reference.sklearn_mlp import SklearnStep

        return SklearnStep(sizes, batch_size, optimizer)

    def target(self, request: dict) -> dict:
        import nnbench as nb
        from nnbench.bench.runner import make_optimizer
        from nnbench.bench.target import TargetTask, time_to_accuracy

        sizes = tuple(request["sizes"])
        with np.load(request["data"]) as f:
            task = TargetTask(
                f["x_train"],
                f["y_train"],
                f["x_test"],
                f["y_test"],
                accuracy=float(request["accuracy"]),
                max_epochs=int(request.get("max_epochs", 100)),
            )
        seed, lr = int(request.get("seed", 0)), request.get("lr")
        batch_size, optimizer = int(request["batch_size"]), request.get("optimizer", "adam")
        model = nb.MLP(sizes[0], sizes[1:-1], sizes[-1], seed=seed, backend=self.backend)
        if self.framework == "nnbench":
            opt = make_optimizer(optimizer, model, lr)
            return time_to_accuracy(
                model, nb.CrossEntropyLoss(), opt, task, batch_size=batch_size, seed=seed
            )
        if self.framework == "torch":
            from nnbench.reference.torch_mlp import train_to_accuracy

            seconds, epochs, acc = train_to_accuracy(
                sizes,
                model.state_dict(),
                task.arrays(),
                target=task.accuracy,
                batch_size=batch_size,
                optimizer=optimizer,
                lr=lr,
                max_epochs=task.max_epochs,
                seed=seed,
                clock=time.perf_counter,
            )
            return {"time_to_target_s": seconds, "epochs_to_target": epochs, "target_acc": acc}
        return {"error": "time to target is measured for nnbench and torch only"}


class _Timed:
    """A step callable with the object `time_steps` synchronizes on."""

    def __init__(self, step):
        self.step = step
        self.synchronize_target = step.backend if hasattr(step, "backend") else step

    def __call__(self):
        return self.step()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("framework", choices=FRAMEWORKS)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    run(lambda: Worker(args.framework, args.threads))


if __name__ == "__main__":
    main()
