"""Losses on logits. Each call returns ``(loss, dloss/dlogits)`` with the loss a Python float.

A call ``loss_fn(logits, y)`` validates ``y`` against the logits (`Loss.prepare`) and then
computes (`Loss.compute`). The training loop validates a whole dataset's targets once with
``prepare`` and calls ``compute`` per mini-batch, so the per-step path checks nothing twice.
"""

from __future__ import annotations

import numpy as np

from nnbench.backend import backend_of
from nnbench.errors import invalid
from nnbench.nn.buffers import BufferCache


def _as_host_or_device(y):
    """Python lists and scalars become NumPy arrays; arrays pass through."""
    return y if hasattr(y, "dtype") else np.asarray(y)


class Loss:
    """Common plumbing: find the backend from the logits, reuse the gradient buffer."""

    classification = False  # whether `correct` counts right predictions

    def __init__(self):
        self._buffers: BufferCache | None = None

    def __call__(self, logits, target):
        be = backend_of(logits)
        return self.compute(be, logits, self.prepare(be, tuple(logits.shape), target))

    def prepare(self, be, shape: tuple, target):
        """``target`` checked against logits of ``shape`` and moved to backend ``be``, in the
        form `compute` takes. Raises ValueError for a bad target."""
        raise NotImplementedError

    def compute(self, be, logits, target):
        """``(loss, dlogits)`` for a target already `prepare`-d: nothing is checked. The
        gradient is a buffer owned by the loss, overwritten by the next call."""
        raise NotImplementedError

    def correct(self, logits, target) -> int | None:
        """How many predictions are right (None for regression losses)."""
        be = backend_of(logits)
        return self.count_correct(be, logits, self.prepare(be, tuple(logits.shape), target))

    def count_correct(self, be, logits, target) -> int | None:
        """`correct` for a target already `prepare`-d."""
        return None

    def _grad_buffer(self, backend, shape):
        if self._buffers is None or self._buffers.backend is not backend:
            self._buffers = BufferCache(backend, activations=True)
        return self._buffers.get("grad", shape)


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy with integer class labels, mean over the batch.

    L = -1/n sum_i log softmax(z_i)[y_i]; dL/dz = (softmax(z) - onehot(y)) / n.
    The softmax is fused with a log-sum-exp shifted by the row maximum, so logits of any
    magnitude give a finite loss and gradient.
    """

    classification = True

    def compute(self, be, logits, labels):
        return be.cross_entropy(logits, labels, self._grad_buffer(be, logits.shape))

    def count_correct(self, be, logits, labels) -> int:
        return be.count_correct(logits, labels)

    def prepare(self, be, shape, labels):
        labels = _as_host_or_device(labels)
        if len(shape) != 2:
            raise invalid("logits shape", shape, "expected (batch, classes)")
        if tuple(labels.shape) != (shape[0],):
            raise invalid(
                "labels shape", tuple(labels.shape), f"expected ({shape[0]},), one per row"
            )
        if "int" not in str(labels.dtype):
            raise invalid("labels dtype", str(labels.dtype), "expected integer class indices")
        labels = be.asarray(labels, be.int_dtype)
        classes = shape[1]
        low, high = be.min_max(labels)
        if low < 0 or high >= classes:
            bad = int(low) if low < 0 else int(high)
            raise invalid("label", bad, f"allowed class indices: 0..{classes - 1}")
        return labels


class _TargetLoss(Loss):
    """Losses whose targets are real numbers with one value per logit."""

    def prepare(self, be, shape, target):
        target = _as_host_or_device(target)
        size = int(np.prod(shape))
        if int(np.prod(target.shape)) != size:
            raise invalid("target shape", tuple(target.shape), f"expected {shape} to match")
        target = be.asarray(target)
        if tuple(target.shape) != shape:
            target = be.xp.reshape(target, shape)
        return target


class MSELoss(_TargetLoss):
    """Mean squared error over all elements: L = mean((pred - target)^2),
    dL/dpred = 2 (pred - target) / N. Targets of shape (n,) are accepted for one output."""

    def compute(self, be, pred, target):
        return be.mse(pred, target, self._grad_buffer(be, pred.shape))


class BCEWithLogitsLoss(_TargetLoss):
    """Binary cross-entropy on logits with 0/1 (or soft) targets, mean over elements.

    L = mean(max(z, 0) - z t + log(1 + exp(-|z|))); dL/dz = (sigmoid(z) - t) / N.
    """

    classification = True

    def prepare(self, be, shape, target):
        target = super().prepare(be, shape, target)
        low, high = be.min_max(target)
        if low < 0 or high > 1:
            raise invalid("target", low if low < 0 else high, "binary targets lie in [0, 1]")
        return target

    def compute(self, be, logits, target):
        return be.bce_with_logits(logits, target, self._grad_buffer(be, logits.shape))

    def count_correct(self, be, logits, target) -> int:
        return be.count_correct_binary(logits, target)
