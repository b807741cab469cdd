"""`nnbench.stack.fit_stack` against its contract, `fit_stack_reference` (one `nnbench.fit`
per member): every member's per-epoch records, outcome and final state must be its solo
run's, bit for bit, in float64 and float32 (the stack performs each member's solo
products and reductions in the same order). Each case trains a fresh copy of the same
members both ways and compares everything but the timings.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

import nnbench as nb
from nnbench.backend.numpy_backend import NumpyBackend
from nnbench.stack import Stack, fit_stack, fit_stack_reference
from nnbench.train import train_step
from tests.conftest import make_backend

TIMINGS = ("time/epoch_s", "throughput/samples_per_s")
DIGITS = load_digits()
X, Y = (DIGITS.data / 16.0)[:240], DIGITS.target[:240]
XV, YV = (DIGITS.data / 16.0)[240:320], DIGITS.target[240:320]


def members(count, backend, *, optimizer="sgd", hidden=(16, 8), out=10, opt=None, **model):
    """``count`` fresh (models, optimizers): ``model`` and ``opt`` map a keyword to a
    value for every member or a list of per-member values."""
    opt = opt or {}

    def pick(values, i):
        return {k: v[i] if isinstance(v, list) else v for k, v in values.items()}

    models = [
        nb.MLP(64, list(hidden), out, seed=i, backend=backend, **pick(model, i))
        for i in range(count)
    ]
    kind = {"sgd": nb.SGD, "adam": nb.Adam, "adamw": nb.AdamW}[optimizer]
    optimizers = [kind(m, **pick(opt, i)) for i, m in enumerate(models)]
    return models, optimizers


def both(make, loss_fn, trains, **fit):
    """Train two fresh copies of the same members, stacked and one by one; compare them
    completely and return (stacked results, what on_end saw)."""
    got, want = {}, {}
    for runner, seen in ((fit_stack, got), (fit_stack_reference, want)):
        models, optimizers = make()
        seen["records"], seen["ends"] = [], {}

        def on_end(i, result, models=models, seen=seen):
            assert i not in seen["ends"], "on_end called twice for one member"
            seen["ends"][i] = (result.outcome, models[i].state_dict())

        def callback(i, record, seen=seen):
            seen["records"].append((i, record["epoch"]))

        seen["results"] = runner(
            models, loss_fn, optimizers, trains, callback=callback, on_end=on_end, **fit
        )
        seen["states"] = [m.state_dict() for m in models]
        seen["optim"] = [_optimizer_state(o) for o in optimizers]
    _assert_same_runs(got, want)
    return got["results"], got["ends"]


def _optimizer_state(optimizer):
    state = {"step_count": optimizer.step_count}
    for name in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
        buffer = getattr(optimizer, name, None)
        if buffer is not None:
            state[name] = optimizer.backend.to_host(buffer)
    return state


def _assert_same_runs(got, want):
    for i, (g, w) in enumerate(zip(got["results"], want["results"], strict=True)):
        assert (g.outcome, g.epochs, g.diverged_at, g.stopped_early, g.best_epoch) == (
            w.outcome, w.epochs, w.diverged_at, w.stopped_early, w.best_epoch,
        ), f"member {i}: {g.message} != {w.message}"  # fmt: skip
        assert len(g.history) == len(w.history)
        for rg, rw in zip(g.history, w.history, strict=True):
            assert set(rg) == set(rw)
            for key in set(rw) - set(TIMINGS):
                assert rg[key] == rw[key], f"member {i} epoch {rw['epoch']} {key}"
        _assert_equal_dicts(got["states"][i], want["states"][i], f"member {i} state")
        _assert_equal_dicts(got["optim"][i], want["optim"][i], f"member {i} optimizer")
        assert got["ends"][i][0] == w.outcome
        _assert_equal_dicts(got["ends"][i][1], want["states"][i], f"member {i} at on_end")
    # callbacks: each member's epochs in order, members in order within an epoch
    for i in range(len(want["results"])):
        mine = [e for j, e in got["records"] if j == i]
        assert mine == [e for j, e in want["records"] if j == i]
    epochs = [e for _, e in got["records"]]
    assert epochs == sorted(epochs)


def _assert_equal_dicts(a, b, what):
    assert a.keys() == b.keys(), what
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=f"{what}: {key}")


@pytest.fixture(params=["float64", "float32"])
def be(request):
    return NumpyBackend(request.param)


CE = nb.CrossEntropyLoss()
FIT = dict(epochs=3, batch_size=32)


# ---------------------------------------------------------------------------- parity
def test_lr_sweep_shares_one_batch_stream(be):
    """An lr sweep: one training set, one seed (each batch gathered once for all)."""
    lrs = [0.01, 0.1, 0.5, 30.0, 3000.0]
    make = lambda: members(5, be, opt={"lr": lrs, "momentum": 0.9})  # noqa: E731
    both(make, CE, [(X, Y)] * 5, seeds=[0] * 5, validations=[(XV, YV)] * 5, **FIT)


@pytest.mark.parametrize("activation", ["leaky_relu", "identity"])
def test_lr_grid_with_divergence(be, activation):
    """The large rates diverge at their solo epoch and step, and leave the stack."""
    target = X[:, :3] @ np.array([1.0, -2.0, 0.5])
    lrs = [0.001, 0.01, 0.1, 1.0, 3.0, 30.0]
    kw = dict(out=1, activation=activation, opt={"lr": lrs, "momentum": 0.9})
    make = lambda: members(6, be, **kw)  # noqa: E731
    fit = dict(seeds=[0, 1, 0, 1, 0, 1], validations=[(XV, XV[:, :1])] * 6)
    results, ends = both(make, nb.MSELoss(), [(X, target)] * 6, **fit, **FIT)
    outcomes = [r.outcome for r in results]
    assert outcomes[:3] == ["completed"] * 3 and "diverged" in outcomes[3:]
    assert all(ends[i][0] == r.outcome for i, r in enumerate(results))


def test_seeds_and_a_training_set_per_member(be):
    rng = np.random.default_rng(5)
    trains = [(X[idx], Y[idx]) for idx in (rng.permutation(len(X))[:200] for _ in range(3))]
    make = lambda: members(3, be, opt={"lr": 0.05, "momentum": [0.0, 0.9, 0.5]})  # noqa: E731
    both(make, CE, trains, seeds=[3, 1, 4], validations=[(XV, YV), None, (XV, YV)], **FIT)


def test_l1_l2_zero_and_nonzero(be):
    reg = {"l1": [0.0, 1e-3, 0.0, 1e-4], "l2": [0.0, 0.0, 1e-2, 1e-3]}
    make = lambda: members(4, be, opt={"lr": 0.05}, **reg)  # noqa: E731
    results, _ = both(make, CE, [(X, Y)] * 4, seeds=[0, 1, 2, 3], **FIT)
    assert ["train/penalty" in r.history[0] for r in results] == [False, True, True, True]


@pytest.mark.parametrize("batchnorm", [False, True])
def test_dropout_zero_mixed_with_positive(be, batchnorm):
    """Each member's masks come from its own model's generator; p = 0 has no dropout."""
    p = [0.0, 0.2, 0.0, 0.5, 0.5]
    make = lambda: members(5, be, dropout=p, batchnorm=batchnorm, opt={"lr": 0.05})  # noqa: E731
    both(make, CE, [(X, Y)] * 5, seeds=[0, 1, 2, 3, 4], validations=[(XV, YV)] * 5, **FIT)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid", "identity"])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_activations_with_and_without_batchnorm(be, activation, batchnorm):
    kw = dict(activation=activation, batchnorm=batchnorm, opt={"lr": [0.02, 0.2]})
    make = lambda: members(2, be, **kw)  # noqa: E731
    both(make, CE, [(X, Y)] * 2, seeds=[0, 1], epochs=2, batch_size=50)


@pytest.mark.parametrize(
    "opt",
    [
        {"lr": [0.05, 0.1, 0.02], "momentum": [0.0, 0.9, 0.5], "weight_decay": [0.0, 1e-2, 0.0]},
        {"lr": [0.05, 0.1, 0.02], "momentum": [0.9, 0.5, 0.8], "nesterov": True,
         "weight_decay": [1e-3, 0.0, 0.0]},
    ],
    ids=["momentum", "nesterov"],
)  # fmt: skip
def test_sgd_variants(be, opt):
    make = lambda: members(3, be, opt=opt)  # noqa: E731
    both(make, CE, [(X, Y)] * 3, seeds=[0, 0, 1], **FIT)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_adam_and_adamw_with_per_member_betas_and_decay(be, optimizer):
    opt = {
        "lr": [1e-3, 1e-2, 3e-3],
        "betas": [(0.9, 0.999), (0.8, 0.99), (0.95, 0.9)],
        "weight_decay": [0.0, 1e-2, 1e-3],
    }
    make = lambda: members(3, be, optimizer=optimizer, opt=opt)  # noqa: E731
    both(make, CE, [(X, Y)] * 3, seeds=[0, 1, 2], **FIT)


def test_patience_stops_members_one_by_one(be):
    lrs = [0.3, 0.01, 1.0, 0.1]
    make = lambda: members(4, be, opt={"lr": lrs, "momentum": 0.9})  # noqa: E731
    results, _ = both(
        make, CE, [(X, Y)] * 4, seeds=[0] * 4, validations=[(XV, YV)] * 4,
        epochs=12, batch_size=32, patience=1,
    )  # fmt: skip
    assert any(r.stopped_early for r in results)
    assert len({r.epochs for r in results}) > 1


def test_bce_and_mse(be):
    rng = np.random.default_rng(0)
    multi = (rng.random((len(X), 3)) < 0.4).astype(float)
    make = lambda: members(2, be, out=3, opt={"lr": [0.1, 0.5]})  # noqa: E731
    both(make, nb.BCEWithLogitsLoss(), [(X, multi)] * 2, seeds=[0, 1], **FIT)
    target = X[:, :3] @ np.array([1.0, -2.0, 0.5])
    make = lambda: members(3, be, out=1, opt={"lr": [0.01, 0.05, 5.0]})  # noqa: E731
    both(make, nb.MSELoss(), [(X, target)] * 3, seeds=[0, 1, 2], **FIT)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_rows_beyond_the_feature_major_layout_and_a_short_last_batch(be, batchnorm):
    """B > 128: row-major activations (per-member paths); 240 rows = 150 + 90."""
    opt = {"lr": [0.05, 0.1], "momentum": [0.9, 0.0]}
    make = lambda: members(2, be, batchnorm=batchnorm, opt=opt)  # noqa: E731
    both(make, CE, [(X, Y)] * 2, seeds=[0, 1], epochs=2, batch_size=150)


def test_numpy_without_c_kernels():
    be = NumpyBackend("float32", native=False)
    make = lambda: members(3, be, optimizer="adam", opt={"lr": [1e-3, 1e-2, 3e-2]})  # noqa: E731
    both(make, CE, [(X, Y)] * 3, seeds=[0, 1, 2], epochs=2, batch_size=32)
    make = lambda: members(2, be, opt={"lr": [0.1, 0.05], "momentum": [0.9, 0.0]})  # noqa: E731
    both(make, CE, [(X, Y)] * 2, seeds=[0, 1], epochs=2, batch_size=32)


def test_strict_backend_tiny_case():
    be = make_backend("strict", "float64")
    for batchnorm in (False, True):
        kw = dict(hidden=(4,), dropout=[0.0, 0.3], batchnorm=batchnorm, opt={"lr": [0.1, 0.05]})
        make = lambda kw=kw: members(2, be, **kw)  # noqa: E731
        both(make, CE, [(X[:40], Y[:40])] * 2, seeds=[0, 1], epochs=2, batch_size=16)


# ---------------------------------------------------------------------------- the stack
def test_members_leave_the_stack(monkeypatch):
    """Diverged and early-stopped members leave: the stack is rebuilt smaller."""
    import nnbench.stack.run as run_module

    sizes = []

    class Recording(Stack):
        def __init__(self, models, optimizers, loss_fn):
            sizes.append(len(models))
            super().__init__(models, optimizers, loss_fn)

    monkeypatch.setattr(run_module, "Stack", Recording)
    be, target = NumpyBackend("float64"), X[:, :3] @ np.array([1.0, -2.0, 0.5])
    kw = dict(out=1, activation="leaky_relu", opt={"lr": [0.01, 30.0, 0.1, 3.0]})
    models, optimizers = members(4, be, **kw)
    results = fit_stack(
        models, nb.MSELoss(), optimizers, [(X, target)] * 4, seeds=[0] * 4, epochs=3,
        batch_size=32,
    )  # fmt: skip
    assert [r.outcome for r in results] == ["completed", "diverged", "completed", "diverged"]
    assert sizes[0] == 4 and sizes[-1] == 2 and sizes == sorted(sizes, reverse=True)


def test_stack_step_is_each_members_train_step(be):
    models, optimizers = members(3, be, opt={"lr": [0.1, 0.01, 0.3], "momentum": [0.9, 0, 0.5]})
    solo, solo_opt = members(3, be, opt={"lr": [0.1, 0.01, 0.3], "momentum": [0.9, 0, 0.5]})
    stack = Stack(models, optimizers, CE)
    x = np.stack([X[i * 32 : (i + 1) * 32] for i in range(3)])
    y = np.stack([Y[i * 32 : (i + 1) * 32] for i in range(3)])
    for _ in range(2):
        losses = stack.step(be.asarray(x), be.asarray(y, be.int_dtype))
        assert losses.shape == (3,)
        for m in range(3):
            assert float(losses[m]) == train_step(solo[m], CE, solo_opt[m], x[m], y[m])
    stack.write_back()
    for m in range(3):
        _assert_equal_dicts(models[m].state_dict(), solo[m].state_dict(), f"member {m}")


def test_keyboard_interrupt_propagates_with_weights_written_back():
    be = NumpyBackend("float64")
    lrs = {"lr": [0.05, 0.1, 0.02]}
    models, optimizers = members(3, be, opt=lrs)

    def stop(i, record):
        if record["epoch"] == 2 and i == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_stack(models, CE, optimizers, [(X, Y)] * 3, seeds=[0, 1, 2], epochs=4,
                  batch_size=32, callback=stop)  # fmt: skip
    solo, solo_opt = members(3, be, opt=lrs)
    fit_stack_reference(solo, CE, solo_opt, [(X, Y)] * 3, seeds=[0, 1, 2], epochs=2, batch_size=32)
    for m in range(3):
        _assert_equal_dicts(models[m].state_dict(), solo[m].state_dict(), f"member {m}")


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda ms, os_: ms.__setitem__(2, nb.MLP(64, [16, 8], 10, activation="tanh")),
         r"^Invalid member 2's activation: 'tanh' \(expected 'relu' as member 0"),
        (lambda ms, os_: ms.__setitem__(1, nb.MLP(64, [16, 4], 10)),
         r"^Invalid member 1's hidden sizes: \[16, 4\] \(expected \[16, 8\]"),
        (lambda ms, os_: ms.__setitem__(1, nb.MLP(64, [16, 8], 10,
                                                  backend=NumpyBackend("float64"))),
         r"^Invalid member 1's dtype: 'float64' \(expected 'float32'"),
        (lambda ms, os_: os_.__setitem__(2, nb.Adam(ms[2])),
         r"^Invalid member 2's optimizer: 'Adam' \(expected 'SGD'"),
        (lambda ms, os_: ms.__setitem__(1, ms[0]),
         r"^Invalid member 1's model: 'the same object as member 0'"),
    ],
)  # fmt: skip
def test_members_that_cannot_share_a_stack(change, message):
    models, optimizers = members(3, NumpyBackend("float32"))
    change(models, optimizers)
    optimizers = [
        o if o.model is m else type(o)(m) for m, o in zip(models, optimizers, strict=True)
    ]
    with pytest.raises(ValueError, match=message) as info:
        fit_stack(models, CE, optimizers, [(X, Y)] * 3, seeds=[0, 1, 2], **FIT)
    assert "\n" not in str(info.value)


def test_bad_data_is_refused_before_training():
    models, optimizers = members(2, NumpyBackend("float32"))
    with pytest.raises(ValueError, match=r"^Invalid member 1's number of training rows: 200"):
        fit_stack(models, CE, optimizers, [(X, Y), (X[:200], Y[:200])], seeds=[0, 1], **FIT)
    with pytest.raises(ValueError, match=r"^Invalid label: 10 \(allowed class indices: 0..9\)"):
        fit_stack(models, CE, optimizers, [(X, Y), (X, Y + 1)], seeds=[0, 1], **FIT)
    with pytest.raises(ValueError, match=r"^Invalid number of seeds: 1 \(expected 2"):
        fit_stack(models, CE, optimizers, [(X, Y)] * 2, seeds=[0], **FIT)
    assert all(o.step_count == 0 for o in optimizers)
