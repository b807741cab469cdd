"""NumPy's whole-stack paths for `StackedOps`: the same bits as the solo methods, member by
member, in a few calls for the whole stack.

How each stays bit-identical to the solo path it mirrors:
- Matrix products: ``matmul`` on (M, B, k) @ (M, k, n) stacks calls one BLAS GEMM (or GEMV)
  per member with that member's strides; the stack buffers give every member slice the
  solo layout, so each call is the solo call. (OpenBLAS's float32 results do depend on the
  operands' layouts, and a GEMV over several members' columns at once differs from one per
  member: both were measured.)
- Elementwise work (bias, activation, its derivative) runs on the *wide* view of a stack
  whose members are feature-major, (B, M * n): the same operations on the same values.
- The C kernels' column sums (bias gradients) are per column, so the wide view gives each
  member's column its solo sum; the cross-entropy, SGD-momentum and Adam kernels have
  stack versions that call the solo kernel once per member (``_native.c``).
Where a member's solo call would take another path (no C kernels, a BLAS axpy, a layer
too wide for the kernels), the reference member-by-member method runs instead.
"""

from __future__ import annotations

import math

import numpy as np

from nnbench.backend import _blas
from nnbench.backend._native import address as _address
from nnbench.backend.stacked import StackedOps, equal_runs

_SLOPES = {"relu": 0.0, "leaky_relu": 0.01}  # the activations the C kernels fuse
_MAX_COLUMNS = 4096  # columns per kernel call (act_backward keeps one double per column)


class NumpyStackedOps(StackedOps):
    """Whole-stack overrides for `NumpyBackend` (CuPy inherits the array-level ones)."""

    def stack_buffer(self, members: int, shape):
        if len(shape) == 2 and shape[0] <= self._FEATURE_MAJOR_ROWS and self.name == "numpy":
            # each member (B, n) feature-major, as `activation_buffer` makes a solo buffer
            return self.xp.empty((members, shape[1], shape[0]), dtype=self.dtype).transpose(0, 2, 1)
        return self.empty((members, *shape))

    def stack_matmul(self, a, b, out):
        return self.xp.matmul(a, b, out=out)

    def matrix_transpose(self, a):
        return a.transpose(0, 2, 1)

    def stack_bias_activation(self, y, bias, activation: str = "identity"):
        slope = _SLOPES.get(activation)
        fused = slope is not None and self._fits_native(y[0], bias[0])
        wide = _wide(y)
        if fused and wide is not None:
            flat, (rows, _), steps = self._contiguous_bias(bias), wide.shape, _steps(wide)
            at, bias_at, size = _address(y), _address(flat), y.itemsize  # wide starts at y
            for lo, hi in _chunks(y.shape[0], y.shape[2]):
                w_at, b_at = at + lo * steps[1] * size, bias_at + lo * size
                self._native.bias_act(rows, hi - lo, *steps, w_at, b_at, slope)
            return y
        if fused:  # not feature-major: the solo call per member
            return super().stack_bias_activation(y, bias, activation)
        y += bias[:, None, :]
        if activation != "identity":
            z = y if wide is None else wide
            self.activation(activation, z, out=z)
        return y

    def stack_bias_activation_backward(self, dout, grad_bias, activation="identity", y=None):
        ym = None if y is None else y[0]
        wide, wide_y = _wide(dout), None if y is None else _wide(y)
        if self._fuses_bias_activation_backward(dout[0], grad_bias[0], activation, ym):
            if wide is None or wide_y is None or wide.strides != wide_y.strides:
                return super().stack_bias_activation_backward(dout, grad_bias, activation, y)
            members, rows, n = dout.shape
            flat = self._scratch("stack_bias_grad", (members * n,))
            slope, steps, size = _SLOPES[activation], _steps(wide), dout.itemsize
            at = (_address(y), _address(dout), _address(flat))  # the wide views start there
            for lo, hi in _chunks(members, n):
                shift = lo * steps[1] * size
                chunk = (at[0] + shift, at[1] + shift, slope, at[2] + lo * size)
                self._native.act_backward(rows, hi - lo, *steps, *chunk)
            grad_bias[...] = flat.reshape(members, n)
            return dout
        if activation != "identity":
            same = wide is not None and wide_y is not None and wide.strides == wide_y.strides
            d, yy = (wide, wide_y) if same else (dout, y)
            self.activation_backward(activation, yy, d, out=d)
        # one GEMV per member with ones, the solo bias gradient
        self.stack_matmul(self._ones(dout.shape[1]), dout, grad_bias)
        return dout

    def stack_cross_entropy(self, logits, labels, dlogits, correct=None) -> np.ndarray:
        members, n, classes = logits.shape
        first = (logits[0], labels[0], dlogits[0])
        fits = correct is None or (correct.dtype == np.int64 and correct.flags.c_contiguous)
        if not (fits and self._fits_native(first[0], first[2]) and _labels_ok(labels, n)):
            return super().stack_cross_entropy(logits, labels, dlogits, correct)
        losses = np.empty(members)
        self._native.cross_entropy_stack(
            members,
            n,
            classes,
            *_element_strides(logits),
            _address(logits),
            _address(labels),
            labels.strides[0] // labels.itemsize,
            *_element_strides(dlogits),
            _address(dlogits),
            _address(losses),
            None if correct is None else _address(correct),
        )
        if (losses == -math.inf).any():  # a label out of range: the solo path reports it
            return super().stack_cross_entropy(logits, labels, dlogits, correct)
        return losses

    def stack_sgd_step(
        self, params, grads, bufs, *, lr, momentum, nesterov, weight_decay, first, scratch
    ):
        momentum_free = [m for m, mu in enumerate(momentum) if not mu]
        blas = momentum_free and _blas._usable("axpy", grads[0], params[0]) is not None
        if nesterov or blas or bufs is None or not self._stack_fits(params, grads, bufs):
            return super().stack_sgd_step(
                params,
                grads,
                bufs,
                lr=lr,
                momentum=momentum,
                nesterov=nesterov,
                weight_decay=weight_decay,
                first=first,
                scratch=scratch,
            )
        g = self._decayed(params, grads, weight_decay, scratch[0])
        # Momentum-free members: p -= lr g is the kernel's first step (b = g; p -= lr b).
        size, row = params.shape[1], params.shape[1] * params.itemsize
        stacks = [_address(a) for a in (params, g, bufs)]  # rows lo.. at offsets lo * row
        for lo, hi in equal_runs([bool(mu) for mu in momentum]):
            mus, lrs = self._scalars(momentum[lo:hi]), self._scalars(lr[lo:hi])
            at = [a + lo * row for a in stacks] + [_address(mus), _address(lrs)]
            again = bool(first) or not momentum[lo]
            self._native.momentum_stack(hi - lo, size, *at, again)

    def stack_adam_step(
        self, params, grads, m, v, *, lr, beta1, beta2, eps, weight_decay, decoupled, step, scratch
    ):
        if not self._stack_fits(params, grads, m, v):
            return super().stack_adam_step(
                params,
                grads,
                m,
                v,
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                eps=eps,
                weight_decay=weight_decay,
                decoupled=decoupled,
                step=step,
                scratch=scratch,
            )
        g = grads
        if decoupled and any(weight_decay):  # p *= 1 - lr wd (1 exactly where wd = 0)
            params *= self._scalars(
                [1.0 - a * w if w else 1.0 for a, w in zip(lr, weight_decay, strict=True)]
            )
        elif not decoupled:
            g = self._decayed(params, grads, weight_decay, scratch[0])
        roots = [math.sqrt(1.0 - b2**step) for b2 in beta2]
        size = [a * r / (1.0 - b1**step) for a, r, b1 in zip(lr, roots, beta1, strict=True)]
        scalars = (
            beta1,
            [1.0 - b for b in beta1],
            beta2,
            [1.0 - b for b in beta2],
            size,
            [e * r for e, r in zip(eps, roots, strict=True)],
        )
        scalars = [self._scalars(s, keep=k < 4) for k, s in enumerate(scalars)]
        arrays = (params, g, m, v, *scalars)
        self._native.adam_stack(params.shape[0], params.shape[1], *map(_address, arrays))

    # ------------------------------------------------------------------ helpers
    def _decayed(self, params, grads, weight_decay, out):
        """g = grad + wd p per member (solo: p * wd, then + grad), exactly grad where wd = 0."""
        if not any(weight_decay):
            return grads
        self.xp.multiply(params, self._scalars(weight_decay), out=out)
        out += grads
        for m, wd in enumerate(weight_decay):
            if not wd:
                out[m] = grads[m]
        return out

    def _scalars(self, values, keep: bool = True):
        """Per-member scalars as an (M, 1) array of the dtype (the C kernels' float type:
        each rounds from the Python float as a ctypes argument does); ``keep``: kept per
        values (hyperparameters come back every step, step-dependent scalars do not)."""
        key = ("stack_scalars", tuple(values), self.dtype)
        found = self._scratch_cache.get(key) if keep else None
        if found is None:
            found = np.asarray(values, dtype=self.dtype).reshape(-1, 1)
            if keep:
                found.flags.writeable = False
                self._scratch_cache[key] = found
        return found

    def _stack_fits(self, *stacks) -> bool:
        """(M, P) C-contiguous NumPy stacks of the dtype, with the C kernels present."""
        if self._native is None:
            return False
        return all(
            type(a) is np.ndarray and a.dtype == self.dtype and a.flags.c_contiguous for a in stacks
        )

    def _contiguous_bias(self, bias):
        members, n = bias.shape
        flat = self._scratch("stack_bias", (members * n,))
        flat.reshape(members, n)[...] = bias
        return flat


def _wide(a):
    """The (B, M * n) view of an (M, B, n) stack whose members are feature-major (the
    memory of a C-ordered (M, n, B) array), or None for another layout."""
    if a.ndim != 3:
        return None
    t = a.transpose(0, 2, 1)
    if not t.flags.c_contiguous:
        return None
    return t.reshape(-1, a.shape[1]).T


def _chunks(members: int, n: int):
    """Member ranges of at most _MAX_COLUMNS columns (one member when n is wider)."""
    per = max(1, _MAX_COLUMNS // max(n, 1))
    for lo in range(0, members, per):
        yield lo * n, min(lo + per, members) * n


def _labels_ok(labels, n: int) -> bool:
    return (
        type(labels) is np.ndarray
        and labels.dtype == np.int64
        and labels.ndim == 2
        and labels.shape[1] == n
        and labels.strides[1] == labels.itemsize
        and labels.strides[0] >= 0
    )


def _element_strides(a):
    """A 3-D array's strides in elements."""
    return tuple(s // a.itemsize for s in a.strides)


def _steps(a):
    return a.strides[0] // a.itemsize, a.strides[1] // a.itemsize
