"""Analytic floating-point operation counts of an MLP training step.

Only the matrix products are counted (a multiply-add is two operations); bias additions,
activations, the loss and the optimizer update are lower-order terms left out, as is usual
when quoting achieved GFLOP/s. For a Dense layer of ``fan_in`` -> ``fan_out`` on a batch
of ``B`` rows:

    forward         y = x @ W.T       2 * B * fan_in * fan_out
    weight grad     dW = dy.T @ x     2 * B * fan_in * fan_out
    input grad      dx = dy @ W       2 * B * fan_in * fan_out  (not for the first layer)

For 784-256-256-10 that is 537,600 (forward) + 673,792 (backward) = 1,211,392 per sample.
"""

from __future__ import annotations

from collections.abc import Sequence

from nnbench.errors import invalid


def check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    """Layer widths ``(in, *hidden, out)``: at least two positive integers."""
    sizes = tuple(sizes)
    if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise invalid("layer sizes", sizes, "expected (in, *hidden, out) positive integers")
    return sizes


def mlp_flops(sizes: Sequence[int], batch_size: int = 1) -> dict[str, int]:
    """FLOPs of one training step on ``batch_size`` rows: forward, backward and total."""
    sizes = check_sizes(sizes)
    layers = list(zip(sizes[:-1], sizes[1:], strict=False))  # (fan_in, fan_out) per Dense layer
    products = [2 * batch_size * fan_in * fan_out for fan_in, fan_out in layers]
    forward = sum(products)
    backward = sum(products) + sum(products[1:])  # weight grads + input grads past layer 0
    return {"forward": forward, "backward": backward, "total": forward + backward}


def format_sizes(sizes: Sequence[int]) -> str:
    """``(784, 256, 256, 10)`` -> ``'784-256-256-10'``."""
    return "-".join(str(s) for s in sizes)


def parse_sizes(text: str) -> tuple[int, ...]:
    """``'784-256-256-10'`` -> ``(784, 256, 256, 10)``."""
    try:
        sizes = tuple(int(part) for part in str(text).split("-"))
    except ValueError:
        raise invalid(
            "layer sizes", text, "expected widths joined by '-', e.g. 784-256-256-10"
        ) from None
    return check_sizes(sizes)
