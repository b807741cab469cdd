"""The reference trainers build the same network and take the same step as their library's
own training loop. Skipped where torch / scikit-learn are not installed."""

from __future__ import annotations

import numpy as np
import pytest

import nnbench as nb
from nnbench.bench.target import time_to_accuracy
from tests.bench.test_runner import _task

SIZES = (6, 8, 5, 3)


def test_torch_mlp_loads_nnbench_weights_and_gives_its_logits():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from nnbench.reference.torch_mlp import build_mlp

    model = nb.MLP(SIZES[0], SIZES[1:-1], SIZES[-1], seed=3)
    x = np.random.default_rng(0).standard_normal((5, SIZES[0])).astype(np.float32)
    net = build_mlp(SIZES, model.state_dict())
    with torch.no_grad():
        theirs = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(theirs, model.forward(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adam-fused"])
def test_torch_step_trains(optimizer):
    pytest.importorskip("torch", reason="PyTorch is not installed")
    from nnbench.reference.torch_mlp import TorchStep

    step = TorchStep(SIZES, 16, optimizer, lr=0.05)
    first = step().item()
    for _ in range(20):
        last = step().item()
    assert last < first
    step.synchronize()


def test_torch_reaches_the_target_in_the_same_epochs_as_nnbench():
    """Same initial weights, same batch order: the same epoch crosses the target."""
    pytest.importorskip("torch", reason="PyTorch is not installed")
    import time

    from nnbench.reference.torch_mlp import train_to_accuracy

    task = _task(accuracy=0.95)
    model = nb.MLP(4, [8], 3, seed=0)
    state = model.state_dict()
    ours = time_to_accuracy(
        model, nb.CrossEntropyLoss(), nb.SGD(model, lr=0.05), task, batch_size=16, seed=4
    )
    _, epochs, acc = train_to_accuracy(
        (4, 8, 3),
        state,
        task.arrays(),
        target=0.95,
        batch_size=16,
        optimizer="sgd",
        lr=0.05,
        max_epochs=task.max_epochs,
        seed=4,
        clock=time.perf_counter,
    )
    assert ours["epochs_to_target"] is not None
    assert epochs == ours["epochs_to_target"]
    assert acc == pytest.approx(ours["target_acc"])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_sklearn_step_is_the_fit_loop_body(optimizer):
    """A matched-loop step moves the weights exactly as partial_fit's loop does on the same
    batch (both after the same history)."""
    pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    from nnbench.reference.sklearn_mlp import SklearnStep

    ours, theirs = SklearnStep(SIZES, 12, optimizer), SklearnStep(SIZES, 12, optimizer)
    assert ours.mode == "fit loop body"
    ours()
    theirs._partial_fit_step()
    for a, b in zip(
        ours.clf.coefs_ + ours.clf.intercepts_,
        theirs.clf.coefs_ + theirs.clf.intercepts_,
        strict=True,
    ):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
