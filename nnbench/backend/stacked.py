"""Primitives over a *stack*: M members of one network held as arrays with a leading member
axis, (M, ...), each member's slice laid out exactly like the solo model's array.

`StackedOps` is mixed into `Backend`. Its methods are the reference: member by member, each
calls the backend's own solo method on that member's slices, so every member's numbers are
its solo numbers by construction (the slices have the solo layouts). A backend overrides
them with whole-stack paths that give the same bits (`NumpyStackedOps`).

Shapes: activations (M, B, n); biases and bias gradients (M, n); flat parameters,
gradients and optimizer state (M, P), one row per member. Per-member hyperparameters are
host sequences of Python floats, one per member.
"""

from __future__ import annotations

import contextlib
import copy
import os

import numpy as np

from nnbench.backend import _blas


class StackedOps:
    """Stack primitives, written member by member on the solo methods (the reference)."""

    def stack_buffer(self, members: int, shape):
        """An uninitialized (members, batch, features) stack whose member slices have the
        memory layout `activation_buffer` gives a solo buffer of ``shape``."""
        return self.empty((members, *shape))

    def stack_matmul(self, a, b, out):
        """out[m] = a[m] @ b[m] for stacks of matrices (a leading 1 broadcasts)."""
        out[...] = self.xp.matmul(a, b)
        return out

    def matrix_transpose(self, a):
        """The (M, k, n) -> (M, n, k) transposed view of a stack of matrices."""
        return self.xp.permute_dims(a, (0, 2, 1))

    def stack_bias_activation(self, y, bias, activation: str = "identity"):
        """y[m] <- f(y[m] + b[m]) in place: `bias_activation` per member."""
        for m in range(y.shape[0]):
            self.bias_activation(y[m, ...], bias[m, ...], activation)
        return y

    def stack_bias_activation_backward(self, dout, grad_bias, activation="identity", y=None):
        """`bias_activation_backward` per member: dz over ``dout``, grad_bias (M, n)."""
        for m in range(dout.shape[0]):
            ym = None if y is None else y[m, ...]
            self.bias_activation_backward(dout[m, ...], grad_bias[m, ...], activation, ym)
        return dout

    def stack_cross_entropy(self, logits, labels, dlogits, correct=None) -> np.ndarray:
        """Member m's mean cross-entropy of logits[m] (B, C) and labels[m] (B,), with its
        gradient into dlogits[m]; returns the M losses as a host float64 array. With
        ``correct`` (a host int64 (M,) array), also each member's `count_correct`."""
        losses = np.empty(logits.shape[0])
        for m in range(logits.shape[0]):
            if correct is not None:
                correct[m] = self.count_correct(logits[m, ...], labels[m, ...])
            losses[m], _ = self.cross_entropy(logits[m, ...], labels[m, ...], dlogits[m, ...])
        return losses

    def stack_sgd_step(
        self, params, grads, bufs, *, lr, momentum, nesterov, weight_decay, first, scratch
    ):
        """`sgd_step` on every member's row, with its own lr, momentum and weight decay
        (``bufs`` None when no member has momentum; ``scratch`` two (M, P) buffers)."""
        for m in range(params.shape[0]):
            self.sgd_step(
                params[m, ...],
                grads[m, ...],
                None if not momentum[m] else bufs[m, ...],
                lr=lr[m],
                momentum=momentum[m],
                nesterov=nesterov,
                weight_decay=weight_decay[m],
                first=first,
                scratch=(scratch[0][m, ...], scratch[1][m, ...]),
            )

    def stack_adam_step(
        self, params, grads, m, v, *, lr, beta1, beta2, eps, weight_decay, decoupled, step, scratch
    ):
        """`adam_step` on every member's row, with its own lr, betas, eps and weight decay;
        ``step`` (the 1-based step number) is shared."""
        for k in range(params.shape[0]):
            self.adam_step(
                params[k, ...],
                grads[k, ...],
                m[k, ...],
                v[k, ...],
                lr=lr[k],
                beta1=beta1[k],
                beta2=beta2[k],
                eps=eps[k],
                weight_decay=weight_decay[k],
                decoupled=decoupled,
                step=step,
                scratch=(scratch[0][k, ...], scratch[1][k, ...]),
            )


def thread_backends(backend, count: int) -> list:
    """Backends for ``count`` threads stepping parts of one stack side by side: the same
    arrays and settings, each with its own scratch buffers (a NumPy backend reuses
    temporaries across its calls, so one instance must not serve two threads at once).
    A single backend where threads do not pay: a GPU, or count < 2."""
    if count < 2 or backend.name != "numpy":
        return [backend]
    copies = []
    for _ in range(count):
        clone = copy.copy(backend)
        clone._scratch_cache = {}
        copies.append(clone)
    return copies


def auto_threads(backend, members: int) -> int:
    """Threads for a stack by default: two halves on NumPy with two usable cores and 16
    members or more, else one. Measured on a 2-core machine (digits MLP, B = 64): halves
    took 0.76-0.89 of one thread's step time at M = 32..128 while the second core was
    free, 1.07-1.10 while another process kept it busy, and lost at M = 8."""
    if backend.name != "numpy" or members < 16:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 2 if (cores or 1) >= 2 else 1


@contextlib.contextmanager
def one_blas_thread(active: bool = True):
    """BLAS on one thread inside (when ``active``): threads that each run their own
    matrix products must not also share NumPy's BLAS thread pool."""
    pools = _blas.thread_pools() if active else None
    if pools is None:
        yield
        return
    with pools.limit(limits=1, user_api="blas"):
        yield


def equal_runs(flags):
    """(lo, hi) ranges of consecutive equal flags: the members a per-member choice (momentum
    on or off, dropout on or off) splits a stack into, each range handled in one call."""
    lo = 0
    for k in range(1, len(flags) + 1):
        if k == len(flags) or flags[k] != flags[lo]:
            yield lo, k
            lo = k
