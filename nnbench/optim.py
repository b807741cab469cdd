"""Optimizers over the model's flat parameter buffer, following torch.optim's update rules.

Each optimizer keeps its state in flat buffers shaped like ``model.params``, so one step is a
handful of whole-buffer operations done by the backend (`Backend.sgd_step`,
`Backend.adam_step`), whatever the number of layers.

A step can also be *gated* on the device (``step(gate=...)``): the backend applies it only
where a one-element device flag is 1, and Adam's step count then lives in device memory.
That is how a training step captured as a CUDA graph skips the update after a non-finite
loss without the host ever looking at the loss (`nnbench.fit` with ``cuda_graph=True``).
"""

from __future__ import annotations

import math
import numbers

from nnbench.errors import invalid


def _check(what: str, value, ok: bool, allowed: str) -> float:
    if not ok:
        raise invalid(what, value, allowed)
    return float(value)


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_lr(lr) -> float:
    return _check("learning rate", lr, _number(lr) and lr > 0, "must be > 0")


def _check_weight_decay(weight_decay) -> float:
    ok = _number(weight_decay) and weight_decay >= 0
    return _check("weight_decay value", weight_decay, ok, "must be >= 0")


class Optimizer:
    """Holds the model's flat ``params`` and ``grads`` and counts steps."""

    def __init__(self, model, lr):
        self.model = model
        self.backend = model.backend
        self.lr = _check_lr(lr)
        self.step_count = 0
        size = model.params.shape
        # Two scratch buffers let the backend compute updates without allocating.
        self._scratch = (self.backend.empty(size), self.backend.empty(size))

    def step(self, gate=None) -> None:
        """Update the parameters from the gradients. ``gate``: None (always update), or a
        one-element float64 device buffer, 1 to update and 0 to leave everything as it is,
        read on the device. Gated steps do not advance `step_count` (the host does not know
        whether they applied): the caller adds the count of applied steps when it reads
        them back, after calling `begin_gated_steps` before the first of a series."""
        if gate is None:
            self.step_count += 1
            self._step(self.model.params, self.model.grads)
        else:
            self._gated_step(self.model.params, self.model.grads, gate)

    def begin_gated_steps(self) -> None:
        """Bring any step count kept on the device up to `step_count` (outside a graph)."""

    def _step(self, params, grads) -> None:
        raise NotImplementedError

    def _gated_step(self, params, grads, gate) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and weight decay.

    Exactly torch.optim.SGD with dampening 0::

        input: lr > 0, momentum mu in [0, 1), weight decay lambda >= 0, nesterov
        for t = 1, 2, ...:
            g_t = grad_t + lambda * p_{t-1}
            if mu != 0:
                b_t = g_t                      if t = 1
                b_t = mu * b_{t-1} + g_t       otherwise
                g_t = g_t + mu * b_t           if nesterov
                g_t = b_t                      otherwise
            p_t = p_{t-1} - lr * g_t

    The learning rate multiplies the whole velocity (PyTorch's convention, not
    ``b = mu b + lr g``); the buffer starts at the first gradient, not at zero.
    ``momentum=0.9`` is what ``optimizer=momentum`` selects.
    """

    def __init__(self, model, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(model, lr)
        self.momentum = _check(
            "momentum value", momentum, _number(momentum) and 0 <= momentum < 1, "must be in [0, 1)"
        )
        self.weight_decay = _check_weight_decay(weight_decay)
        if nesterov and self.momentum == 0:
            raise invalid("nesterov", nesterov, "Nesterov momentum requires a momentum > 0")
        self.nesterov = bool(nesterov)
        self.momentum_buffer = self.backend.zeros(model.params.shape) if self.momentum else None

    def _step(self, params, grads, gate=None):
        # Gated, the first-step rule b = g is left to the arithmetic: the buffer starts at
        # zero, and mu * 0 + g is exactly g.
        self.backend.sgd_step(
            params,
            grads,
            self.momentum_buffer,
            lr=self.lr,
            momentum=self.momentum,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
            first=gate is None and self.step_count == 1,
            scratch=self._scratch,
            gate=gate,
        )

    def _gated_step(self, params, grads, gate):
        self._step(params, grads, gate)


class Adam(Optimizer):
    """Adam, and AdamW with ``decoupled_weight_decay=True``.

    Exactly torch.optim.Adam / AdamW (amsgrad off)::

        input: lr > 0, betas (b1, b2) in [0, 1), eps >= 0, weight decay lambda >= 0
        initialize: m_0 = 0, v_0 = 0
        for t = 1, 2, ...:
            g_t = grad_t
            if lambda != 0:
                p_{t-1} = p_{t-1} * (1 - lr * lambda)   if decoupled (AdamW)
                g_t = g_t + lambda * p_{t-1}            otherwise (L2 in the gradient)
            m_t = b1 * m_{t-1} + (1 - b1) * g_t
            v_t = b2 * v_{t-1} + (1 - b2) * g_t^2
            denom = sqrt(v_t) / sqrt(1 - b2^t) + eps
            p_t = p_{t-1} - lr / (1 - b1^t) * m_t / denom

    eps is added after the square root of the bias-corrected second moment, as PyTorch does.
    """

    def __init__(
        self,
        model,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        decoupled_weight_decay=False,
    ):
        super().__init__(model, lr)
        beta1, beta2 = betas
        for index, beta in enumerate((beta1, beta2)):
            _check(
                f"beta parameter at index {index}",
                beta,
                _number(beta) and 0 <= beta < 1,
                "must be in [0, 1)",
            )
        self.betas = (float(beta1), float(beta2))
        self.eps = _check("epsilon value", eps, _number(eps) and eps >= 0, "must be >= 0")
        self.weight_decay = _check_weight_decay(weight_decay)
        self.decoupled_weight_decay = bool(decoupled_weight_decay)
        self.exp_avg = self.backend.zeros(model.params.shape)
        self.exp_avg_sq = self.backend.zeros(model.params.shape)
        self._device_count = None  # gated steps: steps applied so far, on the device

    def begin_gated_steps(self) -> None:
        xp = self.backend.xp
        count = xp.asarray([float(self.step_count)], dtype=xp.float64)
        if self._device_count is None:
            self._device_count = count
        else:  # the same buffer: a captured graph keeps reading it
            self._device_count[...] = count

    def _gated_step(self, params, grads, gate):
        if self._device_count is None:
            self.begin_gated_steps()
        self._step(params, grads, self._device_count, gate)

    def _step(self, params, grads, step=None, gate=None):
        self.backend.adam_step(
            params,
            grads,
            self.exp_avg,
            self.exp_avg_sq,
            lr=self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            eps=self.eps,
            weight_decay=self.weight_decay,
            decoupled=self.decoupled_weight_decay,
            step=self.step_count if step is None else step,
            scratch=self._scratch,
            gate=gate,
        )


class AdamW(Adam):
    """Adam with decoupled weight decay (PyTorch's AdamW, default weight decay 0.01)."""

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(model, lr, betas, eps, weight_decay, decoupled_weight_decay=True)
