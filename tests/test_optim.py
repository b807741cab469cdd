"""Optimizer updates against the algorithms written out by hand in NumPy.

Each case builds a tiny MLP (3 -> [4] -> 2) only as the holder of the flat ``params`` buffer,
writes a different gradient into ``model.grads`` before each of several steps, and compares
``model.params`` after every step with the update computed here independently, following
the algorithm boxes of torch.optim.SGD / Adam / AdamW (amsgrad off, dampening 0).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnbench as nb

STEPS = 4
RTOL = 1e-12


def make_model(backend):
    return nb.MLP(3, [4], 2, activation="tanh", seed=7, backend=backend)


def gradients(size: int, steps: int = STEPS) -> list[np.ndarray]:
    """A different gradient each step, with mixed signs and magnitudes."""
    rng = np.random.default_rng(2024)
    return [rng.normal(scale=10.0 ** (t % 3 - 1), size=size) for t in range(steps)]


def run_optimizer(backend, make_opt, grads) -> tuple[np.ndarray, list[np.ndarray]]:
    """Start parameters and the parameters after each step of the optimizer under test."""
    model = make_model(backend)
    opt = make_opt(model)
    p0 = backend.to_host(model.params).copy()
    after = []
    for g in grads:
        model.grads[...] = backend.asarray(g)
        opt.step()
        after.append(backend.to_host(model.params).copy())
    return p0, after


# ---------------------------------------------------------------------- references by hand
def sgd_reference(p, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """g = grad + wd p; b = g at t = 1 else mu b + g; d = g + mu b (Nesterov) or b;
    p = p - lr d."""
    p, buf, out = p.copy(), None, []
    for grad in grads:
        g = grad + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
        out.append(p.copy())
    return out


def adam_reference(p, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    """m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    p = p - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps); weight decay either added to g
    (Adam, L2) or applied as p = p (1 - lr wd) before the update (AdamW, decoupled)."""
    b1, b2 = betas
    p, out = p.copy(), []
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, grad in enumerate(grads, start=1):
        g = grad
        if weight_decay and decoupled:
            p = p * (1 - lr * weight_decay)
        elif weight_decay:
            g = grad + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t)
        denom = np.sqrt(v) / math.sqrt(1 - b2**t) + eps
        p = p - lr * m_hat / denom
        out.append(p.copy())
    return out


def assert_steps_match(actual, expected):
    assert len(actual) == len(expected)
    for t, (a, e) in enumerate(zip(actual, expected, strict=True), start=1):
        np.testing.assert_allclose(a, e, rtol=RTOL, atol=0, err_msg=f"after step {t}")


# ---------------------------------------------------------------------- SGD
SGD_CASES = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.05, momentum=0.9),
    "nesterov": dict(lr=0.05, momentum=0.8, nesterov=True),
    "weight_decay": dict(lr=0.1, weight_decay=0.3),
    "momentum_weight_decay": dict(lr=0.05, momentum=0.9, weight_decay=0.1),
    "nesterov_weight_decay": dict(lr=0.02, momentum=0.5, nesterov=True, weight_decay=0.2),
}


@pytest.mark.parametrize("case", list(SGD_CASES))
def test_sgd_matches_hand_written_update(backend, case):
    kwargs = SGD_CASES[case]
    grads = gradients(make_model(backend).num_parameters)
    p0, after = run_optimizer(backend, lambda m: nb.SGD(m, **kwargs), grads)
    assert_steps_match(after, sgd_reference(p0, grads, **kwargs))


def test_sgd_momentum_constant_gradient_closed_form(backend):
    """With g = 1 every step, lr 0.1, mu 0.9: the buffer is 1, 1.9, 2.71, so the parameters
    move by 0.1, 0.29, 0.561 in total (PyTorch's convention: lr multiplies the buffer)."""
    size = make_model(backend).num_parameters
    ones = [np.ones(size)] * 3
    p0, after = run_optimizer(backend, lambda m: nb.SGD(m, lr=0.1, momentum=0.9), ones)
    for moved, p in zip([0.1, 0.29, 0.561], after, strict=True):
        np.testing.assert_allclose(p0 - p, moved, rtol=1e-12, atol=1e-14)


def test_sgd_nesterov_constant_gradient_closed_form(backend):
    """Nesterov with g = 1, lr 0.1, mu 0.9: d = g + mu b = 1.9, then 1 + 0.9 * 1.9 = 2.71."""
    size = make_model(backend).num_parameters
    ones = [np.ones(size)] * 2
    p0, after = run_optimizer(
        backend, lambda m: nb.SGD(m, lr=0.1, momentum=0.9, nesterov=True), ones
    )
    np.testing.assert_allclose(p0 - after[0], 0.19, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(p0 - after[1], 0.19 + 0.271, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------- Adam / AdamW
ADAM_CASES = {
    "adam": (nb.Adam, dict(lr=0.01), dict()),
    "adam_betas_eps": (nb.Adam, dict(lr=0.02, betas=(0.8, 0.99), eps=1e-3), dict()),
    "adam_l2": (nb.Adam, dict(lr=0.01, weight_decay=0.1), dict()),
    "adam_decoupled_flag": (
        nb.Adam,
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        dict(decoupled=True),
    ),
    "adamw": (nb.AdamW, dict(lr=0.01, weight_decay=0.2), dict(decoupled=True)),
    "adamw_default_decay": (nb.AdamW, dict(lr=0.05), dict(weight_decay=0.01, decoupled=True)),
}


@pytest.mark.parametrize("case", list(ADAM_CASES))
def test_adam_matches_hand_written_update(backend, case):
    cls, kwargs, extra = ADAM_CASES[case]
    grads = gradients(make_model(backend).num_parameters)
    p0, after = run_optimizer(backend, lambda m: cls(m, **kwargs), grads)
    ref_kwargs = {k: v for k, v in kwargs.items() if k != "decoupled_weight_decay"}
    assert_steps_match(after, adam_reference(p0, grads, **ref_kwargs, **extra))


def test_adam_constant_gradient_moves_lr_per_step(backend):
    """With a constant gradient the bias-corrected moments are exactly g and g^2, so each
    step moves every parameter by lr * g / (|g| + eps): about lr against the gradient's sign."""
    size = make_model(backend).num_parameters
    g = np.linspace(-2.0, 2.0, size)
    g[g == 0] = 0.5
    lr, eps = 0.01, 1e-8
    p0, after = run_optimizer(backend, lambda m: nb.Adam(m, lr=lr, eps=eps), [g] * 3)
    for t, p in enumerate(after, start=1):
        np.testing.assert_allclose(p0 - p, t * lr * g / (np.abs(g) + eps), rtol=1e-10)


def test_adamw_default_weight_decay_is_001(backend):
    opt = nb.AdamW(make_model(backend))
    assert opt.weight_decay == 0.01
    assert opt.decoupled_weight_decay is True


def test_adamw_decay_is_not_scaled_by_adam_denominator(backend):
    """A zero gradient leaves Adam's moments at zero, so AdamW shrinks p by (1 - lr wd)
    exactly, while Adam with L2 would take a full lr-sized step toward zero."""
    size = make_model(backend).num_parameters
    zeros = [np.zeros(size)] * 3
    p0, after = run_optimizer(backend, lambda m: nb.AdamW(m, lr=0.1, weight_decay=0.5), zeros)
    for t, p in enumerate(after, start=1):
        np.testing.assert_allclose(p, p0 * 0.95**t, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: nb.SGD(m, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
        lambda m: nb.Adam(m, lr=0.1, weight_decay=0.1),
        lambda m: nb.AdamW(m, lr=0.1),
    ],
    ids=["sgd", "adam", "adamw"],
)
def test_step_leaves_gradients_unchanged(backend, make):
    """torch.optim never writes into p.grad; neither may the fast paths here."""
    model = make_model(backend)
    opt = make(model)
    g = gradients(model.num_parameters, 1)[0]
    model.grads[...] = backend.asarray(g)
    opt.step()
    opt.step()
    np.testing.assert_array_equal(backend.to_host(model.grads), g)


# ---------------------------------------------------------------------- validation
def _model():
    return make_model(nb.get_backend("numpy", dtype="float64"))


INVALID = [
    ("lr_negative", lambda m: nb.SGD(m, lr=-1.0), "Invalid learning rate: -1.0", "> 0"),
    ("lr_zero", lambda m: nb.SGD(m, lr=0), "Invalid learning rate: 0", "> 0"),
    ("lr_nan", lambda m: nb.Adam(m, lr=float("nan")), "Invalid learning rate: nan", "> 0"),
    ("lr_string", lambda m: nb.SGD(m, lr="0.1"), "Invalid learning rate: '0.1'", "> 0"),
    ("adam_lr", lambda m: nb.Adam(m, lr=-0.5), "Invalid learning rate: -0.5", "> 0"),
    ("adamw_lr", lambda m: nb.AdamW(m, lr=0.0), "Invalid learning rate: 0.0", "> 0"),
    (
        "momentum_one",
        lambda m: nb.SGD(m, lr=0.1, momentum=1.0),
        "Invalid momentum value: 1.0",
        "[0, 1)",
    ),
    (
        "momentum_negative",
        lambda m: nb.SGD(m, lr=0.1, momentum=-0.1),
        "Invalid momentum value: -0.1",
        "[0, 1)",
    ),
    (
        "sgd_weight_decay",
        lambda m: nb.SGD(m, lr=0.1, weight_decay=-0.01),
        "Invalid weight_decay value: -0.01",
        ">= 0",
    ),
    (
        "adam_weight_decay",
        lambda m: nb.Adam(m, weight_decay=-1.0),
        "Invalid weight_decay value: -1.0",
        ">= 0",
    ),
    (
        "adamw_weight_decay",
        lambda m: nb.AdamW(m, weight_decay=-0.1),
        "Invalid weight_decay value: -0.1",
        ">= 0",
    ),
    (
        "beta2_one",
        lambda m: nb.Adam(m, betas=(0.9, 1.0)),
        "Invalid beta parameter at index 1: 1.0",
        "[0, 1)",
    ),
    (
        "beta1_negative",
        lambda m: nb.Adam(m, betas=(-0.1, 0.999)),
        "Invalid beta parameter at index 0: -0.1",
        "[0, 1)",
    ),
    (
        "adamw_beta1",
        lambda m: nb.AdamW(m, betas=(1.5, 0.999)),
        "Invalid beta parameter at index 0: 1.5",
        "[0, 1)",
    ),
    ("eps_negative", lambda m: nb.Adam(m, eps=-1e-8), "Invalid epsilon value: -1e-08", ">= 0"),
    (
        "nesterov_without_momentum",
        lambda m: nb.SGD(m, lr=0.1, nesterov=True),
        "Invalid nesterov: True",
        "momentum > 0",
    ),
]


@pytest.mark.parametrize(
    "make, prefix, allowed", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_hyperparameters_raise_pytorch_style_message(make, prefix, allowed):
    """ValueError("Invalid <what>: <repr(value)> (<what is allowed>)")."""
    with pytest.raises(ValueError) as info:
        make(_model())
    message = str(info.value)
    assert message.startswith(prefix + " ("), message
    assert allowed in message and message.endswith(")"), message


def test_valid_edge_values_are_accepted():
    """momentum 0, betas 0, eps 0 and weight decay 0 are inside the allowed ranges."""
    model = _model()
    nb.SGD(model, lr=1e-12, momentum=0.0, weight_decay=0.0)
    nb.Adam(model, lr=1.0, betas=(0.0, 0.0), eps=0.0, weight_decay=0.0)
    nb.AdamW(model, weight_decay=0.0)
