"""Batch normalization over the batch dimension, with torch.nn.BatchNorm1d's semantics."""

from __future__ import annotations

from nnbench.errors import invalid
from nnbench.nn.buffers import BufferCache
from nnbench.nn.layer import Layer


class BatchNorm1d(Layer):
    """y = gamma * (x - mu) / sqrt(var + eps) + beta, per feature.

    Training: mu and var are the batch mean and biased batch variance; the running
    statistics move as running = (1 - momentum) * running + momentum * batch (momentum 0.1,
    i.e. alpha = 0.9 in the moving-average form), the running variance taking the unbiased
    batch variance var * n / (n - 1). Evaluation normalizes with the running statistics.
    gamma starts at 1, beta at 0, running mean at 0 and running variance at 1; eps = 1e-5.

    Backward (training mode), with xhat = (x - mu) s and s = 1 / sqrt(var + eps):
        dL/dgamma = sum_rows(dy * xhat) ; dL/dbeta = sum_rows(dy)
        dL/dx = gamma * s / n * (n dy - dL/dbeta - xhat * dL/dgamma)
    """

    def __init__(
        self, features: int, backend, eps: float = 1e-5, momentum: float = 0.1, inplace=False
    ):
        self.features = features
        self.backend = backend
        self.eps = eps
        self.momentum = momentum
        self.inplace = inplace
        self.running_mean = backend.zeros((features,))
        self.running_var = backend.asarray([1.0] * features)
        self._buffers = BufferCache(backend, activations=True)
        self._inv_std = None

    def param_shapes(self):
        return [("weight", (self.features,)), ("bias", (self.features,))]

    def bind(self, params, grads):
        self.weight, self.bias = params["weight"], params["bias"]
        self.grad_weight, self.grad_bias = grads["weight"], grads["bias"]

    def state(self):
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def forward(self, x, training: bool):
        be = self.backend
        out = x if self.inplace else self._buffers.get("y", x.shape)
        if not training:
            return be.batchnorm_eval(
                x, self.running_mean, self.running_var, self.weight, self.bias, self.eps, out
            )
        n = x.shape[0]
        if n < 2:
            raise invalid("batch size for batch normalization", n, "training needs at least 2 rows")
        self._xhat = self._buffers.get("xhat", x.shape)
        mean, var, self._inv_std = be.batchnorm_train(
            x, self.weight, self.bias, self.eps, self._xhat, out
        )
        be.moving_average(self.running_mean, mean, self.momentum)
        be.moving_average(self.running_var, var * (n / (n - 1)), self.momentum)
        return out

    def backward(self, dy):
        out = dy if self.inplace else self._buffers.get("dx", dy.shape)
        return self.backend.batchnorm_backward(
            dy, self._xhat, self._inv_std, self.weight, self.grad_weight, self.grad_bias, out
        )
