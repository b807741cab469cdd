"""NumPy fast paths: the same math as the reference `Backend`, computed in place.

Every override writes through ``out=`` into caller-owned buffers, so a training step
allocates (almost) nothing. The code is written against ``self.xp`` with NumPy's ufunc API,
which CuPy mirrors, so `CupyBackend` inherits these paths unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from nnbench.backend import _native
from nnbench.backend._blas import axpby, axpy
from nnbench.backend.base import LEAKY_SLOPE, Backend
from nnbench.backend.numpy_stacked import NumpyStackedOps
from nnbench.errors import invalid


class NumpyBackend(NumpyStackedOps, Backend):
    """CPU backend on NumPy; the default."""

    name = "numpy"
    _FEATURE_MAJOR_ROWS = 128  # see activation_buffer

    def __init__(self, dtype: str = "float32", xp=np, native: bool = True):
        super().__init__(xp, dtype)
        self._scratch_cache: dict = {}
        # One-pass C kernels (`_native`) where they compile; CuPy's arrays never take them.
        self._native_asked = native and xp is np
        self._native = _native.kernels(self.dtype) if self._native_asked else None

    def kernels(self) -> str:
        if self._native is not None:
            return f"C kernels {_native.status().removeprefix('on ')} + NumPy"
        if not self._native_asked:
            return "NumPy (C kernels not asked for)"
        return f"NumPy (C kernels {_native.status()})"

    # ------------------------------------------------------------------ arrays in and out
    def asarray(self, x, dtype=None):
        return self.xp.asarray(x, dtype=self.dtype if dtype is None else dtype)

    def to_host(self, a) -> np.ndarray:
        return np.array(a, copy=True)

    def copy(self, a):
        return a.copy()

    def activation_buffer(self, shape):
        # Feature-major memory (the transpose of a C-ordered (features, batch) array) for
        # batches of at most _FEATURE_MAJOR_ROWS rows: OpenBLAS then runs a step's matrix
        # products 4-17% faster (measured for 784-256-256-10 at B = 32..128 on one thread;
        # from B = 256 on, row-major is as fast or faster). NumPy's matmul takes either
        # layout without copying. CuPy keeps row-major: its matmul copies otherwise.
        if len(shape) == 2 and shape[0] <= self._FEATURE_MAJOR_ROWS and self.name == "numpy":
            return self.xp.empty(shape[::-1], dtype=self.dtype).T
        return self.empty(shape)

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
    def linear(self, x, weight, bias, out=None, activation: str = "identity"):
        out = self.xp.matmul(x, weight.T, out=out)
        return self.bias_activation(out, bias, activation)

    def bias_activation(self, y, bias, activation: str = "identity"):
        slope = _SLOPES.get(activation)
        if slope is not None and self._fits_native(y, bias) and bias.shape == y.shape[1:]:
            # the bias and f in one pass
            rows, cols = y.shape
            self._native.bias_act(rows, cols, *_steps(y), _at(y), _at(bias), slope)
            return y
        y += bias
        if activation != "identity":
            return self.activation(activation, y, out=y)
        return y

    def linear_backward(
        self, dout, x, weight, grad_weight, grad_bias, dx=None, activation="identity", y=None
    ):
        xp = self.xp
        dout = self.bias_activation_backward(dout, grad_bias, activation, y)
        xp.matmul(dout.T, x, out=grad_weight)
        if dx is None:
            return None
        return xp.matmul(dout, weight, out=dx)

    def bias_activation_backward(self, dout, grad_bias, activation="identity", y=None):
        if self._fuses_bias_activation_backward(dout, grad_bias, activation, y):
            # dz = f'(z) dout over dout and the bias gradient, in one pass
            rows, cols = dout.shape
            steps = _steps(dout)
            slope = _SLOPES[activation]
            self._native.act_backward(rows, cols, *steps, _at(y), _at(dout), slope, _at(grad_bias))
            return dout
        if activation != "identity":
            dout = self.activation_backward(activation, y, dout, out=dout)
        # A matrix-vector product with ones sums the rows ~2.6x faster than sum(axis=0).
        self.xp.matmul(self._ones(dout.shape[0]), dout, out=grad_bias)
        return dout

    def _fuses_bias_activation_backward(self, dout, grad_bias, activation, y) -> bool:
        """Whether `bias_activation_backward` takes the one-pass C kernel for these operands
        (which sums the bias gradient in double, unlike the ones-vector product)."""
        if _SLOPES.get(activation) is None or not self._fits_native(dout, y, grad_bias):
            return False
        return _same_layout(y, dout) and grad_bias.shape == dout.shape[1:]

    def activation(self, kind: str, z, out=None):
        xp = self.xp
        if out is None:
            out = xp.empty_like(z)
        if kind == "relu":
            # NumPy's SIMD maximum covers two arrays, not an array and a scalar: against a
            # zero-filled buffer it runs about 3x faster than maximum(z, 0).
            zero = self._zeros_like(z) if self.name == "numpy" else 0
            return xp.maximum(z, zero, out=out)
        if kind == "leaky_relu":
            # max(z, 0.01 z) is z for z > 0 and 0.01 z otherwise.
            tmp = self._scratch_like("leaky", z)
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
            # Column-major operands go in as their (row-major) transposes: NumPy's buffered
            # bool-to-float loop is about 2x slower on column-major memory.
            yv, dyv, outv = _row_major_views(y, dy, out)
            positive = self._scratch_like("positive", yv, bool)
            xp.greater(yv, 0, out=positive)
            if kind == "relu":
                xp.multiply(dyv, positive, out=outv)
                return out
            slope = self._scratch_like("slope", yv)
            # slope = 0.01 + 0.99 [y > 0]
            xp.multiply(positive, 1.0 - LEAKY_SLOPE, out=slope)
            slope += LEAKY_SLOPE
            xp.multiply(dyv, slope, out=outv)
            return out
        if kind in ("sigmoid", "tanh"):
            tmp = self._scratch_like("act_grad", y)
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
    def cross_entropy(self, logits, labels, dlogits=None, loss_out=None):
        # Same math as Backend.cross_entropy: with s = z - max(z) per row and
        # S_i = sum_j exp(s_ij), L = mean_i(log S_i - s_i,y_i) and
        # dL/dz = (softmax(z) - onehot(y)) / n. It runs on t = z.T, of shape (classes, n):
        # the per-row max and sum become reductions over the outer axis, which NumPy
        # vectorizes across rows (reducing a short inner axis is several times slower).
        # Few calls: after a step's matrix products every NumPy call costs several us.
        xp = self.xp
        n, classes = logits.shape
        out = xp.empty_like(logits) if dlogits is None else dlogits
        native = self._fits_native(logits, out) and out.shape == logits.shape
        if native and _native_labels(labels, n):
            loss = self._native.cross_entropy(
                n, classes, *_steps(logits), _at(logits), _at(labels), *_steps(out), _at(out)
            )
            if loss != -math.inf:  # -inf: a label out of range, which the NumPy path reports
                return self._loss(loss, loss_out), out
        row, scratch = self._ce_buffers(n, classes)
        # The work buffer: the gradient's own memory when it is column-major (its transpose
        # is then a row-major (classes, n) array), else a scratch copied out at the end.
        in_place = _is_fortran(out)
        t = out.T if in_place else scratch
        xp.copyto(t, logits.T)
        t.max(axis=0, out=row)
        t -= row  # s, transposed
        label_rows = (labels, self._arange(n))
        picked = t[label_rows]  # s_i,y_i
        xp.exp(t, out=t)
        t.sum(axis=0, out=row)  # S_i
        row *= n
        t /= row  # softmax / n
        t[label_rows] -= 1.0 / n
        xp.log(row, out=row)  # log(n S_i)
        loss = float(row.sum() - picked.sum()) / n - math.log(n)
        if not in_place:
            xp.copyto(out, t.T)
        return self._loss(loss, loss_out), out

    @staticmethod
    def _loss(loss: float, loss_out):
        if loss_out is not None:  # host memory: storing the float costs nothing
            loss_out[...] = loss
            return loss_out
        return loss

    def _ce_buffers(self, n: int, classes: int):
        """(a length-n row vector, a (classes, n) work buffer)."""
        key = ("cross_entropy", n, classes)
        buffers = self._scratch_cache.get(key)
        if buffers is None:
            xp = self.xp
            buffers = self._scratch_cache[key] = (
                xp.empty(n, dtype=self.dtype),
                xp.empty((classes, n), dtype=self.dtype),
            )
        return buffers

    def count_correct(self, logits, labels, out=None):
        count = int((logits.argmax(axis=1) == labels).sum())
        if out is None:
            return count
        out[...] = count
        return out

    def record_step(self, stats, loss, correct, rows: int) -> None:
        # Host memory: the reference's rule on Python floats, without array operations.
        ok, value = stats[0] > 0, float(loss[0])
        steps = stats[4] + 1.0
        stats[4] = steps
        if ok and math.isfinite(value):
            stats[1] += value * rows
            if correct is not None:
                stats[2] += float(correct[0])
            stats[3] += rows
            stats[6] += 1.0
        else:
            if ok:
                stats[5] = steps
            stats[0] = 0.0

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
    def sgd_step(
        self, param, grad, buf, *, lr, momentum, nesterov, weight_decay, first, scratch, gate=None
    ):
        if gate is not None and not gate[0]:  # host memory: reading the gate is free
            return
        xp = self.xp
        g = grad
        if weight_decay:
            g = xp.multiply(param, weight_decay, out=scratch[0])  # g = grad + wd * p
            g += grad
        if momentum and not nesterov and self._fits_native(param, g, buf) and _sizes(param, g, buf):
            self._native.momentum(param.size, _at(param), _at(g), _at(buf), momentum, lr, first)
            return
        if momentum:
            if first:
                xp.copyto(buf, g)  # b = g
            elif not axpby(1.0, g, momentum, buf):  # b = mu b + g
                buf *= momentum
                buf += g
            if nesterov:
                upd = xp.multiply(buf, momentum, out=scratch[1])  # g + mu b
                upd += g
                g = upd
            else:
                g = buf
        if not axpy(-lr, g, param):  # p -= lr g, in one pass where the BLAS allows
            step = xp.multiply(g, lr, out=scratch[1])
            param -= step

    def adam_step(
        self,
        param,
        grad,
        m,
        v,
        *,
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        decoupled,
        step,
        scratch,
        gate=None,
    ):
        if gate is not None:  # host memory: the gate and the count are read for free
            step[...] = step + gate
            if not gate[0]:
                return
            step = int(step[0])
        # One pass with the C kernel; else seven whole-buffer passes with BLAS axpby/axpy
        # (twelve without), every scalar a Python float: a NumPy float64 scalar would turn a
        # float32 pass into a float64 one, several times slower.
        xp = self.xp
        tmp, g = scratch[1], grad
        if weight_decay and decoupled:
            param *= 1.0 - lr * weight_decay
        elif weight_decay:
            g = xp.multiply(param, weight_decay, out=scratch[0])
            g += grad
        root = math.sqrt(1.0 - beta2**step)
        size = lr * root / (1.0 - beta1**step)
        if self._fits_native(param, g, m, v) and _sizes(param, g, m, v):  # one pass
            buffers = (_at(param), _at(g), _at(m), _at(v))
            betas = (beta1, 1.0 - beta1, beta2, 1.0 - beta2)
            self._native.adam(param.size, *buffers, *betas, size, eps * root)
            return
        if not axpby(1.0 - beta1, g, beta1, m):  # m = b1 m + (1 - b1) g
            m *= beta1
            xp.multiply(g, 1.0 - beta1, out=tmp)
            m += tmp
        xp.multiply(g, g, out=tmp)  # v = b2 v + (1 - b2) g^2
        if not axpby(1.0 - beta2, tmp, beta2, v):
            v *= beta2
            tmp *= 1.0 - beta2
            v += tmp
        # p -= lr / bias1 * m / (sqrt(v) / sqrt(bias2) + eps); multiplying numerator and
        # denominator by r = sqrt(bias2) saves a pass:
        # p -= (lr r / bias1) * m / (sqrt(v) + eps r)
        xp.sqrt(v, out=tmp)
        tmp += eps * root
        xp.divide(m, tmp, out=tmp)
        if not axpy(-size, tmp, param):
            tmp *= size
            param -= tmp

    # ------------------------------------------------------------------ helpers
    def _fits_native(self, *arrays) -> bool:
        """Whether the C kernels can take these operands: NumPy arrays of the backend's
        dtype, writable, and 1-D contiguous or 2-D with non-negative strides."""
        if self._native is None:
            return False
        for a in arrays:
            if type(a) is not np.ndarray or a.dtype != self.dtype or not a.flags.writeable:
                return False
            if a.ndim == 1 and not a.flags.c_contiguous:
                return False
            if a.ndim == 2 and (min(a.strides) < 0 or a.shape[1] > _MAX_NATIVE_COLUMNS):
                return False
        return True

    def _scratch(self, tag: str, shape, dtype=None, fortran: bool = False):
        """A reusable temporary, one per (tag, shape, dtype, layout); never returned to
        callers. ``fortran=True`` gives column-major memory."""
        dtype = self.dtype if dtype is None else dtype
        key = (tag, tuple(shape), dtype, fortran)
        buf = self._scratch_cache.get(key)
        if buf is None:
            if len(self._scratch_cache) > 64:
                self._scratch_cache.clear()
            order = "F" if fortran else "C"
            buf = self._scratch_cache[key] = self.xp.empty(shape, dtype=dtype, order=order)
        return buf

    def _scratch_like(self, tag: str, a, dtype=None):
        """`_scratch` with the shape and memory layout of ``a``: elementwise operations on
        operands of one layout run contiguously, mixed layouts do not."""
        return self._scratch(tag, a.shape, dtype, _is_fortran(a))

    def _arange(self, n: int):
        key = ("arange", (n,), self.int_dtype)
        buf = self._scratch_cache.get(key)
        if buf is None:
            buf = self._scratch_cache[key] = self.xp.arange(n, dtype=self.int_dtype)
        return buf

    def _zeros_like(self, a):
        """A zero-filled buffer shaped and laid out like ``a``, that nothing writes to."""
        fortran = _is_fortran(a)
        key = ("zeros", a.shape, self.dtype, fortran)
        buf = self._scratch_cache.get(key)
        if buf is None:
            order = "F" if fortran else "C"
            buf = self.xp.zeros(a.shape, dtype=self.dtype, order=order)
            self._scratch_cache[key] = buf
        return buf

    def _ones(self, n: int):
        key = ("ones", (n,), self.dtype)
        buf = self._scratch_cache.get(key)
        if buf is None:
            buf = self._scratch_cache[key] = self.xp.ones(n, dtype=self.dtype)
        return buf


_SLOPES = {"relu": 0.0, "leaky_relu": LEAKY_SLOPE}  # the activations the C kernels fuse
_MAX_NATIVE_COLUMNS = 4096  # act_backward keeps one double per column on the stack
_at = _native.address


def _steps(a) -> tuple[int, int]:
    """A 2-D array's strides in elements: (row step, column step)."""
    size = a.itemsize
    return a.strides[0] // size, a.strides[1] // size


def _sizes(first, *others) -> bool:
    """Whether the flat buffers all have ``first``'s length (the kernels read that many)."""
    return all(a.size == first.size for a in others)


def _same_layout(a, b) -> bool:
    return a.shape == b.shape and a.strides == b.strides


def _native_labels(labels, n: int) -> bool:
    """Contiguous int64 NumPy labels, one per row (the kernel checks their range)."""
    return (
        type(labels) is np.ndarray
        and labels.dtype == np.int64
        and labels.shape == (n,)
        and labels.flags.c_contiguous
    )


def _is_fortran(a) -> bool:
    """Column-major and not also row-major (a 1-row or 1-column array is both)."""
    flags = a.flags
    return flags.f_contiguous and not flags.c_contiguous


def _row_major_views(y, dy, out):
    """The transposes of ``y, dy, out`` when all three are column-major (elementwise results
    are the same in any layout), else the arrays unchanged."""
    if _is_fortran(y) and _is_fortran(dy) and _is_fortran(out):
        return y.T, dy.T, out.T
    return y, dy, out
