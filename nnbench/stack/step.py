"""`Stack`: the stacked model and its optimizer, one training step of every member at once."""

from __future__ import annotations

from nnbench.stack.checks import check_members
from nnbench.stack.losses import StackLoss
from nnbench.stack.network import StackedMLP
from nnbench.stack.optim import stacked_optimizer


class Stack:
    """Members (``models[m]``, ``optimizers[m]``) of one architecture trained as one model.

    The members' current parameters, batch-norm statistics and optimizer state are
    gathered into stacked arrays; `write_back` puts them back into the solo objects.

        stack = Stack(models, optimizers, loss_fn)
        losses = stack.step(x, y)   # x (M, B, in), y (M, B) labels or (M, B, out)
        stack.write_back()
    """

    def __init__(self, models, optimizers, loss_fn):
        check_members(models, optimizers, loss_fn)
        self.models, self.optimizers = list(models), list(optimizers)
        self.backend = models[0].backend
        self.network = StackedMLP(self.models)
        self.optimizer = stacked_optimizer(self.optimizers, self.network)
        self.loss = StackLoss(loss_fn, self.backend, len(self.models))
        self._grad = self._logits = None

    @property
    def members(self) -> int:
        return len(self.models)

    def step(self, x, y):
        """One training step of every member on its batch x[m], y[m] (a leading 1 is
        shared by all); returns the (M,) float64 data losses. A member whose loss is not
        finite is updated like the others: `nnbench.stack.fit_stack` takes it out (and
        back into its solo model) between `forward_loss` and `backward_update`."""
        losses = self.forward_loss(x, y)
        self.backward_update()
        return self.backend.xp.asarray(losses)

    def forward_loss(self, x, y):
        """The training forward pass and the loss: host (M,) float64 losses."""
        self._logits = self.network.forward(x)
        losses, self._grad = self.loss.compute(self._logits, y)
        return losses

    def count_correct(self, y):
        """Right predictions of the last `forward_loss` per member (host ints), or None."""
        return self.loss.count_correct(self._logits, y)

    def backward_update(self) -> None:
        """Back-propagation of the last `forward_loss` and the optimizer step."""
        self.network.backward(self._grad)
        self.optimizer.step()

    def write_back(self, rows=None) -> None:
        """Members ``rows`` (default all) back into their solo model and optimizer:
        parameters, last gradients, batch-norm running statistics, optimizer state."""
        rows = range(self.members) if rows is None else rows
        self.network.write_back(self.models, rows)
        self.optimizer.write_back(self.optimizers, rows)
