"""The training loop: nb.train_step, nb.fit, nb.evaluate and the mini-batch order.

Expected numbers are written out independently: losses of a linear model computed with
NumPy from its state dict, and divergence located by a plain NumPy replay of SGD.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import nnbench as nb
from nnbench.train import minibatches

RECORD_KEYS = {
    "epoch",
    "train/loss",
    "train/acc",
    "val/loss",
    "val/acc",
    "time/epoch_s",
    "throughput/samples_per_s",
}


def _classification(rng, n=40, features=3, classes=3):
    x = rng.standard_normal((n, features))
    y = rng.integers(0, classes, size=n)
    return x, y


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _cross_entropy(z, y):
    """mean_i (log sum_j exp z_ij - z_i,y_i), shifted by the row maximum."""
    m = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]
    return float(np.mean(lse - z[np.arange(len(y)), y]))


# ---------------------------------------------------------------------- train_step
def test_train_step_returns_loss_and_changes_params(backend, rng):
    """The returned loss is that of the weights before the step (CE of z = x W.T + b)."""
    x, y = _classification(rng, n=10)
    model = nb.MLP(3, [], 3, seed=0, backend=backend)
    before = model.state_dict()
    loss = nb.train_step(model, nb.CrossEntropyLoss(), nb.SGD(model, lr=0.5), x, y)
    assert type(loss) is float
    z = x @ before["output.weight"].T + before["output.bias"]
    assert loss == pytest.approx(_cross_entropy(z, y), rel=1e-12)
    after = model.state_dict()
    assert all(not np.array_equal(before[k], after[k]) for k in before)


def test_non_finite_loss_leaves_params_untouched(backend):
    """Logits of 1e300 * 1e10 overflow to inf, so the MSE is inf: no backward, no step."""
    model = nb.MLP(2, [], 1, seed=0, backend=backend)
    model.load_state_dict({"output.weight": np.full((1, 2), 1e300), "output.bias": np.zeros(1)})
    before = model.state_dict()
    opt = nb.Adam(model, lr=0.1)
    x, y = np.full((3, 2), 1e10), np.zeros(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = nb.train_step(model, nb.MSELoss(), opt, x, y)
    assert not math.isfinite(loss)
    assert _same_state(before, model.state_dict())
    assert opt.step_count == 0


# ---------------------------------------------------------------------- divergence
def _replay_divergence(x, y, w, b, lr, batch_size, epochs, seed):
    """Plain NumPy SGD on y ~ x w.T + b with the MSE; (epoch, step) of the first
    non-finite loss, shuffling with default_rng(seed).permutation once per epoch."""
    rng = np.random.default_rng(seed)
    w, b = w.copy(), b.copy()
    with np.errstate(all="ignore"):
        for epoch in range(1, epochs + 1):
            order = rng.permutation(len(x))
            for step, start in enumerate(range(0, len(x), batch_size), start=1):
                idx = order[start : start + batch_size]
                diff = x[idx] @ w.T + b - y[idx, None]  # (m, 1)
                if not np.isfinite(np.mean(diff**2)):
                    return epoch, step
                grad = 2.0 * diff / diff.size  # dL/dpred
                w -= lr * grad.T @ x[idx]
                b -= lr * grad.sum(axis=0)
    return None


def _regression(rng, n=64, features=4):
    x = rng.standard_normal((n, features))
    return x, x @ rng.standard_normal(features) * 100.0 + 50.0


@pytest.mark.parametrize(
    ("lr", "seed", "expected"), [(1e6, 0, (7, 1)), (1e3, 3, (12, 2)), (10.0, 0, (27, 4))]
)
def test_fit_reports_divergence_where_it_happens(backend, rng, lr, seed, expected):
    """SGD on a linear regression with targets of order 100, 4 steps per epoch: the larger
    the step, the sooner the loss overflows. ``expected`` is what the NumPy replay finds."""
    x, y = _regression(rng)
    model = nb.MLP(4, [], 1, seed=0, backend=backend)
    start = model.state_dict()
    where = _replay_divergence(
        x, y, start["output.weight"], start["output.bias"], lr, 16, 50, seed=seed
    )
    assert where == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = nb.fit(
            model, nb.MSELoss(), nb.SGD(model, lr=lr), (x, y), epochs=50, batch_size=16, seed=seed
        )
    assert result.outcome == "diverged"
    assert result.diverged_at == where
    assert result.message == f"diverged at epoch {where[0]}, step {where[1]}"
    assert result.epochs == where[0] - 1 == len(result.history)


def test_fit_diverges_quietly_with_hidden_layers(backend32, rng):
    """float32, a hidden ReLU layer, a validation set: divergence is an outcome, not a
    RuntimeWarning or an exception."""
    x, y = _regression(rng)
    model = nb.MLP(4, [8], 1, activation="relu", seed=0, backend=backend32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = nb.fit(
            model,
            nb.MSELoss(),
            nb.SGD(model, lr=1e6),
            (x, y),
            validation=(x[:8], y[:8]),
            epochs=20,
            batch_size=16,
        )
    assert result.outcome == "diverged"
    epoch, step = result.diverged_at
    assert epoch >= 1 and step >= 1
    assert result.message == f"diverged at epoch {epoch}, step {step}"


# ---------------------------------------------------------------------- records
def test_callback_gets_one_record_per_epoch(backend, rng):
    x, y = _classification(rng)
    model = nb.MLP(3, [6], 3, activation="tanh", seed=0, backend=backend)
    records = []
    result = nb.fit(
        model,
        nb.CrossEntropyLoss(),
        nb.SGD(model, lr=0.1),
        (x[:30], y[:30]),
        validation=(x[30:], y[30:]),
        epochs=3,
        batch_size=8,
        callback=records.append,
    )
    assert result.outcome == "completed" and result.epochs == 3
    assert records == result.history
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for record in records:
        assert set(record) == RECORD_KEYS
        assert 0.0 <= record["train/acc"] <= 1.0 and 0.0 <= record["val/acc"] <= 1.0
        assert record["time/epoch_s"] > 0
        # throughput = samples / training time <= samples / epoch time (which adds evaluation)
        assert record["throughput/samples_per_s"] * record["time/epoch_s"] >= 30 * (1 - 1e-9)
    final = nb.evaluate(model, nb.CrossEntropyLoss(), x[30:], y[30:])
    assert records[-1]["val/loss"] == pytest.approx(final["loss"], rel=1e-12)
    assert records[-1]["val/acc"] == final["acc"]


def test_record_has_penalty_with_l1_l2(backend, rng):
    """train/penalty = l1 sum|W| + (l2 / 2) sum W^2 over the Dense weights at epoch end."""
    x, y = _classification(rng)
    model = nb.MLP(3, [6], 3, l1=1e-3, l2=1e-2, seed=0, backend=backend)
    result = nb.fit(
        model, nb.CrossEntropyLoss(), nb.SGD(model, lr=0.1), (x, y), epochs=2, batch_size=8
    )
    assert set(result.history[-1]) == RECORD_KEYS - {"val/loss", "val/acc"} | {"train/penalty"}
    state = model.state_dict()
    weights = [state["hidden.0.weight"], state["output.weight"]]
    expected = sum(1e-3 * np.abs(w).sum() + 0.5e-2 * (w**2).sum() for w in weights)
    assert result.history[-1]["train/penalty"] == pytest.approx(expected, rel=1e-10)


def test_first_epoch_full_batch_loss_by_hand(backend, rng):
    """With one full batch per epoch, epoch 1's train/loss and train/acc are those of the
    initial weights (the step comes after the loss)."""
    x, y = _classification(rng, n=25)
    model = nb.MLP(3, [], 3, seed=4, backend=backend)
    start = model.state_dict()
    result = nb.fit(
        model, nb.CrossEntropyLoss(), nb.SGD(model, lr=0.1), (x, y), epochs=2, batch_size=25
    )
    z = x @ start["output.weight"].T + start["output.bias"]
    assert result.history[0]["train/loss"] == pytest.approx(_cross_entropy(z, y), rel=1e-12)
    assert result.history[0]["train/acc"] == np.mean(z.argmax(axis=1) == y)


# ---------------------------------------------------------------------- early stopping
def test_early_stopping_when_validation_gets_worse(backend, rng):
    """Validation labels are the training labels flipped, so every epoch that fits the
    training set better makes the validation loss worse: the best epoch is the first."""
    x = rng.standard_normal((40, 2))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = nb.MLP(2, [], 2, seed=0, backend=backend)
    result = nb.fit(
        model,
        nb.CrossEntropyLoss(),
        nb.SGD(model, lr=0.5),
        (x, y),
        validation=(x, 1 - y),
        epochs=20,
        batch_size=40,
        patience=2,
    )
    assert result.stopped_early
    assert result.best_epoch == 1
    assert result.epochs == 3 == len(result.history)
    assert result.outcome == "completed"
    assert result.message == "stopped early after epoch 3 (best epoch 1)"
    losses = [r["val/loss"] for r in result.history]
    assert losses == sorted(losses)


def test_min_delta_counts_small_gains_as_none(backend, rng):
    """An improvement must exceed min_delta: with a huge min_delta only epoch 1 counts."""
    x, y = _classification(rng)
    model = nb.MLP(3, [], 3, seed=0, backend=backend)
    result = nb.fit(
        model,
        nb.CrossEntropyLoss(),
        nb.SGD(model, lr=0.1),
        (x, y),
        epochs=10,
        batch_size=40,
        patience=3,
        min_delta=1e9,
    )
    assert (result.stopped_early, result.best_epoch, result.epochs) == (True, 1, 4)


def test_no_early_stop_while_improving(backend, rng):
    """Full-batch gradient descent with a small step on a convex loss improves every epoch."""
    x, y = _classification(rng)
    model = nb.MLP(3, [], 3, seed=0, backend=backend)
    result = nb.fit(
        model,
        nb.CrossEntropyLoss(),
        nb.SGD(model, lr=0.05),
        (x, y),
        epochs=6,
        batch_size=40,
        patience=1,
    )
    assert not result.stopped_early
    assert result.best_epoch == result.epochs == 6
    assert result.message == "completed 6 epochs"


# ---------------------------------------------------------------------- reproducibility
def _run(model_seed, fit_seed, rng_seed=11):
    x, y = _classification(np.random.default_rng(rng_seed), n=50)
    be = nb.get_backend("numpy", "float64")
    model = nb.MLP(3, [8, 8], 3, activation="relu", dropout=0.2, seed=model_seed, backend=be)
    result = nb.fit(
        model,
        nb.CrossEntropyLoss(),
        nb.Adam(model, lr=0.01),
        (x, y),
        epochs=3,
        batch_size=8,
        seed=fit_seed,
    )
    return [r["train/loss"] for r in result.history], model.state_dict()


def test_same_seed_is_bit_identical():
    losses_a, state_a = _run(1, 2)
    losses_b, state_b = _run(1, 2)
    assert losses_a == losses_b
    assert _same_state(state_a, state_b)


@pytest.mark.parametrize(("model_seed", "fit_seed"), [(1, 3), (5, 2)])
def test_different_seeds_differ(model_seed, fit_seed):
    losses_a, state_a = _run(1, 2)
    losses_b, state_b = _run(model_seed, fit_seed)
    assert losses_a != losses_b
    assert not np.array_equal(state_a["output.weight"], state_b["output.weight"])


# ---------------------------------------------------------------------- mini-batches
def test_minibatches_cover_every_sample_once():
    rng = np.random.default_rng(0)
    batches = list(minibatches(10, 3, rng))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    order = np.concatenate(batches)
    assert sorted(order.tolist()) == list(range(10))


def test_minibatches_reshuffle_each_epoch():
    rng = np.random.default_rng(0)
    epochs = [np.concatenate(list(minibatches(100, 16, rng))) for _ in range(3)]
    for order in epochs:
        assert sorted(order.tolist()) == list(range(100))
        assert not np.array_equal(order, np.arange(100))
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[1], epochs[2])
    again = np.concatenate(list(minibatches(100, 16, np.random.default_rng(0))))
    np.testing.assert_array_equal(again, epochs[0])


def test_minibatch_larger_than_data():
    batches = list(minibatches(5, 64, np.random.default_rng(1)))
    assert len(batches) == 1 and sorted(batches[0].tolist()) == [0, 1, 2, 3, 4]


def test_train_epoch_sees_every_sample(backend, rng):
    x, y = _classification(rng, n=33)
    model = nb.MLP(3, [4], 3, seed=0, backend=backend)
    xd, yd = backend.asarray(x), backend.asarray(y, backend.int_dtype)
    stats = nb.train_epoch(
        model, nb.CrossEntropyLoss(), nb.SGD(model, lr=0.1), xd, yd, 8, np.random.default_rng(0)
    )
    assert stats.samples == 33
    assert 0 <= stats.correct <= 33


# ---------------------------------------------------------------------- evaluate
def test_evaluate_cross_entropy_by_hand(backend, rng):
    """Chunks of 4 over 10 rows: the result is still the mean over all rows."""
    x, y = _classification(rng, n=10, classes=4)
    model = nb.MLP(3, [], 4, seed=0, backend=backend)
    state = {k: rng.standard_normal(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    result = nb.evaluate(model, nb.CrossEntropyLoss(), x, y, batch_size=4)
    z = x @ state["output.weight"].T + state["output.bias"]
    assert set(result) == {"loss", "acc"}
    assert result["loss"] == pytest.approx(_cross_entropy(z, y), rel=1e-12)
    assert result["acc"] == np.mean(z.argmax(axis=1) == y)


def test_evaluate_mse_by_hand(backend, rng):
    x = rng.standard_normal((9, 3))
    t = rng.standard_normal(9)
    model = nb.MLP(3, [], 1, seed=2, backend=backend)
    state = model.state_dict()
    result = nb.evaluate(model, nb.MSELoss(), x, t, batch_size=4)
    z = x @ state["output.weight"].T + state["output.bias"]
    assert set(result) == {"loss"}
    assert result["loss"] == pytest.approx(np.mean((z[:, 0] - t) ** 2), rel=1e-12)


def test_evaluate_bce_by_hand(backend, rng):
    """L = mean(max(z, 0) - z t + log(1 + exp(-|z|))); a prediction is [z > 0]."""
    x = rng.standard_normal((12, 2))
    t = (rng.random((12, 1)) > 0.5).astype(float)
    model = nb.MLP(2, [], 1, seed=5, backend=backend)
    state = model.state_dict()
    result = nb.evaluate(model, nb.BCEWithLogitsLoss(), x, t, batch_size=5)
    z = x @ state["output.weight"].T + state["output.bias"]
    loss = np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z))))
    assert result["loss"] == pytest.approx(loss, rel=1e-12)
    assert result["acc"] == np.mean((z > 0) == t)


def test_evaluate_uses_evaluation_mode(backend, rng):
    """Dropout off and batch-norm running statistics: evaluate twice, same numbers, and no
    change to the running statistics."""
    x, y = _classification(rng)
    model = nb.MLP(3, [8], 3, dropout=0.5, batchnorm=True, seed=0, backend=backend)
    before = model.state_dict()
    first = nb.evaluate(model, nb.CrossEntropyLoss(), x, y)
    assert nb.evaluate(model, nb.CrossEntropyLoss(), x, y) == first
    assert _same_state(before, model.state_dict())


# ---------------------------------------------------------------------- batch norm edge
def test_batchnorm_trailing_batch_of_one(backend, rng):
    """33 rows in batches of 8 leave one row: it is skipped, not an error."""
    x, y = _classification(rng, n=33)
    model = nb.MLP(3, [6], 3, batchnorm=True, seed=0, backend=backend)
    result = nb.fit(
        model, nb.CrossEntropyLoss(), nb.SGD(model, lr=0.1), (x, y), epochs=2, batch_size=8
    )
    assert result.outcome == "completed" and result.epochs == 2
    assert all(math.isfinite(r["train/loss"]) for r in result.history)
    xd, yd = backend.asarray(x), backend.asarray(y, backend.int_dtype)
    stats = nb.train_epoch(
        model, nb.CrossEntropyLoss(), nb.SGD(model, lr=0.1), xd, yd, 8, np.random.default_rng(0)
    )
    assert stats.samples == 32
