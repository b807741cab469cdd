"""Bad input fails at once with a ValueError that names the bad value and what is allowed.

Every message has the shape "Invalid <what>: <repr(value)> (<what is allowed>)"; the tests
match the value and the allowed range, not just the exception type. Checks that do not
depend on the array library run on every backend.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import nnbench as nb


def raises_exactly(text: str):
    """Expect a ValueError whose message contains ``text`` literally."""
    return pytest.raises(ValueError, match=re.escape(text))


def raises_like(pattern: str):
    """Expect a ValueError whose message matches the regular expression ``pattern``."""
    return pytest.raises(ValueError, match=pattern)


def _data(rng, n=6, features=3, classes=4):
    return rng.standard_normal((n, features)), rng.integers(0, classes, size=n)


def _model(backend, **kwargs):
    kwargs.setdefault("activation", "tanh")
    return nb.MLP(3, [5], 4, seed=0, backend=backend, **kwargs)


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------- model input
def test_wrong_input_width(backend, rng):
    model = _model(backend)
    x = backend.asarray(rng.standard_normal((2, 4)))
    with raises_exactly("Invalid input shape: (2, 4) (expected (batch, 3))"):
        model.forward(x)


def test_one_dimensional_input(backend):
    with raises_exactly("Invalid input shape: (3,) (expected (batch, 3))"):
        _model(backend).forward(np.zeros(3))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("training", [False, True])
def test_non_finite_input(backend, rng, bad, training):
    """The message names the offending value and where it is."""
    x = rng.standard_normal((4, 3))
    x[2, 1] = bad
    with raises_like(r"Invalid input at row 2, column 1: .*finite") as info:
        _model(backend).forward(backend.asarray(x), training=training)
    assert repr(float(bad)) in str(info.value)


def test_non_finite_input_to_train_step_leaves_params(backend, rng):
    model = _model(backend)
    before = model.state_dict()
    x, y = _data(rng)
    x[0, 0] = np.nan
    with raises_like("Invalid input at row 0, column 0: nan"):
        nb.train_step(model, nb.CrossEntropyLoss(), nb.SGD(model, lr=0.1), x, y)
    assert _same_state(before, model.state_dict())


# ---------------------------------------------------------------------- labels and targets
@pytest.mark.parametrize("bad", [-1, 4, 10])
def test_label_out_of_range(backend, rng, bad):
    logits = backend.asarray(rng.standard_normal((3, 4)))
    labels = np.array([0, bad, 1])
    with raises_exactly(f"Invalid label: {bad} (allowed class indices: 0..3)"):
        nb.CrossEntropyLoss()(logits, labels)


def test_label_out_of_range_on_device(backend, rng):
    logits = backend.asarray(rng.standard_normal((3, 4)))
    labels = backend.asarray(np.array([0, 2, 7]), backend.int_dtype)
    with raises_exactly("Invalid label: 7 (allowed class indices: 0..3)"):
        nb.CrossEntropyLoss()(logits, labels)


@pytest.mark.parametrize("on_device", [False, True])
def test_float_labels(backend, rng, on_device):
    logits = backend.asarray(rng.standard_normal((3, 4)))
    labels = np.array([0.0, 1.0, 2.0])
    if on_device:
        labels = backend.asarray(labels)
    with raises_like(r"Invalid labels dtype: '.*float64' \(expected integer"):
        nb.CrossEntropyLoss()(logits, labels)


def test_labels_wrong_count(backend, rng):
    logits = backend.asarray(rng.standard_normal((3, 4)))
    with raises_exactly("Invalid labels shape: (2,) (expected (3,)"):
        nb.CrossEntropyLoss()(logits, np.array([0, 1]))


def test_fit_with_out_of_range_labels(backend, rng):
    model = _model(backend)
    x, y = _data(rng)
    y[3] = 4
    with raises_exactly("Invalid label: 4 (allowed class indices: 0..3)"):
        nb.fit(model, nb.CrossEntropyLoss(), nb.SGD(model, lr=0.1), (x, y), epochs=1, batch_size=6)


@pytest.mark.parametrize("target_shape", [(5,), (4, 2), (3, 1)])
def test_mse_target_wrong_size(backend, rng, target_shape):
    pred = backend.asarray(rng.standard_normal((4, 1)))
    target = np.zeros(target_shape)
    expected = f"Invalid target shape: {target_shape} (expected (4, 1) to match)"
    with raises_exactly(expected):
        nb.MSELoss()(pred, target)


@pytest.mark.parametrize("bad", [-0.5, 1.5])
def test_bce_target_outside_unit_interval(backend, rng, bad):
    logits = backend.asarray(rng.standard_normal((3, 1)))
    target = np.array([[0.0], [bad], [1.0]])
    with raises_like(rf"Invalid target: {bad} \(binary targets lie in \[0, 1\]\)"):
        nb.BCEWithLogitsLoss()(logits, target)


# ---------------------------------------------------------------------- hyperparameters
@pytest.mark.parametrize("p", [1.0, -0.1, 1.5])
def test_dropout_probability(backend, p):
    allowed = "must be in [0, 1)"
    with raises_exactly(f"Invalid dropout probability: {p} ({allowed})"):
        _model(backend, dropout=p)
    with raises_exactly(f"Invalid dropout probability: {p} ({allowed})"):
        nb.Dropout(p, backend, backend.rng(0))


@pytest.mark.parametrize("lr", [0, 0.0, -1.0, float("nan"), float("inf")])
@pytest.mark.parametrize("optimizer", [nb.SGD, nb.Adam, nb.AdamW])
def test_learning_rate(backend, optimizer, lr):
    model = _model(backend)
    with raises_exactly(f"Invalid learning rate: {lr!r} (must be > 0)"):
        optimizer(model, lr=lr)


def test_unknown_activation(backend):
    allowed = "allowed: sigmoid, tanh, relu, leaky_relu, identity"
    with raises_exactly(f"Invalid activation: 'gelu' ({allowed})"):
        _model(backend, activation="gelu")
    with raises_exactly(f"Invalid activation: 'gelu' ({allowed})"):
        nb.Activation("gelu", backend)


@pytest.mark.parametrize("name", ["tpu", "NumPy", ""])
def test_unknown_backend(name):
    with raises_like(rf"Invalid backend: {name!r} \(allowed: numpy, cupy, auto"):
        nb.get_backend(name)


def test_unknown_dtype():
    with raises_like(r"Invalid dtype: 'float16' \(allowed: float32, float64\)"):
        nb.get_backend("numpy", "float16")


@pytest.mark.parametrize(
    ("kwargs", "what", "value"),
    [
        ({"hidden": [8, 0]}, "hidden size", "0"),
        ({"hidden": [-3]}, "hidden size", "-3"),
        ({"hidden": [2.5]}, "hidden size", "2.5"),
        ({"in_features": 0}, "in_features", "0"),
        ({"out_features": 0}, "out_features", "0"),
    ],
)
def test_layer_sizes(backend, kwargs, what, value):
    args = {"in_features": 3, "hidden": [4], "out_features": 2, **kwargs}
    with raises_exactly(f"Invalid {what}: {value} (must be an integer >= 1)"):
        nb.MLP(backend=backend, **args)


@pytest.mark.parametrize("penalty", ["l1", "l2"])
def test_negative_penalty(backend, penalty):
    with raises_like(rf"Invalid {penalty}: -0.1 \(must be a finite number >= 0\)"):
        _model(backend, **{penalty: -0.1})


# ---------------------------------------------------------------------- state dicts
def test_state_dict_missing_key(backend):
    model = _model(backend)
    before = model.state_dict()
    state = {k: v + 1.0 for k, v in before.items()}
    del state["output.bias"]
    with raises_like(r"Invalid state dict: \"missing key 'output.bias'\" \(expected"):
        model.load_state_dict(state)
    assert _same_state(before, model.state_dict())


def test_state_dict_unexpected_key(backend):
    model = _model(backend)
    before = model.state_dict()
    state = {k: v + 1.0 for k, v in before.items()}
    state["hidden.1.weight"] = np.zeros((4, 5))
    with raises_like(r"unexpected key 'hidden.1.weight'\" \(expected \['hidden"):
        model.load_state_dict(state)
    assert _same_state(before, model.state_dict())


def test_state_dict_wrong_shape_changes_nothing(backend):
    """The first entries are valid and different: a failed load must not have written them."""
    model = _model(backend, batchnorm=True)
    before = model.state_dict()
    state = {k: v + 1.0 for k, v in before.items()}
    state["output.weight"] = np.zeros((5, 4))  # transposed: (out, in) is (4, 5)
    expected = "Invalid state dict entry 'output.weight': 'shape (5, 4)' (expected (4, 5))"
    with raises_exactly(expected):
        model.load_state_dict(state)
    assert _same_state(before, model.state_dict())


def test_state_dict_running_stat_wrong_shape(backend):
    model = _model(backend, batchnorm=True)
    before = model.state_dict()
    state = dict(before)
    state["hidden.0.bn.running_var"] = np.ones(4)
    with raises_like(r"'hidden.0.bn.running_var': 'shape \(4,\)' \(expected \(5,\)"):
        model.load_state_dict(state)
    assert _same_state(before, model.state_dict())


# ---------------------------------------------------------------------- training loop
@pytest.mark.parametrize(
    ("kwargs", "what", "value"),
    [
        ({"epochs": 0}, "epochs", "0"),
        ({"epochs": -2}, "epochs", "-2"),
        ({"epochs": 1.5}, "epochs", "1.5"),
        ({"batch_size": 0}, "batch_size", "0"),
        ({"batch_size": True}, "batch_size", "True"),
        ({"patience": 0}, "patience", "0"),
    ],
)
def test_fit_counts(backend, rng, kwargs, what, value):
    model = _model(backend)
    before = model.state_dict()
    args = {"epochs": 2, "batch_size": 3, **kwargs}
    with raises_exactly(f"Invalid {what}: {value} (must be an integer >= 1)"):
        nb.fit(model, nb.CrossEntropyLoss(), nb.SGD(model, lr=0.1), _data(rng), **args)
    assert _same_state(before, model.state_dict())


def test_fit_rows_mismatch(backend, rng):
    model = _model(backend)
    x, y = _data(rng)
    expected = "Invalid number of target rows: 5 (expected 6, one per input row)"
    with raises_exactly(expected):
        nb.fit(
            model, nb.CrossEntropyLoss(), nb.SGD(model, lr=0.1), (x, y[:5]), epochs=1, batch_size=2
        )


def test_fit_empty_training_set(backend, rng):
    model = _model(backend)
    x, y = _data(rng)
    with raises_exactly("Invalid number of samples: 0 (need at least 1)"):
        nb.fit(
            model,
            nb.CrossEntropyLoss(),
            nb.SGD(model, lr=0.1),
            (x[:0], y[:0]),
            epochs=1,
            batch_size=2,
        )


def test_evaluate_bad_batch_size(backend, rng):
    model = _model(backend)
    with raises_exactly("Invalid batch_size: 0 (must be an integer >= 1)"):
        nb.evaluate(model, nb.CrossEntropyLoss(), *_data(rng), batch_size=0)


# ---------------------------------------------------------------------- batch normalization
def test_batchnorm_training_batch_of_one(backend, rng):
    model = _model(backend, batchnorm=True)
    x = rng.standard_normal((1, 3))
    expected = "Invalid batch size for batch normalization: 1 (training needs at least 2 rows)"
    with raises_exactly(expected):
        model.forward(x, training=True)
    model.forward(x, training=False)  # evaluation uses running statistics: one row is fine


@pytest.mark.parametrize(
    ("n", "batch_size", "what", "value"),
    [(6, 1, "batch_size", 1), (1, 4, "number of samples", 1)],
)
def test_batchnorm_fit_needs_two_rows(backend, rng, n, batch_size, what, value):
    """A batch size of 1 (or one sample) would leave batch normalization nothing to train on."""
    model = _model(backend, batchnorm=True)
    x, y = _data(rng, n=n)
    expected = f"Invalid {what}: {value} (batch normalization needs at least 2)"
    with raises_exactly(expected):
        nb.fit(
            model,
            nb.CrossEntropyLoss(),
            nb.SGD(model, lr=0.1),
            (x, y),
            epochs=1,
            batch_size=batch_size,
        )
