"""The MLP in scikit-learn: ``MLPClassifier`` with ReLU, softmax and log-loss, float32.

What one step costs is measured with the loop body of ``MLPClassifier.fit``'s stochastic
solver itself (``_fit_stochastic``): ``_backprop`` on a batch, then
``_optimizer.update_params``. Timing ``fit`` or ``partial_fit`` instead would add, per call,
input validation, label binarization and the end-of-epoch bookkeeping that ``fit`` runs
once per epoch, not per step. These are private methods: if a scikit-learn release changes
them, `SklearnStep` falls back to one ``partial_fit`` call per step (and says so in
``mode``).

Settings matched to nnbench's: ``alpha=0`` (no L2 penalty), SGD with ``momentum=0`` and a
constant learning rate; Adam with PyTorch's betas and eps.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np

OPTIMIZERS = ("sgd", "adam")
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3}


def make_classifier(
    sizes: Sequence[int],
    batch_size: int,
    optimizer: str = "sgd",
    lr: float | None = None,
    seed: int = 0,
):
    try:
        from sklearn.neural_network import MLPClassifier
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the scikit-learn reference needs scikit-learn: pip install 'nnbench[reference]'"
        ) from exc
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Invalid optimizer: {optimizer!r} (allowed: {', '.join(OPTIMIZERS)})")
    common = dict(
        hidden_layer_sizes=tuple(sizes[1:-1]),
        activation="relu",
        alpha=0.0,
        batch_size=batch_size,
        learning_rate_init=DEFAULT_LR[optimizer] if lr is None else lr,
        shuffle=False,
        random_state=seed,
    )
    if optimizer == "sgd":
        return MLPClassifier(
            solver="sgd", momentum=0.0, nesterovs_momentum=False, learning_rate="constant", **common
        )
    return MLPClassifier(solver="adam", beta_1=0.9, beta_2=0.999, epsilon=1e-8, **common)


class SklearnStep:
    """One stochastic-solver step of MLPClassifier on a fixed float32 batch."""

    def __init__(self, sizes, batch_size, optimizer="sgd", lr=None, seed=0):
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((batch_size, sizes[0])).astype(np.float32)
        labels = np.arange(batch_size) % sizes[-1]  # every class present
        self.labels = rng.permutation(labels)
        self.clf = make_classifier(sizes, batch_size, optimizer, lr, seed)
        self.clf.partial_fit(self.x, self.labels, classes=np.arange(sizes[-1]))
        self.mode = "partial_fit"
        try:
            self._prepare_matched_loop(sizes)
            self()  # the private API works in this release
            self.mode = "fit loop body"
        except (AttributeError, TypeError):
            self._step = self._partial_fit_step

    def _prepare_matched_loop(self, sizes):
        clf = self.clf
        self.y = clf._label_binarizer.transform(self.labels).astype(bool)  # as _validate_input
        dtype = self.x.dtype
        pairs = list(zip(sizes[:-1], sizes[1:], strict=False))
        self.activations = [self.x] + [None] * (len(sizes) - 1)
        self.deltas = [None] * (len(sizes) - 1)
        self.coef_grads = [np.empty((i, o), dtype=dtype) for i, o in pairs]
        self.intercept_grads = [np.empty(o, dtype=dtype) for _, o in pairs]
        self.params = clf.coefs_ + clf.intercepts_
        self._with_weights = "sample_weight" in inspect.signature(clf._backprop).parameters
        self._step = self._loop_body_step

    def _loop_body_step(self):
        clf = self.clf
        self.activations[0] = self.x
        extra = (None,) if self._with_weights else ()
        loss, coef_grads, intercept_grads = clf._backprop(
            self.x,
            self.y,
            *extra,
            self.activations,
            self.deltas,
            self.coef_grads,
            self.intercept_grads,
        )
        clf._optimizer.update_params(self.params, coef_grads + intercept_grads)
        return loss

    def _partial_fit_step(self):
        self.clf.partial_fit(self.x, self.labels)

    def __call__(self):
        return self._step()

    def synchronize(self) -> None:
        """scikit-learn runs synchronously on the host."""
