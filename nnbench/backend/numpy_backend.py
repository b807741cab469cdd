"""NumPy fast paths: the same math as the reference `Backend`, computed in place.

Every override writes through ``out=`` into caller-owned buffers, so a training step
allocates (almost) nothing. The code is written against ``self.xp`` with NumPy's ufunc API,
which CuPy mirrors, so `CupyBackend` inherits these paths unchanged.
"""

from __future__ import annotations

import numpy as np

from nnbench.backend.base import LEAKY_SLOPE, Backend
from nnbench.errors import invalid


class NumpyBackend(Backend):
    """CPU backend on NumPy; the default."""

    name = "numpy"

    def __init__(self, dtype: str = "float32", xp=np):
        super().__init__(xp, dtype)
        self._scratch_cache: dict = {}

    # ------------------------------------------------------------------ arrays in and out
    def asarray(self, x, dtype=None):
        return self.xp.asarray(x, dtype=self.dtype if dtype is None else dtype)

    def to_host(self, a) -> np.ndarray:
        return np.array(a, copy=True)

    def copy(self, a):
        return a.copy()

    def take_rows(self, x, indices, out=None):
        if out is None:
            return self.xp.take(x, indices, axis=0)
        # mode="clip" lets NumPy write straight into ``out`` (mode="raise" buffers a copy);
        # the indices come from a permutation, so nothing is ever clipped.
        return self.xp.take(x, indices, axis=0, out=out, mode="clip")

    def all_finite(self, a) -> bool:
        # A sum is one cheap pass and is finite whenever every element is (barring overflow,
        # which the exact check below then settles; its warning is silenced).
        with np.errstate(over="ignore", invalid="ignore"):
            total = a.sum()
        return bool(self.xp.isfinite(total)) or bool(self.xp.isfinite(a).all())

    def multiply(self, a, b, out=None):
        return self.xp.multiply(a, b, out=out)

    # ------------------------------------------------------------------ random numbers
    def uniform(self, rng, shape, out=None):
        if out is None:
            return rng.random(shape, dtype=self.dtype)
        return rng.random(shape, dtype=self.dtype, out=out)

    # ------------------------------------------------------------------ layers
    def linear(self, x, weight, bias, out=None):
        out = self.xp.matmul(x, weight.T, out=out)
        out += bias
        return out

    def linear_backward(self, dout, x, weight, grad_weight, grad_bias, dx=None):
        xp = self.xp
        xp.matmul(dout.T, x, out=grad_weight)
        # A matrix-vector product with ones sums the rows about 2.6x faster than sum(axis=0).
        xp.matmul(self._ones(dout.shape[0]), dout, out=grad_bias)
        if dx is None:
            return None
        return xp.matmul(dout, weight, out=dx)

    def activation(self, kind: str, z, out=None):
        xp = self.xp
        if out is None:
            out = xp.empty_like(z)
        if kind == "relu":
            return xp.maximum(z, 0, out=out)
        if kind == "leaky_relu":
            # max(z, 0.01 z) is z for z > 0 and 0.01 z otherwise.
            tmp = self._scratch("leaky", z.shape)
            xp.multiply(z, LEAKY_SLOPE, out=tmp)
            return xp.maximum(z, tmp, out=out)
        if kind == "tanh":
            return xp.tanh(z, out=out)
        if kind == "sigmoid":
            # sigma(z) = exp(-softplus(-z)), with softplus(u) = logaddexp(0, u): no overflow.
            xp.negative(z, out=out)
            xp.logaddexp(0, out, out=out)
            xp.negative(out, out=out)
            return xp.exp(out, out=out)
        if kind == "identity":
            if out is not z:
                xp.copyto(out, z)
            return out
        raise invalid("activation", kind, "allowed: sigmoid, tanh, relu, leaky_relu, identity")

    def activation_backward(self, kind: str, y, dy, out=None):
        xp = self.xp
        if out is None:
            out = xp.empty_like(dy)
        if kind in ("relu", "leaky_relu"):
            # A comparison into a boolean buffer and a multiply: ~13x faster than where().
            positive = self._scratch("positive", y.shape, bool)
            xp.greater(y, 0, out=positive)
            if kind == "relu":
                return xp.multiply(dy, positive, out=out)
            slope = self._scratch("slope", y.shape)
            # slope = 0.01 + 0.99 [y > 0]
            xp.multiply(positive, 1.0 - LEAKY_SLOPE, out=slope)
            slope += LEAKY_SLOPE
            return xp.multiply(dy, slope, out=out)
        if kind in ("sigmoid", "tanh"):
            tmp = self._scratch("act_grad", y.shape)
            if kind == "sigmoid":
                xp.subtract(1.0, y, out=tmp)  # 1 - y
                tmp *= y  # y (1 - y)
            else:
                xp.multiply(y, y, out=tmp)
                xp.subtract(1.0, tmp, out=tmp)  # 1 - y^2
            return xp.multiply(dy, tmp, out=out)
        if kind == "identity":
            if out is not dy:
                xp.copyto(out, dy)
            return out
        raise invalid("activation", kind, "allowed: sigmoid, tanh, relu, leaky_relu, identity")

    def dropout_mask(self, rng, p: float, shape, out=None):
        xp = self.xp
        out = self.uniform(rng, shape, out)
        keep = self._scratch("keep", shape, bool)
        xp.greater_equal(out, p, out=keep)
        return xp.multiply(keep, 1.0 / (1.0 - p), out=out)

    # ------------------------------------------------------------------ losses
    def cross_entropy(self, logits, labels, dlogits=None):
        # Same math as Backend.cross_entropy, in two buffers: with s = z - max(z),
        # L = mean_i(log sum_j exp(s_ij) - s_i,y_i) and dL/dz = (softmax(z) - onehot(y)) / n.
        xp = self.xp
        n = logits.shape[0]
        rows = self._arange(n)
        out = xp.empty_like(logits) if dlogits is None else dlogits
        xp.subtract(logits, logits.max(axis=1, keepdims=True), out=out)
        picked = out[rows, labels]
        xp.exp(out, out=out)
        sums = out.sum(axis=1, keepdims=True)
        loss = float(xp.log(sums).sum() - picked.sum()) / n
        sums *= n
        out /= sums
        out[rows, labels] -= 1.0 / n
        return loss, out

    def count_correct(self, logits, labels) -> int:
        return int((logits.argmax(axis=1) == labels).sum())

    # ------------------------------------------------------------------ regularization
    def add_weight_penalty_grad(self, grad, weight, l1: float, l2: float) -> None:
        xp = self.xp
        tmp = self._scratch("penalty", weight.shape)
        if l1:
            xp.sign(weight, out=tmp)
            tmp *= l1
            grad += tmp
        if l2:
            xp.multiply(weight, l2, out=tmp)
            grad += tmp

    def abs_sum(self, a) -> float:
        return float(self.xp.abs(a).sum())

    def square_sum(self, a) -> float:
        flat = a.reshape(-1)
        return float(flat @ flat)

    # ------------------------------------------------------------------ optimizers
    def sgd_step(self, param, grad, buf, *, lr, momentum, nesterov, weight_decay, first, scratch):
        xp = self.xp
        g = grad
        if weight_decay:
            g = xp.multiply(param, weight_decay, out=scratch[0])  # g = grad + wd * p
            g += grad
        if momentum:
            if first:
                xp.copyto(buf, g)  # b = g
            else:
                buf *= momentum  # b = mu b + g
                buf += g
            if nesterov:
                upd = xp.multiply(buf, momentum, out=scratch[1])  # g + mu b
                upd += g
                g = upd
            else:
                g = buf
        step = xp.multiply(g, lr, out=scratch[1])
        param -= step

    def adam_step(
        self, param, grad, m, v, *, lr, beta1, beta2, eps, weight_decay, decoupled, step, scratch
    ):
        xp = self.xp
        tmp, g = scratch[1], grad
        if weight_decay and decoupled:
            param *= 1.0 - lr * weight_decay
        elif weight_decay:
            g = xp.multiply(param, weight_decay, out=scratch[0])
            g += grad
        m *= beta1  # m = b1 m + (1 - b1) g
        xp.multiply(g, 1.0 - beta1, out=tmp)
        m += tmp
        v *= beta2  # v = b2 v + (1 - b2) g^2
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - beta2
        v += tmp
        bias1 = 1.0 - beta1**step
        bias2 = 1.0 - beta2**step
        xp.sqrt(v, out=tmp)  # denom = sqrt(v) / sqrt(bias2) + eps
        tmp /= np.sqrt(bias2)
        tmp += eps
        xp.divide(m, tmp, out=tmp)  # p -= lr / bias1 * m / denom
        tmp *= lr / bias1
        param -= tmp

    # ------------------------------------------------------------------ helpers
    def _scratch(self, tag: str, shape, dtype=None):
        """A reusable temporary, one per (tag, shape, dtype); never returned to callers."""
        dtype = self.dtype if dtype is None else dtype
        key = (tag, tuple(shape), dtype)
        buf = self._scratch_cache.get(key)
        if buf is None:
            if len(self._scratch_cache) > 64:
                self._scratch_cache.clear()
            buf = self._scratch_cache[key] = self.xp.empty(shape, dtype=dtype)
        return buf

    def _arange(self, n: int):
        key = ("arange", (n,), self.int_dtype)
        buf = self._scratch_cache.get(key)
        if buf is None:
            buf = self._scratch_cache[key] = self.xp.arange(n, dtype=self.int_dtype)
        return buf

    def _ones(self, n: int):
        key = ("ones", (n,), self.dtype)
        buf = self._scratch_cache.get(key)
        if buf is None:
            buf = self._scratch_cache[key] = self.xp.ones(n, dtype=self.dtype)
        return buf
