"""Analytic backward passes against central finite differences, in float64, on every backend.

For a function f of an array x and a fixed random projection R, the scalar
L(x) = sum(f(x) * R) depends on every output, and its gradient is checked entry by entry:

    dL/dx_k ~ (L(x + h e_k) - L(x - h e_k)) / (2 h),   h = 1e-6,

whose truncation error is O(h^2) and rounding error about eps * |L| / h ~ 1e-10. Losses are
scalars already and are differentiated as they are. Inputs stay away from the ReLU kink and
L1 weights away from 0, where the functions are not differentiable.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnbench as nb

H = 1e-6
RTOL = 1e-6
ATOL = 1e-8  # for entries that are (near) zero, e.g. a Dense bias feeding a batch norm
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")


# ---------------------------------------------------------------------- helpers
def numerical_gradient(f, x: np.ndarray) -> np.ndarray:
    """Central differences of the scalar f at the host array x, one entry at a time."""
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    for k in np.ndindex(x.shape):
        old = x[k]
        x[k] = old + H
        plus = f(x.copy())
        x[k] = old - H
        minus = f(x.copy())
        x[k] = old
        grad[k] = (plus - minus) / (2 * H)
    return grad


def assert_gradient(analytic, numeric, what: str = "gradient") -> None:
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=ATOL, err_msg=what)


def away_from_zero(a: np.ndarray, margin: float) -> np.ndarray:
    """Move every entry of a to at least ``margin`` from 0, keeping its sign."""
    return np.where(a >= 0, 1.0, -1.0) * (np.abs(a) + margin)


def bind(backend, layer, **params: np.ndarray) -> None:
    """Give a layer its parameters as backend arrays, with zeroed gradient buffers."""
    layer.bind(
        {name: backend.asarray(value) for name, value in params.items()},
        {name: backend.zeros(value.shape) for name, value in params.items()},
    )


# ---------------------------------------------------------------------- activations
ACTIVATION_VALUES = {
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.where(z > 0, z, 0.0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "identity": lambda z: z,
}


@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activation_gradient(backend, kind, rng):
    """dL/dz = f'(z) * R for L = sum(f(z) * R); the values also match f written out."""
    z = away_from_zero(rng.normal(scale=2.0, size=(3, 4)), 1e-3)
    r = rng.normal(size=z.shape)

    def loss(zz):
        y = nb.Activation(kind, backend).forward(backend.asarray(zz), training=True)
        return float(np.sum(backend.to_host(y) * r))

    layer = nb.Activation(kind, backend)
    y = backend.to_host(layer.forward(backend.asarray(z), training=True))
    np.testing.assert_allclose(y, ACTIVATION_VALUES[kind](z), rtol=1e-13, atol=1e-15)
    dz = backend.to_host(layer.backward(backend.asarray(r)))
    assert_gradient(dz, numerical_gradient(loss, z), f"d/dz {kind}")


# ---------------------------------------------------------------------- losses
def log_softmax(z: np.ndarray) -> np.ndarray:
    """log softmax(z) row by row, written directly (the test logits are moderate)."""
    return z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))


def check_loss(backend, loss_fn, z: np.ndarray, target, expected: float) -> None:
    """The loss value against ``expected`` and dloss/dlogits against finite differences."""
    loss, dlogits = loss_fn(backend.asarray(z), target)
    dlogits = backend.to_host(dlogits)
    assert isinstance(loss, float)
    assert loss == pytest.approx(expected, rel=1e-12)

    def value(zz):
        return loss_fn(backend.asarray(zz), target)[0]

    assert_gradient(dlogits, numerical_gradient(value, z), type(loss_fn).__name__)


def test_cross_entropy_value_and_gradient(backend, rng):
    """L = -1/n sum_i log softmax(z_i)[y_i] for integer labels y."""
    z = rng.normal(scale=2.0, size=(5, 3))
    labels = np.array([0, 2, 1, 2, 0])
    expected = -np.mean(log_softmax(z)[np.arange(5), labels])
    check_loss(backend, nb.CrossEntropyLoss(), z, labels, expected)


def test_mse_value_and_gradient(backend, rng):
    """L = mean over all elements of (pred - target)^2."""
    pred = rng.normal(size=(4, 2))
    target = rng.normal(size=(4, 2))
    check_loss(backend, nb.MSELoss(), pred, target, np.mean((pred - target) ** 2))


def test_bce_with_logits_value_and_gradient(backend, rng):
    """L = -mean(t log p + (1 - t) log(1 - p)) with p = 1 / (1 + e^-z), hard and soft t."""
    z = rng.normal(scale=2.0, size=(6, 1))
    t = np.array([[0.0], [1.0], [1.0], [0.0], [0.3], [0.8]])
    p = 1.0 / (1.0 + np.exp(-z))
    expected = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    check_loss(backend, nb.BCEWithLogitsLoss(), z, t, expected)


# ---------------------------------------------------------------------- layers
def test_dense_gradients(backend, rng):
    """y = x @ W.T + b: dL/dx, dL/dW and dL/db against differences in x, W and b."""
    x, w, b = rng.normal(size=(3, 4)), rng.normal(size=(2, 4)), rng.normal(size=(2,))
    r = rng.normal(size=(3, 2))

    def output(xx, ww, bb):
        layer = nb.Dense(4, 2, backend)
        bind(backend, layer, weight=ww, bias=bb)
        return backend.to_host(layer.forward(backend.asarray(xx), training=True))

    layer = nb.Dense(4, 2, backend)
    bind(backend, layer, weight=w, bias=b)
    y = backend.to_host(layer.forward(backend.asarray(x), training=True))
    np.testing.assert_allclose(y, x @ w.T + b, rtol=1e-13, atol=1e-14)
    dx = backend.to_host(layer.backward(backend.asarray(r)))
    dw, db = backend.to_host(layer.grad_weight), backend.to_host(layer.grad_bias)

    assert_gradient(dx, numerical_gradient(lambda v: np.sum(output(v, w, b) * r), x), "dL/dx")
    assert_gradient(dw, numerical_gradient(lambda v: np.sum(output(x, v, b) * r), w), "dL/dW")
    assert_gradient(db, numerical_gradient(lambda v: np.sum(output(x, w, v) * r), b), "dL/db")


def test_dropout_gradient_with_fixed_mask(backend, rng):
    """With the mask m fixed (same seed each forward): dL/dx = R * m / (1 - p), m in {0, 1}."""
    p = 0.4
    x, r = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    layer = nb.Dropout(p, backend, backend.rng(7))

    def loss(xx):
        layer.rng = backend.rng(7)
        return float(np.sum(backend.to_host(layer.forward(backend.asarray(xx), True)) * r))

    numeric = numerical_gradient(loss, x)
    layer.rng = backend.rng(7)
    layer.forward(backend.asarray(x), training=True)
    dx = backend.to_host(layer.backward(backend.asarray(r)))
    assert_gradient(dx, numeric, "dropout dL/dx")
    scale = dx / r
    kept = np.isclose(scale, 1 / (1 - p), rtol=1e-12)
    assert np.all(kept | (scale == 0.0)), scale
    assert 0 < kept.sum() < kept.size, "the mask should keep some entries and drop others"


def test_batchnorm_training_gradients(backend, rng):
    """Training-mode batch norm: dL/dx (through the batch mean and variance), dL/dgamma,
    dL/dbeta."""
    x = rng.normal(loc=1.0, scale=3.0, size=(5, 3))
    gamma, beta = rng.uniform(0.5, 1.5, size=3), rng.normal(size=3)
    r = rng.normal(size=x.shape)

    def output(xx, g, bt):
        layer = nb.BatchNorm1d(3, backend)
        bind(backend, layer, weight=g, bias=bt)
        return backend.to_host(layer.forward(backend.asarray(xx), training=True))

    layer = nb.BatchNorm1d(3, backend)
    bind(backend, layer, weight=gamma, bias=beta)
    layer.forward(backend.asarray(x), training=True)
    dx = backend.to_host(layer.backward(backend.asarray(r)))
    dgamma, dbeta = backend.to_host(layer.grad_weight), backend.to_host(layer.grad_bias)

    def loss_x(v):
        return np.sum(output(v, gamma, beta) * r)

    assert_gradient(dx, numerical_gradient(loss_x, x), "dL/dx")
    assert_gradient(
        dgamma, numerical_gradient(lambda v: np.sum(output(x, v, beta) * r), gamma), "dL/dgamma"
    )
    assert_gradient(
        dbeta, numerical_gradient(lambda v: np.sum(output(x, gamma, v) * r), beta), "dL/dbeta"
    )


# ---------------------------------------------------------------------- whole networks
def reseed_dropout(model, seed: int = 11) -> None:
    """Give every Dropout layer the same freshly seeded generator, so masks repeat."""
    generator = model.backend.rng(seed)
    for layer in model.layers:
        if isinstance(layer, nb.Dropout):
            layer.rng = generator


def expected_trainable_keys(hidden, batchnorm: bool) -> list[str]:
    """The trainable state-dict keys as the README names them ("The Python API")."""
    keys = []
    for i in range(len(hidden)):
        keys += [f"hidden.{i}.weight", f"hidden.{i}.bias"]
        if batchnorm:
            keys += [f"hidden.{i}.bn.weight", f"hidden.{i}.bn.bias"]
    return keys + ["output.weight", "output.bias"]


def analytic_gradients(model, loss_fn, x, y) -> dict[str, np.ndarray]:
    reseed_dropout(model)
    _, dlogits = loss_fn(model.forward(x, training=True), y)
    model.backward(dlogits)
    return model.gradients()


def numerical_gradients(model, objective) -> dict[str, np.ndarray]:
    """Finite differences of objective(model) in every trainable entry, set through
    load_state_dict; the model's state is restored afterwards."""
    start = model.state_dict()

    def at(key):
        def value(v):
            model.load_state_dict({**start, key: v})
            return objective(model)

        return value

    grads = {key: numerical_gradient(at(key), start[key]) for key in model.gradients()}
    model.load_state_dict(start)
    return grads


def assert_model_gradients(analytic: dict, numeric: dict) -> None:
    assert list(analytic) == list(numeric)
    for key in numeric:
        assert_gradient(analytic[key], numeric[key], key)


LOSSES = {
    "cross_entropy": (nb.CrossEntropyLoss, lambda rng, n, k: np.array([0, 1, 2, 3, 1, 2])[:n]),
    "mse": (nb.MSELoss, lambda rng, n, k: rng.normal(size=(n, k))),
}


def check_mlp(backend, rng, activation, batchnorm, loss_name, dropout=0.0):
    hidden = [7, 6, 5]
    model = nb.MLP(
        5,
        hidden,
        4,
        activation=activation,
        dropout=dropout,
        batchnorm=batchnorm,
        seed=3,
        backend=backend,
    )
    make_loss, make_target = LOSSES[loss_name]
    loss_fn = make_loss()
    x, y = rng.normal(size=(6, 5)), make_target(rng, 6, 4)
    # Nonzero biases: with zero biases a row that dropout and ReLU zero entirely gives a
    # pre-activation of exactly 0, the ReLU kink. Batch norm starts off gamma 1, beta 0.
    state = model.state_dict()
    for key in [f"hidden.{i}.bias" for i in range(len(hidden))] + ["output.bias"]:
        state[key] = away_from_zero(rng.normal(scale=0.3, size=state[key].shape), 0.05)
    if batchnorm:
        for i in range(len(hidden)):
            state[f"hidden.{i}.bn.weight"] = rng.uniform(0.5, 1.5, size=hidden[i])
            state[f"hidden.{i}.bn.bias"] = rng.normal(scale=0.5, size=hidden[i])
    model.load_state_dict(state)

    def objective(m):
        reseed_dropout(m)
        return loss_fn(m.forward(x, training=True), y)[0]

    numeric = numerical_gradients(model, objective)
    analytic = analytic_gradients(model, loss_fn, x, y)
    assert list(analytic) == expected_trainable_keys(hidden, batchnorm)
    assert_model_gradients(analytic, numeric)


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "batchnorm"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_gradients(backend, rng, activation, batchnorm, loss_name):
    """Backpropagation through 5 -> [7, 6, 5] -> 4 equals differences in every parameter."""
    check_mlp(backend, rng, activation, batchnorm, loss_name)


@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "batchnorm"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_mlp_gradients_with_dropout(backend, rng, activation, batchnorm):
    """The same with dropout 0.3, every dropout generator re-seeded before each forward."""
    check_mlp(backend, rng, activation, batchnorm, "cross_entropy", dropout=0.3)


# ---------------------------------------------------------------------- L1 / L2 penalties
L1, L2 = 0.01, 0.05


def penalty_by_hand(state: dict) -> float:
    """l1 * sum|W| + l2 / 2 * sum W^2 over the Dense weights (not biases, not batch norm)."""
    weights = [v for k, v in state.items() if k.endswith(".weight") and ".bn." not in k]
    assert len(weights) == 3  # hidden.0, hidden.1, output
    return sum(L1 * np.sum(np.abs(w)) + L2 / 2 * np.sum(w * w) for w in weights)


def penalized_model(backend):
    """3 -> [4, 3] -> 2 with batch norm, its Dense weights at least 0.05 away from 0."""
    model = nb.MLP(
        3, [4, 3], 2, activation="tanh", batchnorm=True, l1=L1, l2=L2, seed=5, backend=backend
    )
    state = model.state_dict()
    for key in ("hidden.0.weight", "hidden.1.weight", "output.weight"):
        state[key] = away_from_zero(state[key], 0.05)
    state["hidden.0.bn.weight"] = np.array([0.5, -1.5, 2.0, 3.0])  # large, not penalized
    model.load_state_dict(state)
    return model


def test_penalty_value(backend):
    model = penalized_model(backend)
    assert model.penalty() == pytest.approx(penalty_by_hand(model.state_dict()), rel=1e-12)


def test_penalty_gradient(backend, rng):
    """gradients() is the gradient of data_loss + l1 sum|W| + l2/2 sum W^2."""
    model = penalized_model(backend)
    loss_fn = nb.CrossEntropyLoss()
    x, y = rng.normal(size=(5, 3)), np.array([0, 1, 1, 0, 1])

    def objective(m):
        return loss_fn(m.forward(x, training=True), y)[0] + penalty_by_hand(m.state_dict())

    numeric = numerical_gradients(model, objective)
    assert_model_gradients(analytic_gradients(model, loss_fn, x, y), numeric)


def test_penalty_changes_the_gradient(backend, rng):
    """Guard against a vacuous check: the penalty's share of the gradient is not tiny."""
    model = penalized_model(backend)
    plain = nb.MLP(3, [4, 3], 2, activation="tanh", batchnorm=True, seed=5, backend=backend)
    plain.load_state_dict(model.state_dict())
    loss_fn = nb.CrossEntropyLoss()
    x, y = rng.normal(size=(5, 3)), np.array([0, 1, 1, 0, 1])
    with_penalty = analytic_gradients(model, loss_fn, x, y)["output.weight"]
    without = analytic_gradients(plain, loss_fn, x, y)["output.weight"]
    w = model.state_dict()["output.weight"]
    np.testing.assert_allclose(with_penalty - without, L1 * np.sign(w) + L2 * w, rtol=1e-9)
