"""Stacked optimizers: the members' `nnbench.optim` optimizers as one, their state held
as (M, P) arrays and their hyperparameters as per-member lists. The update of member m is
its solo optimizer's (see `nnbench.optim.SGD` and `Adam` for the algorithm boxes), with
its own lr, momentum, weight decay, betas and eps; the step count is shared (every member
of a stack has taken the same number of steps)."""

from __future__ import annotations

from nnbench.optim import SGD


def stacked_optimizer(optimizers, network):
    """The stacked form of ``optimizers`` (all SGD, or all Adam/AdamW) over ``network``."""
    if type(optimizers[0]) is SGD:
        return StackedSGD(optimizers, network)
    return StackedAdam(optimizers, network)


class _Stacked:
    def __init__(self, optimizers, network):
        self.backend = be = network.backend
        self.network = network
        self.step_count = optimizers[0].step_count
        self.lr = [o.lr for o in optimizers]
        self.weight_decay = [o.weight_decay for o in optimizers]
        shape = network.params.shape
        self.scratch = (be.empty(shape), be.empty(shape))

    def _gather(self, buffers):
        """An (M, P) array of the members' flat state buffers (zeros for None)."""
        stacked = self.backend.zeros(self.network.params.shape)
        for m, buf in enumerate(buffers):
            if buf is not None:
                stacked[m, ...] = buf

        return stacked


class StackedSGD(_Stacked):
    """SGD with per-member lr, momentum (0 allowed) and weight decay; Nesterov shared."""

    def __init__(self, optimizers, network):
        super().__init__(optimizers, network)
        self.momentum = [o.momentum for o in optimizers]
        self.nesterov = optimizers[0].nesterov
        # every member gets a buffer row: a momentum-free member's is scratch
        self.bufs = self._gather([o.momentum_buffer for o in optimizers])

    def step(self) -> None:
        self.step_count += 1
        net = self.network
        self.backend.stack_sgd_step(
            net.params,
            net.grads,
            self.bufs,
            lr=self.lr,
            momentum=self.momentum,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
            first=self.step_count == 1,
            scratch=self.scratch,
        )

    def write_back(self, optimizers, rows) -> None:
        for row in rows:
            optimizer = optimizers[row]
            optimizer.step_count = self.step_count
            if optimizer.momentum_buffer is not None:
                optimizer.momentum_buffer[...] = self.bufs[row, ...]


class StackedAdam(_Stacked):
    """Adam / AdamW with per-member lr, betas, eps and weight decay."""

    def __init__(self, optimizers, network):
        super().__init__(optimizers, network)
        self.beta1 = [o.betas[0] for o in optimizers]
        self.beta2 = [o.betas[1] for o in optimizers]
        self.eps = [o.eps for o in optimizers]
        self.decoupled = optimizers[0].decoupled_weight_decay
        self.exp_avg = self._gather([o.exp_avg for o in optimizers])
        self.exp_avg_sq = self._gather([o.exp_avg_sq for o in optimizers])

    def step(self) -> None:
        self.step_count += 1
        net = self.network
        self.backend.stack_adam_step(
            net.params,
            net.grads,
            self.exp_avg,
            self.exp_avg_sq,
            lr=self.lr,
            beta1=self.beta1,
            beta2=self.beta2,
            eps=self.eps,
            weight_decay=self.weight_decay,
            decoupled=self.decoupled,
            step=self.step_count,
            scratch=self.scratch,
        )

    def write_back(self, optimizers, rows) -> None:
        for row in rows:
            optimizer = optimizers[row]
            optimizer.step_count = self.step_count
            optimizer.exp_avg[...] = self.exp_avg[row, ...]
            optimizer.exp_avg_sq[...] = self.exp_avg_sq[row, ...]
