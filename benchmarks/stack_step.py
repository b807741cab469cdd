"""Per-member step time of a stack against its matrix-product floor and a solo model.

    .venv/bin/python benchmarks/stack_step.py [--members 8 32 128] [--optimizer sgd adam]

For each M: ``stack`` is one `nnbench.stack.Stack.step` on (M, B) batches divided by M,
``halves`` the same with ``threads=2`` (two halves side by side, on two cores);
``floor`` the same batched matrix products alone (the stack's own buffers and layouts,
`stack_matmul`), divided by M; ``solo`` one `nnbench.train.train_step`-equivalent step of a
single model (checked data, as `nnbench.fit` runs it). Each figure is the median (and min) of
several samples of many steps, the variants interleaved (A B C A B C ...); ratios are
printed beside them. Digits-shaped data (64 features, 10 classes), MLP 64-64-64-10, ReLU,
float32 by default, BLAS on one thread unless --threads says otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import nnbench as nb
from nnbench.backend import get_backend
from nnbench.stack import Stack
from nnbench.train import _step


def make_members(be, count: int, optimizer: str, sizes):
    models = [nb.MLP(sizes[0], sizes[1:-1], sizes[-1], seed=i, backend=be) for i in range(count)]
    if optimizer == "sgd":
        optimizers = [nb.SGD(m, lr=0.01 * (1 + i), momentum=0.9) for i, m in enumerate(models)]
    else:
        optimizers = [nb.Adam(m, lr=1e-3 * (1 + i)) for i, m in enumerate(models)]
    return models, optimizers


class StackFloor:
    """The matrix products of a stacked step, alone, on the stack's buffers."""

    def __init__(self, stack: Stack, x):
        self.be, self.x = stack.backend, x
        self.dense = stack.parts[0].network.dense
        stack.step(x, self._labels(stack, x))  # allocate every buffer of the step
        self.h = [x] + [layer._y for layer in self.dense]
        self.d = [
            stack.backend.stack_buffer(stack.members, tuple(layer._y.shape[1:]))
            for layer in self.dense
        ]
        for d in self.d:
            d[...] = 0.5

    @staticmethod
    def _labels(stack, x):
        be = stack.backend
        return be.asarray(np.zeros((stack.members, x.shape[1]), dtype=np.int64), be.int_dtype)

    def __call__(self) -> None:
        mm, t = self.be.stack_matmul, self.be.matrix_transpose
        for k, layer in enumerate(self.dense):
            mm(self.h[k], t(layer.weight), self.h[k + 1])
        for k in reversed(range(len(self.dense))):
            layer = self.dense[k]
            mm(t(self.d[k]), self.h[k], layer.grad_weight)
            if k > 0:
                mm(self.d[k], layer.weight, self.dense[k - 1]._y)


def timed(fn, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def measure(members: int, optimizer: str, args) -> dict:
    be = get_backend("numpy", args.dtype)
    sizes = [64, 64, 64, 10]
    rng = np.random.default_rng(0)
    x_host = rng.random((members, args.batch, sizes[0]))
    y_host = rng.integers(0, sizes[-1], size=(members, args.batch))
    models, optimizers = make_members(be, members, optimizer, sizes)
    stack = Stack(models, optimizers, nb.CrossEntropyLoss())
    models2, optimizers2 = make_members(be, members, optimizer, sizes)
    halves = Stack(models2, optimizers2, nb.CrossEntropyLoss(), threads=2)
    x, y = be.asarray(x_host), be.asarray(y_host, be.int_dtype)
    floor = StackFloor(stack, x)
    solo_model, solo_opt = make_members(be, 1, optimizer, sizes)
    loss = nb.CrossEntropyLoss()
    xs, ys = be.asarray(x_host[0]), loss.prepare(be, (args.batch, sizes[-1]), y_host[0])

    variants = {
        "stack": lambda: stack.step(x, y),
        "halves": lambda: halves.step(x, y),
        "floor": floor,
        "solo": lambda: _step(solo_model[0], loss, solo_opt[0], xs, ys, False),
    }
    many = max(4, 400 // members)
    steps = {"stack": many, "halves": many, "floor": many, "solo": 400}
    samples = {name: [] for name in variants}
    with np.errstate(over="ignore", invalid="ignore"):
        for fn in variants.values():
            fn()
        for _ in range(args.samples):
            for name, fn in variants.items():
                samples[name].append(timed(fn, steps[name]))
    per = {"stack": members, "halves": members, "floor": members, "solo": 1}
    return {
        (name, stat.__name__): stat(values) / per[name] * 1e6
        for name, values in samples.items()
        for stat in (statistics.median, min)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--optimizer", nargs="+", default=["sgd", "adam"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=args.threads, user_api="blas"):
        print(f"MLP 64-64-64-10 relu, B={args.batch}, {args.dtype}, BLAS threads {args.threads}")
        print("us per member step: median of samples [min]; ratios of medians")
        names = ("stack", "halves", "floor", "solo")
        header = f"{'opt':5} {'M':>4} " + " ".join(f"{n:>14}" for n in names)
        print(header + f" {'stack/floor':>12} {'halves/floor':>13} {'stack/solo':>11}")
        for optimizer in args.optimizer:
            for members in args.members:
                r = measure(members, optimizer, args)
                med = {k: r[(k, "median")] for k in names}
                cells = " ".join(f"{med[k]:6.1f} [{r[(k, 'min')]:5.1f}]" for k in names)
                ratios = (
                    med["stack"] / med["floor"],
                    med["halves"] / med["floor"],
                    med["stack"] / med["solo"],
                )
                print(
                    f"{optimizer:5} {members:4d} {cells} "
                    f"{ratios[0]:12.2f} {ratios[1]:13.2f} {ratios[2]:11.2f}"
                )


if __name__ == "__main__":
    main()
