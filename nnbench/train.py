"""Training as plain functions: no Hydra, no MLflow. Tracking and progress bars plug in
through the ``callback`` of `fit`, which receives one record per epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from nnbench.epoch import EpochResult
from nnbench.errors import invalid
from nnbench.graphed import graphed_training
from nnbench.nn.losses import Loss

DEFAULT_EVAL_BATCH = 2048


def train_step(model, loss_fn, optimizer, x, y, *, validate: bool = True) -> float:
    """forward(training=True), loss, backward, optimizer step; returns the data loss.

    A non-finite loss skips backward and the step, so the weights stay those that produced
    the last finite loss; the caller decides what divergence means.

    ``validate=False`` skips the checks of ``x`` and ``y`` (shape, finiteness, label range):
    they must then be backend arrays that passed them already (``model.check_input(x)``,
    ``loss_fn.prepare(backend, (n, outputs), y)``). `fit` does exactly that, once per run.
    """
    with _quiet_divergence():
        loss, _ = _step(model, loss_fn, optimizer, x, y, validate)
    return loss


def _step(model, loss_fn, optimizer, x, y, validate):
    if validate or not isinstance(loss_fn, Loss):
        logits = model.forward_buffered(x, training=True, validate=validate)
        loss, dlogits = loss_fn(logits, y)
    else:
        logits = model.forward_buffered(x, training=True, validate=False)
        loss, dlogits = loss_fn.compute(model.backend, logits, y)
    if math.isfinite(loss):
        model.backward(dlogits)
        optimizer.step()
    return loss, logits


def _quiet_divergence():
    """Divergence is an outcome, detected by the non-finite loss: NumPy's overflow and
    invalid-value warnings on the way there are noise (CuPy raises none). Entered once per
    epoch, not per step (it costs about a microsecond)."""
    return np.errstate(over="ignore", invalid="ignore")


def minibatches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Index arrays of a fresh random permutation of range(n), ``batch_size`` at a time."""
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def train_epoch(model, loss_fn, optimizer, x, y, batch_size: int, rng) -> EpochResult:
    """One pass over (x, y) on the model's backend in shuffled mini-batches.

    Stops at the first non-finite loss and reports its step. A trailing batch of one row is
    skipped when the model uses batch normalization, which needs two rows to train. The
    data is checked once, up front; the steps then run unchecked.
    """
    x, y = _checked_data(model, loss_fn, x, y)
    with _quiet_divergence():
        return _train_batches(model, loss_fn, optimizer, x, y, batch_size, rng)


def _train_batches(model, loss_fn, optimizer, x, y, batch_size, rng) -> EpochResult:
    """`train_epoch` on data that `_checked_data` has checked and moved to the backend."""
    be = model.backend
    total, correct, seen = 0.0, 0, 0
    track_correct = loss_fn.classification
    batch = None
    for step, idx in enumerate(minibatches(x.shape[0], batch_size, rng), start=1):
        if len(idx) == 1 and getattr(model, "batchnorm", False):
            continue
        if batch is None or batch.shape[0] != len(idx):
            batch = be.empty((len(idx), x.shape[1]))
        xb = be.take_rows(x, idx, out=batch)
        yb = be.take_rows(y, idx)
        loss, logits = _step(model, loss_fn, optimizer, xb, yb, validate=False)
        if not math.isfinite(loss):
            return EpochResult(total / max(seen, 1), None, seen, diverged_step=step)
        total += loss * len(idx)
        seen += len(idx)
        if track_correct:
            correct += _count_correct(model, loss_fn, logits, yb)
    return EpochResult(total / seen, correct if track_correct else None, seen)


def _count_correct(model, loss_fn, logits, y) -> int | None:
    if isinstance(loss_fn, Loss):
        return loss_fn.count_correct(model.backend, logits, y)
    return loss_fn.correct(logits, y)


def evaluate(model, loss_fn, x, y, batch_size: int = DEFAULT_EVAL_BATCH) -> dict:
    """Mean loss and (for classification) accuracy in evaluation mode, in chunks."""
    _check_positive("batch_size", batch_size)
    x, y = _checked_data(model, loss_fn, x, y)
    return _evaluate_checked(model, loss_fn, x, y, batch_size)


def _evaluate_checked(model, loss_fn, x, y, batch_size: int = DEFAULT_EVAL_BATCH) -> dict:
    total, correct, n = 0.0, 0, x.shape[0]
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        xb, yb = x[start:stop, ...], y[start:stop, ...]
        with _quiet_divergence():  # a diverged model scores inf/nan
            logits = model.forward_buffered(xb, training=False, validate=False)
            if isinstance(loss_fn, Loss):
                loss, _ = loss_fn.compute(model.backend, logits, yb)
            else:
                loss, _ = loss_fn(logits, yb)
        total += loss * xb.shape[0]
        right = _count_correct(model, loss_fn, logits, yb)
        correct = None if right is None else correct + right
    result = {"loss": total / n}
    if correct is not None:
        result["acc"] = correct / n
    return result


@dataclass
class FitResult:
    """How training ended: ``outcome`` is "completed" or "diverged"."""

    outcome: str
    epochs: int  # epochs completed
    history: list[dict] = field(default_factory=list)
    diverged_at: tuple[int, int] | None = None  # (epoch, step), both 1-based
    stopped_early: bool = False
    best_epoch: int | None = None

    @property
    def message(self) -> str:
        if self.outcome == "diverged":
            epoch, step = self.diverged_at
            return f"diverged at epoch {epoch}, step {step}"
        if self.stopped_early:
            return f"stopped early after epoch {self.epochs} (best epoch {self.best_epoch})"
        return f"completed {self.epochs} epoch{'' if self.epochs == 1 else 's'}"


def fit(
    model,
    loss_fn,
    optimizer,
    train,
    *,
    epochs: int,
    batch_size: int,
    validation=None,
    seed: int = 0,
    patience: int | None = None,
    min_delta: float = 0.0,
    callback: Callable[[dict], None] | None = None,
    cuda_graph=False,
) -> FitResult:
    """Train for up to ``epochs`` passes over ``train = (x, y)``.

    Mini-batches are shuffled by ``numpy.random.default_rng(seed)``. After each epoch the
    model is evaluated (evaluation mode) on ``validation = (x, y)`` when given, and
    ``callback`` receives the epoch's record: ``epoch``, ``train/loss``, ``train/acc``,
    ``train/penalty`` (with L1/L2), ``val/loss``, ``val/acc``, ``time/epoch_s``,
    ``throughput/samples_per_s``. With ``patience``, training stops once the monitored loss
    (``val/loss``, else ``train/loss``) has not improved by more than ``min_delta`` for that
    many epochs. The first non-finite training loss ends training with outcome "diverged".

    ``cuda_graph=True`` (backend=cupy only) captures each training step as a CUDA graph
    (`nnbench.backend.cuda_graph`): the step then keeps its loss, accuracy count and
    divergence flag on the device, and the host reads them once per epoch. The results are
    those of eager training, except that after a non-finite loss the remaining steps of the
    epoch still run (with the update skipped on the device), so batch-norm statistics and
    dropout draws move on before training stops. A capturer object may be passed instead of
    True (`HostCapturer` runs the same bookkeeping on the CPU, for tests).
    """
    _check_positive("epochs", epochs)
    _check_positive("batch_size", batch_size)
    if patience is not None:
        _check_positive("patience", patience)
    be = model.backend
    # Moved to the device and checked once, before any training; the steps run unchecked.
    x, y = _checked_data(model, loss_fn, *train)
    if validation is not None:
        validation = _checked_data(model, loss_fn, *validation)
    if getattr(model, "batchnorm", False):
        _check_batchnorm_batches(x.shape[0], batch_size)
    graphed = None
    if cuda_graph is not False and cuda_graph is not None:
        graphed = graphed_training(model, loss_fn, optimizer, cuda_graph)
    rng = np.random.default_rng(seed)
    result = FitResult(outcome="completed", epochs=0)
    best = math.inf
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        with _quiet_divergence():
            if graphed is None:
                stats = _train_batches(model, loss_fn, optimizer, x, y, batch_size, rng)
            else:
                stats = graphed.epoch(x, y, batch_size, rng)
        if stats.diverged_step is not None:
            result.outcome, result.diverged_at = "diverged", (epoch, stats.diverged_step)
            break
        be.synchronize()
        train_time = time.perf_counter() - start
        record = _epoch_record(model, loss_fn, epoch, stats, validation)
        record["time/epoch_s"] = time.perf_counter() - start
        record["throughput/samples_per_s"] = stats.samples / train_time
        result.history.append(record)
        result.epochs = epoch
        if callback is not None:
            callback(record)
        monitored = record.get("val/loss", record["train/loss"])
        if monitored < best - min_delta:
            best, result.best_epoch = monitored, epoch
        elif patience is not None and epoch - (result.best_epoch or 0) >= patience:
            result.stopped_early = True
            break
    return result


def _epoch_record(model, loss_fn, epoch, stats: EpochResult, validation) -> dict:
    record = {"epoch": epoch, "train/loss": stats.loss}
    if stats.correct is not None:
        record["train/acc"] = stats.correct / stats.samples
    if getattr(model, "l1", 0) or getattr(model, "l2", 0):
        record["train/penalty"] = model.penalty()
    if validation is not None:
        for key, value in _evaluate_checked(model, loss_fn, *validation).items():
            record[f"val/{key}"] = value
    return record


def _checked_data(model, loss_fn, x, y):
    """``(x, y)`` on the model's backend, checked once for a whole dataset: the number of
    rows, the input's shape and finiteness (``model.check_input``) and the targets
    (``loss_fn.prepare``: label range, target shape), with the messages of the per-call
    checks."""
    be = model.backend
    if not hasattr(x, "shape"):
        x = np.asarray(x, dtype=float)
    y = _device_targets(be, y)
    _check_rows(x, y)
    x = model.check_input(x)
    if isinstance(loss_fn, Loss):  # else a plain callable, which checks per call
        y = loss_fn.prepare(be, (x.shape[0], model.out_features), y)
    return x, y


def _device_targets(be, y):
    """Targets on the device: integer labels stay integers, everything else becomes float."""
    if not hasattr(y, "dtype"):
        y = np.asarray(y)
    return be.asarray(y, be.int_dtype if "int" in str(y.dtype) else None)


def _check_rows(x, y) -> None:
    """At least one sample, and one target row per input row."""
    n = x.shape[0]
    if n < 1:
        raise invalid("number of samples", n, "need at least 1")
    if y.shape[0] != n:
        raise invalid("number of target rows", y.shape[0], f"expected {n}, one per input row")


def _check_batchnorm_batches(n: int, batch_size: int) -> None:
    """Batch normalization trains on batches of two or more rows (a lone last row is skipped)."""
    if batch_size < 2:
        raise invalid("batch_size", batch_size, "batch normalization needs at least 2")
    if n < 2:
        raise invalid("number of samples", n, "batch normalization needs at least 2")


def _check_positive(what: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise invalid(what, value, "must be an integer >= 1")
