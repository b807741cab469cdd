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


def as_blocks(x, members: int):
    """A layer input as blocks: an array covers every member (or broadcasts from 1)."""
    return x if isinstance(x, list) else [(0, members, x)]


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

    def forward(self, x):
        be = self.backend
        blocks = as_blocks(x, self.buffers.members)
        rows, out_features = blocks[0][2].shape[1], self.weight.shape[1]
        out = self.buffers.get(f"dense{id(self)}", (rows, out_features))  # (M, B, out)
        for lo, hi, xb in blocks:
            be.stack_matmul(xb, be.matrix_transpose(self.weight[lo:hi, ...]), out[lo:hi, ...])
        self._x, self._y = blocks, be.stack_bias_activation(out, self.bias, self.activation)
        return self._y

    def backward(self, dy):
        # dz = f'(z) dy ; dW = dz.T @ x ; db = sum_rows(dz) ; dx = dz @ W
        be = self.backend
        dz = be.stack_bias_activation_backward(dy, self.grad_bias, self.activation, self._y)
        for lo, hi, xb in self._x:
            dzt = be.matrix_transpose(dz[lo:hi, ...])
            be.stack_matmul(dzt, xb, self.grad_weight[lo:hi, ...])
        if not self.input_grad:
            return None
        dx = self.buffers.get(f"dx{id(self)}", (dz.shape[1], self.weight.shape[2]))
        return be.stack_matmul(dz, self.weight, dx)


class StackBatchNorm:
    """Training-mode batch normalization, member by member with the solo backend calls
    (gamma, beta (M, n) parameter views; running statistics (M, n) arrays)."""

    def __init__(self, backend, buffers, params, grads, running, eps: float, momentum: float):
        self.backend, self.buffers = backend, buffers
        self.weight, self.bias = params
        self.grad_weight, self.grad_bias = grads
        self.running_mean, self.running_var = running
        self.eps, self.momentum = eps, momentum

    def forward(self, x):
        be, n = self.backend, x.shape[1]
        self._xhat = self.buffers.get(f"xhat{id(self)}", x.shape[1:])
        self._inv_std = []
        for m in range(x.shape[0]):
            mean, var, inv_std = be.batchnorm_train(
                x[m, ...],
                self.weight[m, ...],
                self.bias[m, ...],
                self.eps,
                self._xhat[m, ...],
                x[m, ...],
            )
            be.moving_average(self.running_mean[m, ...], mean, self.momentum)
            be.moving_average(self.running_var[m, ...], var * (n / (n - 1)), self.momentum)
            self._inv_std.append(inv_std)
        return x

    def backward(self, dy):
        be = self.backend
        for m, inv_std in enumerate(self._inv_std):
            be.batchnorm_backward(
                dy[m, ...],
                self._xhat[m, ...],
                inv_std,
                self.weight[m, ...],
                self.grad_weight[m, ...],
                self.grad_bias[m, ...],
                dy[m, ...],
            )
        return dy


class StackActivation:
    """y = f(z) in place over the whole stack."""

    def __init__(self, backend, kind: str):
        self.backend, self.kind = backend, kind

    def forward(self, z):
        # elementwise: the solo method on the whole (M, B, n) array
        self._y = self.backend.activation(self.kind, z, out=z)
        return self._y

    def backward(self, dy):
        return self.backend.activation_backward(self.kind, self._y, dy, out=dy)


class StackDropout:
    """Inverted dropout with member m's probability ``p[m]`` and generator ``rngs[m]``."""

    def __init__(self, backend, buffers, p, rngs):
        self.backend, self.buffers, self.p, self.rngs = backend, buffers, p, rngs
        self._runs = list(_runs([q > 0 for q in p]))

    def forward(self, x):
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


def _runs(flags):
    """(lo, hi) ranges of consecutive equal flags."""
    lo = 0
    for k in range(1, len(flags) + 1):
        if k == len(flags) or flags[k] != flags[lo]:
            yield lo, k
            lo = k
