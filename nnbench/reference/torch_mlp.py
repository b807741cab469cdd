"""The MLP in PyTorch eager mode: the same layers, weights and batch order as nnbench.

``torch.nn.Sequential(Linear, ReLU, ..., Linear)`` with ``torch.nn.CrossEntropyLoss``;
``Linear`` stores W as (out_features, in_features) like nnbench, so an nnbench state dict
loads as is. Optimizers: ``sgd`` (torch.optim.SGD), ``adam`` (torch.optim.Adam, default
implementation) and ``adam-fused`` (``Adam(fused=True)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

OPTIMIZERS = ("sgd", "adam", "adam-fused")
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3, "adam-fused": 1e-3}


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the PyTorch reference needs torch: pip install 'nnbench[reference]'"
        ) from exc
    return torch


def build_mlp(sizes: Sequence[int], state_dict: dict | None = None, device: str = "cpu"):
    """A float32 ReLU MLP; ``state_dict`` (nnbench keys, host arrays) sets its weights."""
    torch = _torch()
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).to(device=device, dtype=torch.float32)
    if state_dict is not None:
        load_nnbench_state(net, state_dict)
    return net


def load_nnbench_state(net, state_dict: dict) -> None:
    """Copy ``hidden.{i}.weight/bias`` and ``output.weight/bias`` into the Linear layers."""
    torch = _torch()
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    keys = [f"hidden.{i}." for i in range(len(linears) - 1)] + ["output."]
    with torch.no_grad():
        for prefix, linear in zip(keys, linears, strict=True):
            for name in ("weight", "bias"):
                value = torch.from_numpy(np.asarray(state_dict[prefix + name], dtype=np.float32))
                getattr(linear, name).copy_(value)


def make_optimizer(name: str, params, lr: float | None = None):
    torch = _torch()
    lr = DEFAULT_LR[name] if lr is None else lr
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adam-fused":
        return torch.optim.Adam(params, lr=lr, fused=True)
    raise ValueError(f"Invalid optimizer: {name!r} (allowed: {', '.join(OPTIMIZERS)})")


class TorchStep:
    """One training step on a fixed batch: zero_grad, forward, loss, backward, step.

    The loss stays on the device (no ``.item()``): nothing forces a synchronization, so on
    CUDA the timer's ``synchronize`` is what waits for the work.
    """

    def __init__(self, sizes, batch_size, optimizer="sgd", lr=None, seed=0, device="cpu"):
        torch = _torch()
        self.torch, self.device = torch, device
        rng = np.random.default_rng(seed)
        self.model = build_mlp(sizes, device=device)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.optimizer = make_optimizer(optimizer, self.model.parameters(), lr)
        x = rng.standard_normal((batch_size, sizes[0])).astype(np.float32)
        y = rng.integers(0, sizes[-1], size=batch_size)
        self.x = torch.from_numpy(x).to(device)
        self.y = torch.from_numpy(y).to(device)

    def __call__(self):
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(self.x), self.y)
        loss.backward()
        self.optimizer.step()
        return loss

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()


def train_to_accuracy(
    sizes, state_dict, data, *, target, batch_size, optimizer, lr, max_epochs, seed, clock
):
    """Train from ``state_dict`` with nnbench's batch order until the test accuracy reaches
    ``target``; returns ``(seconds, epochs, accuracy)`` (epochs None if never reached)."""
    from nnbench.train import minibatches

    torch = _torch()
    x, y, x_test, y_test = (torch.from_numpy(np.ascontiguousarray(a)) for a in data)
    model = build_mlp(sizes, state_dict)
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = make_optimizer(optimizer, model.parameters(), lr)
    rng = np.random.default_rng(seed)
    start, acc = clock(), 0.0
    for epoch in range(1, max_epochs + 1):
        model.train()
        for idx in minibatches(x.shape[0], batch_size, rng):
            index = torch.from_numpy(idx)
            opt.zero_grad()
            loss = loss_fn(model(x[index]), y[index])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(x_test).argmax(dim=1) == y_test).double().mean().item()
        if acc >= target:
            return clock() - start, epoch, acc
    return clock() - start, None, acc
