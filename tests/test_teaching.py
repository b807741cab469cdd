"""What the teaching material promises, demonstrated on the real network.

- A perceptron (no hidden layer) cannot solve XOR; one hidden tanh layer can.
- Stacked linear layers without a nonlinearity collapse into one linear map.
- Inverted dropout keeps about 1 - p of the units, scales them by 1 / (1 - p), and is the
  identity at evaluation.
- Batch normalization keeps running statistics (alpha = 0.9, unbiased variance) and uses
  them at evaluation.
- A small MLP learns scikit-learn's handwritten digits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnbench as nb

XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([[0.0], [1.0], [1.0], [0.0]])


def _train_xor(backend, hidden, seed, steps=300):
    """Full-batch Adam (lr 0.1) on the XOR truth table; returns evaluate()'s loss and acc."""
    model = nb.MLP(2, hidden, 1, activation="tanh", seed=seed, backend=backend)
    loss_fn, opt = nb.BCEWithLogitsLoss(), nb.Adam(model, lr=0.1)
    for _ in range(steps):
        nb.train_step(model, loss_fn, opt, XOR_X, XOR_Y)
    return nb.evaluate(model, loss_fn, XOR_X, XOR_Y)


# ---------------------------------------------------------------------- XOR
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_perceptron_cannot_fit_xor(backend, seed):
    """No line separates XOR: at most 3 of the 4 points are right.

    The loss cannot go below log 2 either: BCE is convex in (w, b), and the map
    x -> 1 - x permutes the truth table, so averaging any (w, b) with its mirror image
    (-w, b + w1 + w2) gives w = 0 without raising the loss; with w = 0 the best bias is 0.
    """
    result = _train_xor(backend, hidden=[], seed=seed)
    assert result["acc"] <= 0.75
    assert result["loss"] >= math.log(2) - 1e-9


@pytest.mark.parametrize("hidden", [[4], [8]])
def test_one_hidden_tanh_layer_fits_xor(backend, hidden):
    result = _train_xor(backend, hidden=hidden, seed=0)
    assert result["acc"] == 1.0
    assert result["loss"] < 0.01


# ---------------------------------------------------------------------- linear collapse
def test_stacked_linear_layers_are_one_linear_map(backend, rng):
    """With identity activations, y = W3 (W2 (W1 x + b1) + b2) + b3 = W x + b where
    W = W3 W2 W1 and b = W3 (W2 b1 + b2) + b3: depth adds no expressive power."""
    model = nb.MLP(5, [7, 6], 3, activation="identity", seed=0, backend=backend)
    state = {k: rng.standard_normal(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    w1, b1 = state["hidden.0.weight"], state["hidden.0.bias"]
    w2, b2 = state["hidden.1.weight"], state["hidden.1.bias"]
    w3, b3 = state["output.weight"], state["output.bias"]
    w = w3 @ w2 @ w1
    b = w3 @ (w2 @ b1 + b2) + b3
    x = rng.standard_normal((11, 5))
    expected = x @ w.T + b
    got = backend.to_host(model.forward(backend.asarray(x)))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)

    single = nb.MLP(5, [], 3, activation="identity", backend=backend)
    single.load_state_dict({"output.weight": w, "output.bias": b})
    np.testing.assert_allclose(backend.to_host(single.forward(x)), got, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------- dropout
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_is_identity_at_evaluation(backend, rng, p):
    layer = nb.Dropout(p, backend, backend.rng(0))
    x = backend.asarray(rng.standard_normal((6, 5)))
    y = layer.forward(x, training=False)
    np.testing.assert_array_equal(backend.to_host(y), backend.to_host(x))


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_keeps_one_minus_p_and_scales(backend, p):
    """Each unit survives with probability 1 - p; survivors are multiplied by 1 / (1 - p).

    On N = 100,000 units the kept fraction has standard deviation sqrt(p (1 - p) / N),
    below 0.0016; the test allows 5 of them.
    """
    shape = (200, 500)
    layer = nb.Dropout(p, backend, backend.rng(7))
    y = backend.to_host(layer.forward(backend.asarray(np.ones(shape)), training=True))
    kept = y != 0
    sigma = math.sqrt(p * (1 - p) / kept.size)
    assert abs(kept.mean() - (1 - p)) < 5 * sigma
    np.testing.assert_array_equal(y[kept], 1.0 / (1.0 - p))


def test_dropout_scales_any_input(backend, rng):
    """Kept units are x / (1 - p), dropped ones are exactly 0."""
    p = 0.5
    x = rng.standard_normal((50, 40)) + 3.0  # nonzero everywhere
    layer = nb.Dropout(p, backend, backend.rng(3))
    y = backend.to_host(layer.forward(backend.asarray(x), training=True))
    kept = y != 0
    assert 0 < kept.sum() < kept.size
    np.testing.assert_allclose(y[kept], x[kept] / (1.0 - p), rtol=1e-15)


def test_dropout_model_evaluates_like_model_without_dropout(backend, rng):
    """Dropout does not change the initial weights, and evaluation ignores it; training
    forwards draw fresh masks."""
    x = backend.asarray(rng.standard_normal((8, 4)))
    with_dropout = nb.MLP(4, [16, 16], 3, activation="relu", dropout=0.5, seed=3, backend=backend)
    without = nb.MLP(4, [16, 16], 3, activation="relu", seed=3, backend=backend)
    evaluated = backend.to_host(with_dropout.forward(x, training=False))
    np.testing.assert_array_equal(evaluated, backend.to_host(without.forward(x, training=False)))
    first = backend.to_host(with_dropout.forward(x, training=True))
    second = backend.to_host(with_dropout.forward(x, training=True))
    assert not np.array_equal(first, evaluated)
    assert not np.array_equal(first, second)


# ---------------------------------------------------------------------- batch normalization
EPS = 1e-5


def _batchnorm(backend, gamma, beta):
    layer = nb.BatchNorm1d(len(gamma), backend)
    params = {"weight": backend.asarray(gamma), "bias": backend.asarray(beta)}
    grads = {"weight": backend.zeros((len(gamma),)), "bias": backend.zeros((len(gamma),))}
    layer.bind(params, grads)
    return layer


def test_batchnorm_running_statistics_by_hand(backend, rng):
    """running = 0.9 running + 0.1 batch, from mean 0 and variance 1, with the unbiased
    batch variance (divisor n - 1) for running_var; the training output uses the biased
    variance (divisor n)."""
    gamma, beta = np.array([1.5, 0.5, 2.0]), np.array([0.1, -0.2, 0.3])
    layer = _batchnorm(backend, gamma, beta)
    running_mean, running_var = np.zeros(3), np.ones(3)
    for n in (5, 8, 4):
        x = rng.standard_normal((n, 3)) * [1.0, 3.0, 0.5] + [2.0, -1.0, 0.0]
        y = backend.to_host(layer.forward(backend.asarray(x), training=True))
        mean, biased = x.mean(axis=0), x.var(axis=0)
        np.testing.assert_allclose(y, gamma * (x - mean) / np.sqrt(biased + EPS) + beta, atol=1e-12)
        running_mean = 0.9 * running_mean + 0.1 * mean
        running_var = 0.9 * running_var + 0.1 * x.var(axis=0, ddof=1)
        np.testing.assert_allclose(backend.to_host(layer.running_mean), running_mean, atol=1e-14)
        np.testing.assert_allclose(backend.to_host(layer.running_var), running_var, atol=1e-14)


def test_batchnorm_evaluation_uses_running_statistics(backend, rng):
    gamma, beta = np.array([0.7, -1.2]), np.array([0.5, 0.25])
    layer = _batchnorm(backend, gamma, beta)
    for _ in range(3):
        layer.forward(backend.asarray(rng.standard_normal((6, 2)) * 2.0 + 1.0), training=True)
    running_mean = backend.to_host(layer.running_mean)
    running_var = backend.to_host(layer.running_var)
    x = rng.standard_normal((4, 2))
    expected = gamma * (x - running_mean) / np.sqrt(running_var + EPS) + beta
    y = backend.to_host(layer.forward(backend.asarray(x), training=False))
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    # Evaluation leaves the running statistics alone.
    np.testing.assert_array_equal(backend.to_host(layer.running_mean), running_mean)
    np.testing.assert_array_equal(backend.to_host(layer.running_var), running_var)


def test_batchnorm_inside_mlp_one_step_by_hand(backend, rng):
    """In Dense -> BatchNorm -> activation, the statistics are those of z = x W1.T + b1;
    after one training forward from (0, 1) they are (0.1 mean(z), 0.9 + 0.1 var_unbiased(z)),
    and evaluation computes W2 f(gamma (z - running_mean) / sqrt(running_var + eps) + beta)."""
    model = nb.MLP(3, [4], 2, activation="identity", batchnorm=True, seed=0, backend=backend)
    state = model.state_dict()
    assert np.array_equal(state["hidden.0.bn.running_mean"], np.zeros(4))
    assert np.array_equal(state["hidden.0.bn.running_var"], np.ones(4))
    state["hidden.0.bias"] = rng.standard_normal(4)
    state["hidden.0.bn.weight"] = rng.uniform(0.5, 2.0, 4)
    state["hidden.0.bn.bias"] = rng.standard_normal(4)
    model.load_state_dict(state)
    x = rng.standard_normal((7, 3))
    model.forward(x, training=True)
    z = x @ state["hidden.0.weight"].T + state["hidden.0.bias"]
    after = model.state_dict()
    running_mean = 0.1 * z.mean(axis=0)
    running_var = 0.9 + 0.1 * z.var(axis=0, ddof=1)
    np.testing.assert_allclose(after["hidden.0.bn.running_mean"], running_mean, atol=1e-14)
    np.testing.assert_allclose(after["hidden.0.bn.running_var"], running_var, atol=1e-14)

    x_eval = rng.standard_normal((5, 3))
    z = x_eval @ state["hidden.0.weight"].T + state["hidden.0.bias"]
    gamma, beta = state["hidden.0.bn.weight"], state["hidden.0.bn.bias"]
    h = gamma * (z - running_mean) / np.sqrt(running_var + EPS) + beta
    expected = h @ state["output.weight"].T + state["output.bias"]
    got = backend.to_host(model.forward(x_eval, training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------- digits
@pytest.mark.parametrize(
    "make_optimizer",
    [lambda m: nb.Adam(m, lr=1e-3), lambda m: nb.SGD(m, lr=0.02, momentum=0.9)],
    ids=["adam", "momentum"],
)
def test_mlp_learns_digits(make_optimizer):
    """An MLP 64-64-10 reaches at least 95% test accuracy on the 8x8 digits (numpy)."""
    datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    x, y = datasets.load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = model_selection.train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0  # constant border pixels
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

    backend = nb.get_backend("numpy", "float32")
    model = nb.MLP(64, [64], 10, activation="relu", seed=0, backend=backend)
    loss_fn = nb.CrossEntropyLoss()
    result = nb.fit(
        model, loss_fn, make_optimizer(model), (x_train, y_train), epochs=25, batch_size=32
    )
    assert result.outcome == "completed"
    test = nb.evaluate(model, loss_fn, x_test, y_test)
    assert test["acc"] >= 0.95
    predicted = backend.to_host(model.forward(x_test)).argmax(axis=1)
    assert test["acc"] == pytest.approx(np.mean(predicted == y_test))
