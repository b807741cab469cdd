"""A loss over a stack: member m's loss and gradient are the solo loss of its logits and
targets, ``(L[m], dL[m]/dlogits[m])``; the M losses come back as a host float64 array.

Softmax cross-entropy runs as one backend call for the whole stack
(`Backend.stack_cross_entropy`); any other `nnbench.nn.Loss` is computed member by member
with its own ``compute``, its gradient copied into the stack's buffer.
"""

from __future__ import annotations

import numpy as np

from nnbench.nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, Loss
from nnbench.stack.layers import StackBuffers


class StackLoss:
    """``loss_fn`` applied to each member of (M, B, out) logits."""

    def __init__(self, loss_fn: Loss, backend, members: int):
        self.loss_fn, self.backend = loss_fn, backend
        self.classification = loss_fn.classification
        self._buffers = StackBuffers(backend, members)
        kind = type(loss_fn)
        self._fused = kind.compute is CrossEntropyLoss.compute
        self._counts = {
            CrossEntropyLoss.count_correct: _count_correct,  # counted in compute when fused
            BCEWithLogitsLoss.count_correct: _count_correct_binary,
        }.get(kind.count_correct)

    def compute(self, logits, targets):
        """(losses, dlogits): host (M,) float64 and an (M, B, out) stack buffer. The right
        predictions are counted on the way (`count_correct`)."""
        grad = self._buffers.get("grad", logits.shape[1:])
        self._correct = None
        if self._fused:
            members = logits.shape[0]
            self._correct = np.empty(members, dtype=np.int64)
            losses = self.backend.stack_cross_entropy(logits, targets, grad, self._correct)
            return losses, grad
        losses = np.empty(logits.shape[0])
        for m in range(logits.shape[0]):
            losses[m], dm = self.loss_fn.compute(self.backend, logits[m, ...], targets[m, ...])
            grad[m, ...] = dm
        return losses, grad

    def count_correct(self, logits, targets):
        """Per member, the number of right predictions of the last `compute` (an (M,) host
        int array), or None for a regression loss."""
        if not self.classification:
            return None
        if self._correct is not None:
            return self._correct
        be = self.backend
        if self._counts is not None:
            return be.to_host(self._counts(be.xp, be.int_dtype, logits, targets))
        rows = range(logits.shape[0])
        return np.array(
            [self.loss_fn.count_correct(be, logits[m, ...], targets[m, ...]) for m in rows]
        )


def _count_correct(xp, int_dtype, logits, labels):
    """Per member, the rows whose largest logit is at the label (ties: the first index)."""
    predicted = _astype(xp, xp.argmax(logits, axis=2), labels.dtype)
    return xp.sum(_astype(xp, predicted == labels, int_dtype), axis=1)


def _count_correct_binary(xp, int_dtype, logits, target):
    """Per member, the elements where [logit > 0] equals the 0/1 target."""
    right = _astype(xp, _astype(xp, logits > 0, target.dtype) == target, int_dtype)
    return xp.sum(xp.reshape(right, (right.shape[0], -1)), axis=1)


def _astype(xp, a, dtype):
    """The array API's ``xp.astype`` where the namespace has it, else the array's method
    (older CuPy)."""
    return xp.astype(a, dtype) if hasattr(xp, "astype") else a.astype(dtype)
