"""Losses on logits. Each call returns ``(loss, dloss/dlogits)`` with the loss a Python float."""

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

    def _grad_buffer(self, backend, shape):
        if self._buffers is None or self._buffers.backend is not backend:
            self._buffers = BufferCache(backend)
        return self._buffers.get("grad", shape)

    def correct(self, logits, y) -> int | None:
        """How many predictions are right (None for regression losses)."""
        return None


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy with integer class labels, mean over the batch.

    L = -1/n sum_i log softmax(z_i)[y_i]; dL/dz = (softmax(z) - onehot(y)) / n.
    The softmax is fused with a log-sum-exp shifted by the row maximum, so logits of any
    magnitude give a finite loss and gradient.
    """

    classification = True

    def __call__(self, logits, labels):
        be = backend_of(logits)
        labels = self._labels(be, logits, labels)
        return be.cross_entropy(logits, labels, self._grad_buffer(be, logits.shape))

    def correct(self, logits, labels) -> int:
        be = backend_of(logits)
        return be.count_correct(logits, self._labels(be, logits, labels))

    @staticmethod
    def _labels(be, logits, labels):
        labels = _as_host_or_device(labels)
        if logits.ndim != 2:
            raise invalid("logits shape", tuple(logits.shape), "expected (batch, classes)")
        if tuple(labels.shape) != (logits.shape[0],):
            raise invalid(
                "labels shape", tuple(labels.shape), f"expected ({logits.shape[0]},), one per row"
            )
        if "int" not in str(labels.dtype):
            raise invalid("labels dtype", str(labels.dtype), "expected integer class indices")
        labels = be.asarray(labels, be.int_dtype)
        classes = logits.shape[1]
        low, high = be.min_max(labels)
        if low < 0 or high >= classes:
            bad = int(low) if low < 0 else int(high)
            raise invalid("label", bad, f"allowed class indices: 0..{classes - 1}")
        return labels


class _TargetLoss(Loss):
    """Losses whose targets are real numbers with one value per logit."""

    def _targets(self, be, pred, target):
        target = _as_host_or_device(target)
        size = int(np.prod(pred.shape))
        if int(np.prod(target.shape)) != size:
            raise invalid(
                "target shape", tuple(target.shape), f"expected {tuple(pred.shape)} to match"
            )
        target = be.asarray(target)
        if tuple(target.shape) != tuple(pred.shape):
            target = be.xp.reshape(target, tuple(pred.shape))
        return target


class MSELoss(_TargetLoss):
    """Mean squared error over all elements: L = mean((pred - target)^2),
    dL/dpred = 2 (pred - target) / N. Targets of shape (n,) are accepted for one output."""

    def __call__(self, pred, target):
        be = backend_of(pred)
        target = self._targets(be, pred, target)
        return be.mse(pred, target, self._grad_buffer(be, pred.shape))


class BCEWithLogitsLoss(_TargetLoss):
    """Binary cross-entropy on logits with 0/1 (or soft) targets, mean over elements.

    L = mean(max(z, 0) - z t + log(1 + exp(-|z|))); dL/dz = (sigmoid(z) - t) / N.
    """

    classification = True

    def __call__(self, logits, target):
        be = backend_of(logits)
        target = self._targets(be, logits, target)
        low, high = be.min_max(target)
        if low < 0 or high > 1:
            raise invalid("target", low if low < 0 else high, "binary targets lie in [0, 1]")
        return be.bce_with_logits(logits, target, self._grad_buffer(be, logits.shape))

    def correct(self, logits, target) -> int:
        be = backend_of(logits)
        return be.count_correct_binary(logits, self._targets(be, logits, target))
