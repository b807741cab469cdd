"""NumPy against CuPy on the same training: same seed, same initial weights (drawn on the host),
same batches; the losses of every step must agree within the dtype's tolerance.

    python -m nnbench.bench.gpu_parity            # 50 steps, every CuPy variant
    python -m nnbench.bench.gpu_parity --cpu      # the same machinery with NumPy only

Variants: CuPy with the NumPy paths (``fused=False``), with the fused kernels, and with the
steps replayed as CUDA graphs; each in float64 (where only rounding separates them: the
strict check of the fast paths) and float32 (the training default), with SGD + momentum and
with Adam. No dropout: NumPy's and the GPU's generators draw different masks. Exit status 1
when a variant disagrees. Imports neither Hydra nor MLflow.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

import nnbench as nb
from nnbench.graphed import GraphedTraining
from nnbench.train import train_step

SIZES = (784, 256, 256, 10)
# Relative, on every step's loss. float64: only rounding separates the paths, so this is the
# sharp check of the fused kernels. float32: GEMMs sum in another order on each device, and
# 50 steps (Adam's sign-like updates of near-zero gradients especially) let that grow.
TOLERANCE = {"float64": 1e-9, "float32": 1e-3}
OPTIMIZERS = {
    "momentum": lambda model: nb.SGD(model, lr=0.05, momentum=0.9),
    "adam": lambda model: nb.Adam(model, lr=1e-3),
}


def batches(steps: int, batch_size: int, sizes=SIZES, seed: int = 0):
    """``steps`` (x, y) host batches of a learnable problem: labels from a random linear
    teacher on standard-normal inputs."""
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((sizes[0], sizes[-1]))
    out = []
    for _ in range(steps):
        x = rng.standard_normal((batch_size, sizes[0]))
        out.append((x, np.argmax(x @ teacher, axis=1)))
    return out


def eager_losses(backend, optimizer: str, data, sizes=SIZES) -> list[float]:
    model = nb.MLP(sizes[0], sizes[1:-1], sizes[-1], seed=0, backend=backend)
    opt, loss_fn = OPTIMIZERS[optimizer](model), nb.CrossEntropyLoss()
    return [train_step(model, loss_fn, opt, x, y) for x, y in data]


def graph_losses(backend, optimizer: str, data, capturer, sizes=SIZES) -> tuple[list, dict]:
    """The losses of steps replayed from graphs (`nnbench.graphed.GraphedTraining`), read
    back after each step; and the capture failures (empty when every step was a graph)."""
    model = nb.MLP(sizes[0], sizes[1:-1], sizes[-1], seed=0, backend=backend)
    opt, loss_fn = OPTIMIZERS[optimizer](model), nb.CrossEntropyLoss()
    trainer = GraphedTraining(model, loss_fn, opt, capturer)
    xp = backend.xp
    trainer.stats[...] = xp.asarray([1.0, 0, 0, 0, 0, 0, 0], dtype=xp.float64)
    opt.begin_gated_steps()
    x0, y0 = data[0]
    xb, yb, step = trainer.buffers(len(y0), backend.asarray(x0), backend.asarray(y0, "int64"))
    losses = []
    with trainer.graphs.running():
        for x, y in data:
            xb[...] = backend.asarray(x)
            yb[...] = backend.asarray(y, backend.int_dtype)
            trainer.graphs.run(len(y), step)
            losses.append(float(backend.to_host(trainer.loss)[0]))
    return losses, dict(trainer.graphs.failures)


def variants(cpu: bool):
    """(name, make backend for a dtype, capturer factory or None)."""
    if cpu:
        from nnbench.backend.cuda_graph import HostCapturer

        numpy = nb.get_backend
        return [
            ("numpy again", lambda d: numpy("numpy", d), None),
            ("numpy, host graph", lambda d: numpy("numpy", d), lambda be: HostCapturer()),
        ]
    from nnbench.backend.cuda_graph import CupyCapturer
    from nnbench.backend.cupy_backend import CupyBackend

    return [
        ("cupy eager (unfused)", lambda d: CupyBackend(d, fused=False), None),
        ("cupy fused", lambda d: CupyBackend(d), None),
        ("cupy fused + CUDA graph", lambda d: CupyBackend(d), lambda be: CupyCapturer(be.xp)),
    ]


def max_relative_difference(a, b) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if not (math.isfinite(x) and math.isfinite(y)):
            return math.inf
        worst = max(worst, abs(x - y) / max(abs(y), 1e-30))
    return worst


def run(steps: int = 50, batch_size: int = 64, cpu: bool = False, out=sys.stdout) -> bool:
    """Print one line per (variant, dtype, optimizer); True when all agree."""
    data = batches(steps, batch_size)
    ok = True
    print(f"NumPy vs CuPy parity: MLP {'-'.join(map(str, SIZES))}, {steps} steps of "
          f"B={batch_size}, same initial weights and batches", file=out)  # fmt: skip
    for dtype in ("float64", "float32"):
        for optimizer in OPTIMIZERS:
            reference = eager_losses(nb.get_backend("numpy", dtype), optimizer, data)
            for name, make, capturer in variants(cpu):
                backend = make(dtype)
                note = ""
                if capturer is None:
                    losses = eager_losses(backend, optimizer, data)
                else:
                    losses, failures = graph_losses(backend, optimizer, data, capturer(backend))
                    note = f"  (capture failed: {failures})" if failures else ""
                diff = max_relative_difference(losses, reference)
                good = diff <= TOLERANCE[dtype] and not note
                ok &= good
                print(
                    f"  {'ok ' if good else 'BAD'} {dtype} {optimizer:<8} {name:<24} "
                    f"max rel diff {diff:.2e} (tolerance {TOLERANCE[dtype]:.0e}), "
                    f"loss {reference[0]:.4f} -> {reference[-1]:.4f}{note}",
                    file=out,
                    flush=True,
                )
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cpu", action="store_true", help="NumPy stand-ins (no GPU needed)")
    args = parser.parse_args(argv)
    return 0 if run(args.steps, args.batch_size, args.cpu) else 1


if __name__ == "__main__":
    sys.exit(main())
