"""The layers of a stacked MLP: each is its solo layer (`nnbench.nn`) over a stack of M
members, arrays with a leading member axis. The math is the solo layer's, member by member:

    Dense:      y[m] = f(x[m] @ W[m].T + b[m])
                dz[m] = f'(z[m]) * dy[m]; dW[m] = dz[m].T @ x[m]; db[m] = sum_rows(dz[m]);
                dx[m] = dz[m] @ W[m]
    BatchNorm:  the solo batch normalization of member m's batch, its own running statistics
    Activation: y = f(z), dz = f'(z) * dy (elementwise: the whole stack at once)
    Dropout:    y[m] = x[m] * mask[m], the mask drawn from member m's own generator with its
                own p; members with p = 0 have no dropout (as their solo model has none)

A layer's input is an (M, B, n) array, or after a dropout a list of *blocks* (lo, hi, array)
covering consecutive members: a dropout's output has another memory layout than its input,
and the next matrix product must see each member's solo layout.
"""

from __future__ import annotations

from nnbench.backend.base import Backend
from nnbench.backend.stacked import equal_runs


class StackBuffers:
    """Stack buffers by (name, batch shape), allocated once per batch size."""

    def __init__(self, backend, members: int):
        self.backend, self.members, self._buffers = backend, members, {}

    def get(self, name: str, shape, activation: bool = True):
        key = (name, tuple(shape), activation)
        buf = self._buffers.get(key)
        if buf is None:
            be = self.backend
            alloc = be.stack_buffer if activation else (lambda m, s: be.empty((m, *s)))
            buf = self._buffers[key] = alloc(self.members, tuple(shape))
        return buf


class StackDense:
    """y = f(x @ W.T + b) for every member; W (M, out, in), b (M, out) are views into the
    network's (M, P) parameters, their gradients views into its (M, P) gradients."""

    def __init__(self, backend, buffers, params, grads, activation: str, input_grad: bool):
        self.backend, self.buffers = backend, buffers
        self.weight, self.bias = params
        self.grad_weight, self.grad_bias = grads
        self.activation, self.input_grad = activation, input_grad
        self._weight_t = backend.matrix_transpose(self.weight)  # (M, in, out), a view
        self._out, self._dx = {}, {}  # buffers by batch size

    def forward(self, x, training: bool = True):
        be = self.backend
        rows = (x if not isinstance(x, list) else x[0][2]).shape[1]
        out = self._out.get(rows)
        if out is None:  # (M, B, out)
            out = self._out[rows] = self.buffers.get(
                f"dense{id(self)}", (rows, self.weight.shape[1])
            )
        if isinstance(x, list):  # blocks of members after a dropout
            for lo, hi, xb in x:
                be.stack_matmul(xb, self._weight_t[lo:hi, ...], out[lo:hi, ...])
        else:
            be.stack_matmul(x, self._weight_t, out)
        self._x, self._y = x, be.stack_bias_activation(out, self.bias, self.activation)
        return self._y

    def backward(self, dy):
        # dz = f'(z) dy ; dW = dz.T @ x ; db = sum_rows(dz) ; dx = dz @ W
        be, x = self.backend, self._x
        dz = be.stack_bias_activation_backward(dy, self.grad_bias, self.activation, self._y)
        if isinstance(x, list):
            for lo, hi, xb in x:
                dzt = be.matrix_transpose(dz[lo:hi, ...])
                be.stack_matmul(dzt, xb, self.grad_weight[lo:hi, ...])
        else:
            be.stack_matmul(be.matrix_transpose(dz), x, self.grad_weight)
        if not self.input_grad:
            return None
        rows = dz.shape[1]
        dx = self._dx.get(rows)
        if dx is None:
            dx = self._dx[rows] = self.buffers.get(f"dx{id(self)}", (rows, self.weight.shape[2]))
        return be.stack_matmul(dz, self.weight, dx)


class StackBatchNorm:
    """Training-mode batch normalization of each member's batch (gamma, beta (M, n)
    parameter views; running statistics (M, n) arrays). The math of the reference
    `Backend.batchnorm_train` / `batchnorm_backward`, reduced over the batch axis of the
    whole stack at once (axis 1 of (M, B, n); each member's reduction is its solo one);
    a backend with its own batch-norm methods gets them member by member instead."""

    def __init__(self, backend, buffers, params, grads, running, eps: float, momentum: float):
        self.backend, self.buffers = backend, buffers
        self.weight, self.bias = params
        self.grad_weight, self.grad_bias = grads
        self.running_mean, self.running_var = running
        self.eps, self.momentum = eps, momentum
        kind = type(backend)
        self._stacked = (
            kind.batchnorm_train is Backend.batchnorm_train
            and kind.batchnorm_backward is Backend.batchnorm_backward
            and kind.moving_average is Backend.moving_average
        )

    def forward(self, x, training: bool = True):
        be, n = self.backend, x.shape[1]
        if not training:
            return self._evaluate(x)
        self._xhat = self.buffers.get(f"xhat{id(self)}", x.shape[1:])
        if not self._stacked:
            return self._forward_members(x)
        # mu = mean_rows(x); var = mean_rows((x - mu)^2); s = 1 / sqrt(var + eps)
        # xhat = (x - mu) s; y = gamma xhat + beta
        xp = be.xp
        mean = xp.mean(x, axis=1)  # (M, n)
        centered = x - mean[:, None, :]
        var = xp.mean(centered * centered, axis=1)
        self._inv_std = 1.0 / xp.sqrt(var + self.eps)
        self._xhat[...] = centered * self._inv_std[:, None, :]
        x[...] = self.weight[:, None, :] * self._xhat + self.bias[:, None, :]
        be.moving_average(self.running_mean, mean, self.momentum)
        be.moving_average(self.running_var, var * (n / (n - 1)), self.momentum)
        return x

    def backward(self, dy):
        if not self._stacked:
            return self._backward_members(dy)
        # dgamma = sum_rows(dy xhat); dbeta = sum_rows(dy)
        # dx = gamma s / n (n dy - dbeta - xhat dgamma)
        xp, n = self.backend.xp, dy.shape[1]
        self.grad_weight[...] = xp.sum(dy * self._xhat, axis=1)
        self.grad_bias[...] = xp.sum(dy, axis=1)
        scale = self.weight * self._inv_std / n
        inner = n * dy - self.grad_bias[:, None, :] - self._xhat * self.grad_weight[:, None, :]
        dy[...] = scale[:, None, :] * inner
        return dy

    def _evaluate(self, x):
        """y = gamma (x - running_mean) / sqrt(running_var + eps) + beta, in place."""
        if not self._stacked:
            for m in range(x.shape[0]):
                xm, stats = x[m, ...], (self.running_mean[m, ...], self.running_var[m, ...])
                gamma, beta = self.weight[m, ...], self.bias[m, ...]
                self.backend.batchnorm_eval(xm, *stats, gamma, beta, self.eps, xm)
            return x
        scale = self.weight / self.backend.xp.sqrt(self.running_var + self.eps)
        x[...] = (x - self.running_mean[:, None, :]) * scale[:, None, :] + self.bias[:, None, :]
        return x

    def _forward_members(self, x):
        be, n = self.backend, x.shape[1]
        self._inv_std = []
        for m in range(x.shape[0]):
            xm = x[m, ...]
            mean, var, inv_std = be.batchnorm_train(
                xm, self.weight[m, ...], self.bias[m, ...], self.eps, self._xhat[m, ...], xm
            )
            be.moving_average(self.running_mean[m, ...], mean, self.momentum)
            be.moving_average(self.running_var[m, ...], var * (n / (n - 1)), self.momentum)
            self._inv_std.append(inv_std)
        return x

    def _backward_members(self, dy):
        be = self.backend
        for m, inv_std in enumerate(self._inv_std):
            dym = dy[m, ...]
            gamma, grads = self.weight[m, ...], (self.grad_weight[m, ...], self.grad_bias[m, ...])
            be.batchnorm_backward(dym, self._xhat[m, ...], inv_std, gamma, *grads, dym)
        return dy


class StackActivation:
    """y = f(z) in place over the whole stack."""

    def __init__(self, backend, kind: str):
        self.backend, self.kind = backend, kind

    def forward(self, z, training: bool = True):
        # elementwise: the solo method on the whole (M, B, n) array
        self._y = self.backend.activation(self.kind, z, out=z)
        return self._y

    def backward(self, dy):
        return self.backend.activation_backward(self.kind, self._y, dy, out=dy)


class StackDropout:
    """Inverted dropout with member m's probability ``p[m]`` and generator ``rngs[m]``."""

    def __init__(self, backend, buffers, p, rngs):
        self.backend, self.buffers, self.p, self.rngs = backend, buffers, p, rngs
        self._runs = list(equal_runs([q > 0 for q in p]))

    def forward(self, x, training: bool = True):
        if not training:
            return x
        be, shape = self.backend, x.shape[1:]
        self._mask = self.buffers.get(f"mask{id(self)}", shape, activation=False)
        y = self.buffers.get(f"y{id(self)}", shape, activation=False)
        blocks = []
        for lo, hi in self._runs:
            if self.p[lo] == 0:
                blocks.append((lo, hi, x[lo:hi, ...]))
                continue
            for m in range(lo, hi):
                be.dropout_mask(self.rngs[m], self.p[m], shape, out=self._mask[m, ...])
            blocks.append(
                (lo, hi, be.multiply(x[lo:hi, ...], self._mask[lo:hi, ...], out=y[lo:hi, ...]))
            )
        return blocks

    def backward(self, dy):
        for lo, hi in self._runs:
            if self.p[lo] > 0:
                self.backend.multiply(dy[lo:hi, ...], self._mask[lo:hi, ...], out=dy[lo:hi, ...])
        return dy
