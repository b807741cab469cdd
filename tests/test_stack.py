"""`nnbench.stack.fit_stack` against its contract, `fit_stack_reference` (one `nnbench.fit`
per member): every member's per-epoch records, outcome and final state must be its solo
run's, bit for bit, in float64 and float32 (the stack performs each member's solo
products and reductions in the same order). Each case trains a fresh copy of the same
members both ways and compares everything but the timings.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnbench as nb
from nnbench.backend.numpy_backend import NumpyBackend
from nnbench.backend.vector_stacked import VectorStackedOps
from nnbench.stack import Stack, fit_stack, fit_stack_reference
from nnbench.train import train_step
from tests.conftest import make_backend

TIMINGS = ("time/epoch_s", "throughput/samples_per_s")
DATASETS = pytest.importorskip(
    "sklearn.datasets", reason="scikit-learn's digits: pip install 'nnbench[test]'"
)
DIGITS = DATASETS.load_digits()
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


def both(make, loss_fn, trains, rtol=None, threads=1, **fit):
    """Train two fresh copies of the same members, stacked and one by one; compare them
    completely (bit for bit, or to ``rtol``) and return (stacked results, what on_end
    saw)."""
    got, want = {}, {}
    for runner, seen in ((fit_stack, got), (fit_stack_reference, want)):
        models, optimizers = make()
        seen["records"], seen["ends"] = [], {}

        def on_end(i, result, models=models, seen=seen):
            assert i not in seen["ends"], "on_end called twice for one member"
            seen["ends"][i] = (result.outcome, models[i].state_dict())

        def callback(i, record, seen=seen):
            seen["records"].append((i, record["epoch"]))

        own = {"threads": threads} if runner is fit_stack else {}
        seen["results"] = runner(
            models, loss_fn, optimizers, trains, callback=callback, on_end=on_end, **fit, **own
        )
        seen["states"] = [m.state_dict() for m in models]
        seen["optim"] = [_optimizer_state(o) for o in optimizers]
    _assert_same_runs(got, want, rtol)
    return got["results"], got["ends"]


def _optimizer_state(optimizer):
    state = {"step_count": optimizer.step_count}
    for name in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
        buffer = getattr(optimizer, name, None)
        if buffer is not None:
            state[name] = optimizer.backend.to_host(buffer)
    return state


def _assert_same_runs(got, want, rtol=None):
    for i, (g, w) in enumerate(zip(got["results"], want["results"], strict=True)):
        assert (g.outcome, g.epochs, g.diverged_at, g.stopped_early, g.best_epoch) == (
            w.outcome, w.epochs, w.diverged_at, w.stopped_early, w.best_epoch,
        ), f"member {i}: {g.message} != {w.message}"  # fmt: skip
        assert len(g.history) == len(w.history)
        for rg, rw in zip(g.history, w.history, strict=True):
            assert set(rg) == set(rw)
            for key in set(rw) - set(TIMINGS):
                where = f"member {i} epoch {rw['epoch']} {key}"
                if rtol is None:  # bit for bit; a diverging model may score NaN both ways
                    assert np.array_equal(rg[key], rw[key], equal_nan=True), where
                else:
                    assert rg[key] == pytest.approx(rw[key], rel=rtol, nan_ok=True), where
        _assert_equal_dicts(got["states"][i], want["states"][i], f"member {i} state", rtol)
        _assert_equal_dicts(got["optim"][i], want["optim"][i], f"member {i} optimizer", rtol)
        assert got["ends"][i][0] == w.outcome
        _assert_equal_dicts(got["ends"][i][1], want["states"][i], f"member {i} at on_end", rtol)
    # callbacks: each member's epochs in order, members in order within an epoch
    for i in range(len(want["results"])):
        mine = [e for j, e in got["records"] if j == i]
        assert mine == [e for j, e in want["records"] if j == i]
    epochs = [e for _, e in got["records"]]
    assert epochs == sorted(epochs)


def _assert_equal_dicts(a, b, what, rtol=None):
    assert a.keys() == b.keys(), what
    for key in a:
        if rtol is None:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{what}: {key}")
        else:
            np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=rtol, err_msg=key)


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


VALIDATIONS = {
    "distinct": [(XV, YV), (XV[::-1].copy(), YV[::-1].copy()), (XV * 0.5, YV)],  # one stack
    "one missing": [(XV, YV), None, (XV, YV)],  # each member scored alone
    "sizes differ": [(XV, YV), (XV[:50], YV[:50]), (XV, YV)],
    "a reversed view": [(XV, YV), (XV[::-1], YV[::-1]), (XV, YV)],  # read in place alone
}


def test_which_validation_sets_are_scored_as_one_stack():
    from nnbench.stack.evaluate import StackValidation

    be = NumpyBackend("float64")
    usable = {
        name: StackValidation(
            be,
            [
                None if v is None else (be.asarray(v[0]), be.asarray(v[1], be.int_dtype))
                for v in sets
            ],
        ).usable
        for name, sets in VALIDATIONS.items()
    }
    assert usable == {
        "distinct": True,
        "one missing": False,
        "sizes differ": False,
        "a reversed view": False,
    }


@pytest.mark.parametrize("validation", list(VALIDATIONS))
def test_seeds_and_a_training_set_per_member(be, validation):
    rng = np.random.default_rng(5)
    trains = [(X[idx], Y[idx]) for idx in (rng.permutation(len(X))[:200] for _ in range(3))]
    make = lambda: members(3, be, opt={"lr": 0.05, "momentum": [0.0, 0.9, 0.5]})  # noqa: E731
    both(make, CE, trains, seeds=[3, 1, 4], validations=VALIDATIONS[validation], **FIT)


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
        fit = dict(seeds=[0, 1], epochs=2, batch_size=16, validations=[(XV, YV)] * 2)
        both(make, CE, [(X[:40], Y[:40])] * 2, **fit)


@pytest.mark.parametrize("seed", range(12))
def test_random_configurations(seed):
    """Random mixtures of everything above (a fixed seed each): still bit for bit."""
    rng = np.random.default_rng(seed)
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    count = int(rng.integers(1, 6))
    per = lambda options: [pick(options) for _ in range(count)]  # noqa: E731
    be = NumpyBackend(pick(["float32", "float64"]), native=bool(rng.random() < 0.8))
    kind = pick(["sgd", "adam", "adamw"])
    opt = {"lr": list(10 ** rng.uniform(-3, 0.5, count)), "weight_decay": per([0.0, 1e-3])}
    if kind == "sgd":
        opt["momentum"] = per([0.0, 0.5, 0.9])
    else:
        opt["betas"] = per([(0.9, 0.999), (0.8, 0.99)])
    model = dict(
        activation=pick(["relu", "leaky_relu", "tanh", "sigmoid", "identity"]),
        batchnorm=bool(rng.random() < 0.3),
        hidden=pick([(16, 8), (12,), (), (20, 10, 6)]),
        dropout=per([0.0, 0.0, 0.2, 0.5]),
        l1=per([0.0, 1e-4]),
        l2=per([0.0, 1e-3]),
    )
    loss, out, target = pick(
        [(CE, 10, Y), (nb.MSELoss(), 1, X[:, :3] @ np.array([1.0, -2.0, 0.5]))]
    )
    fit = dict(
        seeds=per([0, 1, 2]),
        validations=[(XV, YV)] * count if loss is CE and rng.random() < 0.6 else None,
        epochs=3,
        batch_size=pick([7, 32, 64, 150]),
        patience=pick([None, None, 1]),
        threads=pick([1, 2]),
    )
    make = lambda: members(count, be, optimizer=kind, out=out, opt=opt, **model)  # noqa: E731
    both(make, loss, [(X, target)] * count, **fit)


def test_sixteen_members_by_default_threads():
    """fit_stack's default: two halves from 16 members on (with two cores)."""
    from nnbench.backend.stacked import auto_threads

    be = NumpyBackend("float32")
    assert auto_threads(be, 15) == 1 and auto_threads(be, 16) in (1, 2)
    lrs = list(np.logspace(-3, 0.5, 16))
    make = lambda: members(16, be, hidden=(8,), opt={"lr": lrs, "momentum": 0.9})  # noqa: E731
    both(make, CE, [(X, Y)] * 16, seeds=[0] * 16, threads=None, epochs=2, batch_size=64)


class VectorNumpy(VectorStackedOps, NumpyBackend):
    """The whole-stack steps CuPy runs (`VectorStackedOps`), on NumPy."""


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_the_vectorized_steps_a_gpu_runs(optimizer):
    """Not the solo kernels' bits, so compared to 1e-9 in float64."""
    be = VectorNumpy("float64")
    opt = {"lr": [0.01, 0.05, 0.1], "weight_decay": [0.0, 1e-2, 1e-3]}
    if optimizer == "sgd":
        opt["momentum"] = [0.0, 0.9, 0.5]
    kw = dict(optimizer=optimizer, dropout=[0.0, 0.1, 0.2], l2=[0.0, 1e-3, 0.0], opt=opt)
    make = lambda: members(3, be, **kw)  # noqa: E731
    fit = dict(seeds=[0, 1, 2], validations=[(XV, YV)] * 3, **FIT)
    both(make, CE, [(X, Y)] * 3, rtol=1e-9, **fit)


@pytest.mark.parametrize("case", ["divergence", "dropout and batch norm", "adam", "patience"])
def test_two_threads_give_the_same_numbers(be, case):
    """Halves of the stack stepping side by side (members diverging and stopping in
    either half, the halves rebuilt smaller)."""
    target = X[:, :3] @ np.array([1.0, -2.0, 0.5])
    lrs = [0.001, 30.0, 0.1, 1.0, 0.01]
    regression = dict(out=1, activation="leaky_relu", opt={"lr": lrs})
    regularized = dict(dropout=[0.0, 0.2, 0.0, 0.5, 0.1], batchnorm=True, opt={"lr": 0.05})
    adam = dict(optimizer="adam", opt={"lr": [1e-3, 1e-2, 3e-3, 1e-4, 3e-2]})
    sgd = dict(opt={"lr": [0.3, 0.01, 1.0, 0.1, 0.05], "momentum": 0.9})
    stopping = {"patience": 1, "validations": [(XV, YV)] * 5}
    cases = {
        "divergence": (regression, nb.MSELoss(), target, {}),
        "dropout and batch norm": (regularized, CE, Y, {}),
        "adam": (adam, CE, Y, {}),
        "patience": (sgd, CE, Y, stopping),
    }
    kw, loss, target, fit = cases[case]
    make = lambda: members(5, be, **kw)  # noqa: E731
    both(make, loss, [(X, target)] * 5, seeds=[0, 1, 2, 3, 4], threads=2, **fit, **FIT)


# ---------------------------------------------------------------------------- the stack
def test_members_leave_the_stack(monkeypatch):
    """Diverged and early-stopped members leave: the stack is rebuilt smaller."""
    import nnbench.stack.run as run_module

    sizes = []

    class Recording(Stack):
        def __init__(self, models, optimizers, loss_fn, **options):
            sizes.append(len(models))
            super().__init__(models, optimizers, loss_fn, **options)

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
