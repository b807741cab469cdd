"""`StackPart`: consecutive members of a stack as one stacked model (network, optimizer,
loss) on one backend. A `Stack` is one part, or several stepped side by side in threads."""

from __future__ import annotations

import copy

import numpy as np

from nnbench.stack.losses import StackLoss
from nnbench.stack.network import StackedMLP
from nnbench.stack.optim import stacked_optimizer


class StackPart:
    """Members ``models[m]`` (with ``optimizers[m]``) gathered into stacked arrays that
    ``backend`` computes on (the models' own backend, or a thread's copy of it)."""

    def __init__(self, models, optimizers, loss_fn, backend):
        self.models, self.optimizers = models, optimizers
        self.network = StackedMLP(models, backend)
        self.optimizer = stacked_optimizer(optimizers, self.network)
        # a loss of its own: a Loss keeps its gradient buffer, which threads must not share
        own = copy.copy(loss_fn)
        own._buffers = None
        self.loss = StackLoss(own, backend, len(models))
        self._grad = self._logits = None

    def train_step(self, x, y):
        """One training step; a member whose loss is not finite first gets its state
        (that of its last finite loss) written back into its solo objects, as `nnbench.fit`
        leaves a diverged model. Returns the host (M,) float64 losses."""
        losses = self.forward_loss(x, y)
        bad = ~np.isfinite(losses)
        if bad.any():
            self.write_back(np.flatnonzero(bad).tolist())
        self.backward_update()
        return losses

    def forward_loss(self, x, y):
        """The training forward pass and the loss: host (M,) float64 losses."""
        self._logits = self.network.forward(x)
        losses, self._grad = self.loss.compute(self._logits, y)
        return losses

    def count_correct(self, y):
        return self.loss.count_correct(self._logits, y)

    def backward_update(self) -> None:
        self.network.backward(self._grad)
        self.optimizer.step()

    def evaluate_batch(self, x, y):
        logits = self.network.forward(x, training=False)
        losses, _ = self.loss.compute(logits, y)
        return losses, self.loss.count_correct(logits, y)

    def write_back(self, rows) -> None:
        self.network.write_back(self.models, rows)
        self.optimizer.write_back(self.optimizers, rows)
