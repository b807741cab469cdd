"""The stacked MLP: M members' parameters in one (M, P) array, one row per member (the row
is the member's flat `MLP.params`), gradients likewise, and the layers of `layers` over it.

The penalty gradient is the solo one, per member with a nonzero L1/L2:
    dW[m] += l1[m] sign(W[m]) + l2[m] W[m]
"""

from __future__ import annotations

import math

import numpy as np

from nnbench.nn.activation import Activation
from nnbench.nn.batchnorm import BatchNorm1d
from nnbench.nn.dense import Dense
from nnbench.nn.dropout import Dropout
from nnbench.stack.layers import (
    StackActivation,
    StackBatchNorm,
    StackBuffers,
    StackDense,
    StackDropout,
)


class StackedMLP:
    """Members' `nnbench.MLP`s (one architecture) gathered into stacked arrays."""

    def __init__(self, models, backend=None):
        first = models[0]
        self.backend = be = first.backend if backend is None else backend
        self.members = members = len(models)
        size = first.num_parameters
        self.params = be.empty((members, size))
        for m, model in enumerate(models):
            self.params[m, ...] = model.params
        self.grads = be.zeros((members, size))
        self._penalties = _penalty_runs(be, [m.l1 for m in models], [m.l2 for m in models])
        self._views = _stacked_views(be, first, self.params)
        self._grad_views = _stacked_views(be, first, self.grads)
        self._buffers = StackBuffers(be, members)
        self.layers, self._running = self._build(models)
        self.dense = [layer for layer in self.layers if isinstance(layer, StackDense)]

    def _build(self, models):
        """The solo layers of member 0 (plus a dropout per hidden block where any member
        has one), each made a stack layer over the stacked views."""
        be, first = self.backend, models[0]
        p = [model.dropout for model in models]
        rngs = [_dropout_rng(model) for model in models]
        layers, running = [], []
        for prefix, layer in first._named:
            if isinstance(layer, Dense):
                layers.append(self._dense(prefix, layer))
                if prefix.startswith("hidden.") and not first.batchnorm and any(p):
                    layers.append(StackDropout(be, self._buffers, p, rngs))
            elif isinstance(layer, BatchNorm1d):
                stats = _stacked_running(be, models, len(running))
                running.append(stats)
                params, grads = self._pair(prefix)
                bn = StackBatchNorm(
                    be, self._buffers, params, grads, stats, layer.eps, layer.momentum
                )
                layers.append(bn)
            elif isinstance(layer, Activation):
                layers.append(StackActivation(be, layer.kind))
                if any(p):
                    layers.append(StackDropout(be, self._buffers, p, rngs))
            elif not isinstance(layer, Dropout):  # dropouts are placed above
                raise TypeError(f"no stacked form of {type(layer).__name__}")
        return layers, running

    def _dense(self, prefix, layer: Dense) -> StackDense:
        params, grads = self._pair(prefix)
        return StackDense(
            self.backend, self._buffers, params, grads, layer.activation, layer.input_grad
        )

    def _pair(self, prefix):
        keys = (prefix + "weight", prefix + "bias")
        return tuple(self._views[k] for k in keys), tuple(self._grad_views[k] for k in keys)

    # ------------------------------------------------------------------ computation
    def forward(self, x, training: bool = True):
        """Logits (M, B, out) of a forward pass on x (M, B, in), or (1, B, in) shared by
        every member; a stack-owned buffer that the next pass overwrites. ``training``
        as in `MLP.forward` (batch statistics and dropout, else evaluation mode)."""
        h = x
        for layer in self.layers:
            h = layer.forward(h, training)
        return h

    def backward(self, dlogits) -> None:
        """Back-propagate (M, B, out) into `grads`, adding each member's penalty gradient."""
        d = dlogits
        for layer in reversed(self.layers):
            d = layer.backward(d)
        xp = self.backend.xp
        for lo, hi, l1, l2 in self._penalties:  # the solo order: the l1 term, then l2
            for dense in self.dense:
                grad, weight = dense.grad_weight[lo:hi, ...], dense.weight[lo:hi, ...]
                if l1 is not None:
                    grad[...] = grad + xp.sign(weight) * l1
                if l2 is not None:
                    grad[...] = grad + weight * l2

    # ------------------------------------------------------------------ state
    def write_back(self, models, rows) -> None:
        """Member ``rows``' parameters, last gradients and running statistics back into
        their solo models (``models[row]``)."""
        for row in rows:
            model = models[row]
            model.params[...] = self.params[row, ...]
            model.grads[...] = self.grads[row, ...]
            norms = [layer for layer in model.layers if isinstance(layer, BatchNorm1d)]
            for bn, (mean, var) in zip(norms, self._running, strict=True):
                bn.running_mean[...] = mean[row, ...]
                bn.running_var[...] = var[row, ...]


def _penalty_runs(be, l1, l2):
    """(lo, hi, l1, l2) per run of consecutive members with the same zero pattern, the
    coefficients as (k, 1, 1) arrays of the dtype (None where zero): a run's penalty
    gradient is then a few whole-run operations."""
    runs, lo = [], 0
    pattern = [(bool(a), bool(b)) for a, b in zip(l1, l2, strict=True)]
    for k in range(1, len(pattern) + 1):
        if k == len(pattern) or pattern[k] != pattern[lo]:
            if any(pattern[lo]):
                coefficients = [
                    be.asarray(np.reshape(values[lo:k], (-1, 1, 1))) if pattern[lo][i] else None
                    for i, values in enumerate((l1, l2))
                ]
                runs.append((lo, k, *coefficients))
            lo = k
    return runs


def _stacked_views(be, model, flat):
    """``{key: (M, *shape) view}`` of an (M, P) array, keyed like the model's flat views."""
    xp, members, views, start = be.xp, flat.shape[0], {}, 0
    for key, view in model._param_views.items():
        size = math.prod(view.shape)
        views[key] = xp.reshape(flat[:, start : start + size], (members, *view.shape))
        start += size
    return views


def _stacked_running(be, models, index: int):
    """(running_mean, running_var), each (M, n), from every model's ``index``-th BN layer."""
    norms = [[layer for layer in m.layers if isinstance(layer, BatchNorm1d)][index] for m in models]
    mean = be.empty((len(models), norms[0].features))
    var = be.empty((len(models), norms[0].features))
    for m, bn in enumerate(norms):
        mean[m, ...] = bn.running_mean
        var[m, ...] = bn.running_var
    return mean, var


def _dropout_rng(model):
    """The generator the model's dropout layers share (None without dropout)."""
    for layer in model.layers:
        if isinstance(layer, Dropout):
            return layer.rng
    return None
