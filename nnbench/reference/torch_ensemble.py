"""An ensemble of M identical MLPs in PyTorch, trained as one: ``torch.func``'s recipe.

The members' parameters are stacked with ``torch.func.stack_module_state`` (a leading
member axis, ``(M, out, in)`` weights), and one step is ``vmap`` over
``grad_and_value(functional_call(...))``: every member's loss and gradients from its own
batch, ``x (M, B, in)``, ``y (M, B)``. torch.func has no optimizers, so the update is
written out on the stacked tensors, each member with its own learning rate:

    SGD with momentum mu (torch.optim.SGD's convention, the buffer starts at g):
        b <- mu * b + g            p <- p - lr * b
    Adam (betas (0.9, 0.999), eps 1e-8, bias-corrected as torch.optim.Adam):
        m <- b1 * m + (1 - b1) g   v <- b2 * v + (1 - b2) g^2
        p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

This is how PyTorch users stack a sweep by hand, and what nnbench's stack is compared with.
"""

from __future__ import annotations

import copy

import numpy as np

from nnbench.reference.torch_mlp import _torch, build_mlp

OPTIMIZERS = ("momentum", "adam")
MOMENTUM = 0.9
BETAS, EPS = (0.9, 0.999), 1e-8


class TorchEnsembleStep:
    """One training step of M members on a fixed batch each (float32)."""

    def __init__(
        self, sizes, members, batch_size, optimizer="momentum", lrs=None, seed=0, device="cpu"
    ):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"Invalid optimizer: {optimizer!r} (allowed: {', '.join(OPTIMIZERS)})")
        torch = _torch()
        from torch.func import functional_call, grad_and_value, stack_module_state, vmap

        self.torch, self.device, self.optimizer = torch, device, optimizer
        torch.manual_seed(seed)
        models = [build_mlp(sizes, device=device) for _ in range(members)]
        params, _ = stack_module_state(models)
        self.params = {k: v.detach() for k, v in params.items()}
        base = copy.deepcopy(models[0]).to("meta")
        loss_fn = torch.nn.functional.cross_entropy

        def member_loss(p, x, y):  # one member: its parameters, its batch
            return loss_fn(functional_call(base, (p,), (x,)), y)

        self._grads = vmap(grad_and_value(member_loss))
        lrs = np.full(members, 0.01 if optimizer == "momentum" else 1e-3) if lrs is None else lrs
        lr = torch.as_tensor(np.asarray(lrs, dtype=np.float32), device=device)
        self.lr = {k: lr.view(-1, *[1] * (v.dim() - 1)) for k, v in self.params.items()}
        self.state = {k: [torch.zeros_like(v), torch.zeros_like(v)] for k, v in self.params.items()}
        self.t = 0
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((members, batch_size, sizes[0])).astype(np.float32)
        y = rng.integers(0, sizes[-1], size=(members, batch_size))
        self.x = torch.from_numpy(x).to(device)  # (M, B, in)
        self.y = torch.from_numpy(y).to(device)  # (M, B)

    def __call__(self):
        """Every member's step; returns the (M,) losses (left on the device)."""
        grads, losses = self._grads(self.params, self.x, self.y)
        with self.torch.no_grad():
            self.t += 1
            update = self._momentum if self.optimizer == "momentum" else self._adam
            for name, p in self.params.items():
                update(p, grads[name], self.lr[name], self.state[name])
        return losses

    def _momentum(self, p, g, lr, state):
        buf = state[0]
        if self.t == 1:
            buf.copy_(g)
        else:
            buf.mul_(MOMENTUM).add_(g)
        p.sub_(lr * buf)

    def _adam(self, p, g, lr, state):
        m, v = state
        b1, b2 = BETAS
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v / (1 - b2**self.t)).sqrt_().add_(EPS)
        p.sub_(lr * (m / (1 - b1**self.t)) / denom)

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()
