"""Training steps that never wait for the device, replayed as CUDA graphs
(``trainer.cuda_graph=true``; `nnbench.fit` with ``cuda_graph=``).

The loss, the count of right predictions and the divergence flag stay in device buffers and
are read once per epoch; the optimizer's update is gated on the device at the first
non-finite loss. The capture machinery itself is device-specific and lives in
`nnbench.backend.cuda_graph`.
"""

from __future__ import annotations

from nnbench.epoch import EpochResult
from nnbench.errors import invalid
from nnbench.nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss


def graphed_training(model, loss_fn, optimizer, cuda_graph) -> GraphedTraining:
    """The `GraphedTraining` of a fit with ``cuda_graph``: True (the backend's CUDA-graph
    capturer) or a capturer object (`HostCapturer`, for tests)."""
    from nnbench.backend.cuda_graph import capturer_for

    capturer = capturer_for(model.backend) if cuda_graph is True else cuda_graph
    return GraphedTraining(model, loss_fn, optimizer, capturer)


# Built-in losses as backend calls that leave the loss and count on the device:
# (loss class, loss method, correct-count method or None).
DEVICE_LOSSES = (
    (CrossEntropyLoss, "cross_entropy", "count_correct"),
    (BCEWithLogitsLoss, "bce_with_logits", "count_correct_binary"),
    (MSELoss, "mse", None),
)


class GraphedTraining:
    """Training steps that never wait for the device, replayed as CUDA graphs.

    One step: forward, the loss into a device buffer, the count of right predictions into
    another, `Backend.record_step` (which sums them and turns off the ``ok`` gate at the
    first non-finite loss), backward, and the optimizer step gated by ``ok``. Each batch
    shape has its own input buffers and its own graph (`StepGraphs`); a batch is gathered
    into them from the device copy of the data, with the epoch's permutation uploaded once.
    """

    def __init__(self, model, loss_fn, optimizer, capturer):
        from nnbench.backend.base import STEP_STATS
        from nnbench.backend.cuda_graph import StepGraphs

        self.model, self.optimizer = model, optimizer
        self.loss_method, self.count_method = _device_loss(loss_fn)
        xp = model.backend.xp
        self.stats = xp.zeros((len(STEP_STATS),), dtype=xp.float64)
        self.loss = xp.zeros((1,), dtype=xp.float64)
        self.correct = xp.zeros((1,), dtype=xp.float64) if self.count_method else None
        self.graphs = StepGraphs(capturer)
        self._shapes: dict = {}  # rows -> (x buffer, y buffer, step)

    def epoch(self, x, y, batch_size: int, rng) -> EpochResult:
        """One pass, like `train_epoch` on checked device data (same batches for ``rng``)."""
        be = self.model.backend
        n = x.shape[0]
        self.stats[...] = be.xp.asarray([1.0, 0, 0, 0, 0, 0, 0], dtype=be.xp.float64)
        self.optimizer.begin_gated_steps()
        order = be.asarray(rng.permutation(n), be.int_dtype)  # one transfer per epoch
        lone_row_skipped = getattr(self.model, "batchnorm", False)
        with self.graphs.running():
            for start in range(0, n, batch_size):
                rows = min(batch_size, n - start)
                if rows == 1 and lone_row_skipped:
                    continue
                xb, yb, step = self.buffers(rows, x, y)
                be.take_rows(x, order[start : start + rows], out=xb)
                be.take_rows(y, order[start : start + rows], out=yb)
                self.graphs.run(rows, step)
        self.graphs.synchronize()  # the graphs' stream is not the default one
        return self._result(be.to_host(self.stats))  # the epoch's one read-back

    def buffers(self, rows: int, x, y):
        """``(x buffer, y buffer, step)`` for ``rows``-row batches of data shaped like ``x``
        and ``y``: the step (to pass to ``self.graphs.run(rows, step)``) trains on whatever
        the two buffers hold, and they stay where they are (a graph reads them)."""
        found = self._shapes.get(rows)
        if found is None:
            be = self.model.backend
            xb = be.empty((rows, *x.shape[1:]))
            yb = be.xp.empty((rows, *y.shape[1:]), dtype=y.dtype)
            grad = be.activation_buffer((rows, self.model.out_features))

            def step():
                self.step(xb, yb, grad)

            found = self._shapes[rows] = (xb, yb, step)
        return found

    def step(self, xb, yb, grad) -> None:
        """One training step on the batch in ``xb, yb``, with no host synchronization."""
        model, be = self.model, self.model.backend
        logits = model.forward_buffered(xb, training=True, validate=False)
        getattr(be, self.loss_method)(logits, yb, grad, loss_out=self.loss)
        if self.count_method is not None:
            getattr(be, self.count_method)(logits, yb, out=self.correct)
        be.record_step(self.stats, self.loss, self.correct, xb.shape[0])
        model.backward(grad)
        self.optimizer.step(gate=self.stats[0:1])

    def _result(self, stats) -> EpochResult:
        ok, loss_sum, correct, seen, _, diverged_at, applied = (float(v) for v in stats)
        self.optimizer.step_count += int(applied)
        seen = int(seen)
        if not ok:
            return EpochResult(loss_sum / max(seen, 1), None, seen, int(diverged_at))
        return EpochResult(loss_sum / seen, int(correct) if self.count_method else None, seen)


def _device_loss(loss_fn) -> tuple[str, str | None]:
    for cls, loss_method, count_method in DEVICE_LOSSES:
        if isinstance(loss_fn, cls):
            return loss_method, count_method
    allowed = ", ".join(cls.__name__ for cls, _, _ in DEVICE_LOSSES)
    raise invalid("loss for trainer.cuda_graph", type(loss_fn).__name__, "allowed: " + allowed)
