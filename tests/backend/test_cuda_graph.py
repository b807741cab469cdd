"""The CUDA-graph bookkeeping and the device-side training step, on the CPU.

`StepGraphs` knows nothing about devices: its warm-up / capture / replay / fallback logic runs
with any capturer. The device-side step (`nnbench.graphed.GraphedTraining`: losses, counts and
the divergence gate in device buffers, gated optimizer steps) runs on NumPy, and must give
eager training's numbers exactly. `ReplayCapturer` models what a CUDA graph keeps: it records
the backend calls of one step with their arguments, and a replay re-runs those calls only,
so a value the host computes per step (a step count, a flag) stays frozen as in a graph, and
a call that returns a new array instead of writing into its preallocated buffer is caught.
On a GPU, tests/gpu runs the same comparisons with real graphs.
"""

from __future__ import annotations

import functools
import io
import re

import numpy as np
import pytest

import nnbench as nb
from nnbench.backend.base import Backend
from nnbench.backend.cuda_graph import HostCapturer, StepGraphs, capturer_for
from nnbench.backend.numpy_backend import NumpyBackend

# ---------------------------------------------------------------------- a replaying capturer
NOT_RECORDED = {
    "activation_buffer", "asarray", "copy", "device", "empty", "memory_in_use",
    "memory_stats", "rng", "synchronize", "take_rows", "to_host", "views", "zeros",
}  # fmt: skip


class RecordingBackend(NumpyBackend):
    """NumPy with a tape: while ``tape`` is a list, every outermost computing call is
    appended as (method, args, kwargs, result) after it ran."""

    def __init__(self, dtype="float64"):
        super().__init__(dtype)
        self.tape = None
        self._depth = 0


def _recorded(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self.tape is None or self._depth:
            return method(self, *args, **kwargs)
        self._depth += 1
        try:
            result = method(self, *args, **kwargs)
        finally:
            self._depth -= 1
        self.tape.append((method, args, kwargs, result))
        return result

    return wrapper


for _name in dir(Backend):
    if _name.startswith("_") or _name in NOT_RECORDED or not callable(getattr(Backend, _name)):
        continue
    setattr(RecordingBackend, _name, _recorded(getattr(NumpyBackend, _name)))


def _same(result, recorded) -> bool:
    if isinstance(recorded, tuple):
        return all(_same(r, c) for r, c in zip(result, recorded, strict=True))
    if isinstance(recorded, np.ndarray):
        return result is recorded
    return recorded is None or isinstance(recorded, (float, int))


class ReplayCapturer(HostCapturer):
    """`capture` runs the step once, recording its backend calls; the replay re-runs them
    with the recorded arguments and checks each writes into the buffer it wrote before."""

    def __init__(self, backend: RecordingBackend):
        self.backend = backend
        self.replays = 0

    def capture(self, key, step):
        be = self.backend
        be.tape = []
        try:
            step()
            tape = be.tape
        finally:
            be.tape = None

        def replay():
            self.replays += 1
            for method, args, kwargs, recorded in tape:
                result = method(be, *args, **kwargs)
                assert _same(result, recorded), f"{method.__name__} allocated a new result"

        return replay


# ---------------------------------------------------------------------- StepGraphs
class LogCapturer(HostCapturer):
    """Runs the steps and logs what happened to each, failing the captures it is told to."""

    def __init__(self, fail=()):
        self.log, self.fail = [], set(fail)

    def eager(self, key, step):
        self.log.append(("eager", key))
        step()

    def capture(self, key, step):
        if key in self.fail:
            raise NotImplementedError("calling cuBLAS API during stream capture")
        self.log.append(("capture", key))
        step()

        def replay():
            self.log.append(("replay", key))
            step()

        return replay


def test_step_graphs_warm_up_capture_then_replay_per_shape():
    capturer, runs = LogCapturer(), []
    graphs = StepGraphs(capturer)
    for key in (64, 64, 64, 7, 64, 7, 7):
        graphs.run(key, lambda key=key: runs.append(key))
    assert capturer.log == [
        ("eager", 64), ("capture", 64), ("replay", 64), ("eager", 7),
        ("replay", 64), ("capture", 7), ("replay", 7),
    ]  # fmt: skip
    assert runs == [64, 64, 64, 7, 64, 7, 7]  # every call ran the step exactly once
    assert graphs.captured == [7, 64] and graphs.failures == {}


def test_a_failed_capture_falls_back_to_eager_steps_and_says_why():
    capturer, log, runs = LogCapturer(fail={64}), io.StringIO(), []
    graphs = StepGraphs(capturer, log=log)
    for _ in range(4):
        graphs.run(64, lambda: runs.append(1))
    assert capturer.log == [("eager", 64)] * 4
    assert len(runs) == 4
    assert "NotImplementedError: calling cuBLAS" in graphs.failures[64]
    assert log.getvalue().count("CUDA graph capture failed for batch shape 64") == 1
    assert graphs.captured == []


def test_a_failed_capture_names_the_operation_of_the_step_that_failed():
    class Capturing(LogCapturer):
        capturing = False

        def capture(self, key, step):
            self.capturing = True
            try:
                step()
            finally:
                self.capturing = False

    def step():  # refused inside nnbench while capturing, as CuPy's matmul is
        if capturer.capturing:
            nb.get_backend("no-such-backend")

    capturer = Capturing()
    graphs = StepGraphs(capturer, log=io.StringIO())
    for _ in range(3):
        graphs.run(5, step)
    assert re.search(r" at nnbench/backend/__init__\.py:\d+ \(get_backend\)$", graphs.failures[5])
    assert capturer.log == [("eager", 5)] * 3  # warm-up, the failed capture's step, then eager


def test_cuda_graph_on_numpy_is_a_user_error_naming_the_key():
    with pytest.raises(ValueError, match=r"^Invalid trainer\.cuda_graph: True \(.*backend=cupy"):
        capturer_for(nb.get_backend("numpy"))
    model = nb.MLP(2, [3], 2, backend=nb.get_backend("numpy"))
    with pytest.raises(ValueError, match=r"trainer\.cuda_graph.*backend=cupy.*numpy"):
        nb.fit(
            model, nb.CrossEntropyLoss(), nb.SGD(model), (np.zeros((4, 2)), np.zeros(4, int)),
            epochs=1, batch_size=2, cuda_graph=True,
        )  # fmt: skip


def test_a_loss_without_a_device_form_is_refused():
    model = nb.MLP(2, [3], 2, backend=nb.get_backend("numpy"))

    def custom(logits, y):
        return 0.0, logits

    with pytest.raises(ValueError, match=r"^Invalid loss for trainer\.cuda_graph: 'function'"):
        nb.fit(
            model, custom, nb.SGD(model), (np.zeros((4, 2)), np.zeros(4, int)),
            epochs=1, batch_size=2, cuda_graph=HostCapturer(),
        )  # fmt: skip


# ---------------------------------------------------------------------- graphed == eager
OPTIMIZERS = {
    "sgd": lambda m: nb.SGD(m, lr=0.1),
    "momentum": lambda m: nb.SGD(m, lr=0.05, momentum=0.9, weight_decay=0.01),
    "nesterov": lambda m: nb.SGD(m, lr=0.05, momentum=0.9, nesterov=True),
    "adam": lambda m: nb.Adam(m, lr=0.01, weight_decay=0.05),
    "adamw": lambda m: nb.AdamW(m, lr=0.01),
}


def _data(task, n=203, features=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features))
    if task == "multiclass":
        return x, rng.integers(0, 3, n), nb.CrossEntropyLoss(), 3
    if task == "binary":
        return x, rng.integers(0, 2, n).astype(float), nb.BCEWithLogitsLoss(), 1
    return x, x[:, :2] @ np.array([[1.0], [-2.0]]), nb.MSELoss(), 1


def _fit(backend, task, optimizer, cuda_graph, epochs=3, batch_size=32, **model_options):
    x, y, loss_fn, outputs = _data(task)
    model = nb.MLP(5, [8, 6], outputs, seed=1, backend=backend, **model_options)
    opt = OPTIMIZERS[optimizer](model)
    result = nb.fit(
        model, loss_fn, opt, (x, y), validation=(x[:50], y[:50]), epochs=epochs,
        batch_size=batch_size, seed=3, cuda_graph=cuda_graph,
    )  # fmt: skip
    return result, model, opt


def _assert_same_run(eager, graphed):
    (r1, m1, o1), (r2, m2, o2) = eager, graphed
    assert (r1.outcome, r1.epochs, r1.diverged_at) == (r2.outcome, r2.epochs, r2.diverged_at)
    keys = [k for k in r1.history[0] if not k.startswith(("time/", "throughput/"))]
    for h1, h2 in zip(r1.history, r2.history, strict=True):
        assert {k: h1[k] for k in keys} == {k: h2[k] for k in keys}
    np.testing.assert_array_equal(m1.params, m2.params)
    assert o1.step_count == o2.step_count


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_graphed_fit_equals_eager_fit_with_real_replays(optimizer):
    """Dropout, L2, a short last batch (203 = 6 x 32 + 11): two graphs, replayed."""
    options = dict(dropout=0.2, l2=0.01)
    eager = _fit(nb.get_backend("numpy", "float64"), "multiclass", optimizer, False, **options)
    backend = RecordingBackend("float64")
    capturer = ReplayCapturer(backend)
    graphed = _fit(backend, "multiclass", optimizer, capturer, **options)
    _assert_same_run(eager, graphed)
    assert capturer.replays == 3 * 7 - 4  # every step but two warm-ups and two captures


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_graphed_fit_equals_eager_for_the_other_losses(task):
    eager = _fit(nb.get_backend("numpy", "float64"), task, "adam", False)
    backend = RecordingBackend("float64")
    _assert_same_run(eager, _fit(backend, task, "adam", ReplayCapturer(backend)))


def test_graphed_fit_with_batchnorm_equals_eager():
    """Batch normalization computes outside backend calls, so it runs on `HostCapturer`
    (the Python step each time); the lone last row (203 = 2 x 101 + 1) is skipped."""
    be = nb.get_backend("numpy", "float64")
    eager = _fit(be, "multiclass", "momentum", False, batch_size=101, batchnorm=True)
    graphed = _fit(be, "multiclass", "momentum", HostCapturer(), batch_size=101, batchnorm=True)
    _assert_same_run(eager, graphed)


def test_divergence_is_detected_on_the_device_at_the_same_step():
    """The update is skipped on the device from the first non-finite loss on, so the
    weights are those of the last finite loss, as in eager training."""
    be = nb.get_backend("numpy", "float64")
    x, y, loss_fn, _ = _data("regression")
    runs = []
    for cuda_graph in (False, ReplayCapturer(RecordingBackend("float64"))):
        backend = be if cuda_graph is False else cuda_graph.backend
        model = nb.MLP(5, [8], 1, seed=1, backend=backend)
        opt = nb.SGD(model, lr=5.0)
        result = nb.fit(
            model, loss_fn, opt, (1e3 * x, 1e3 * y), epochs=3, batch_size=16, seed=0,
            cuda_graph=cuda_graph,
        )  # fmt: skip
        runs.append((result, model, opt))
    (eager, m1, o1), (graphed, m2, o2) = runs
    assert eager.outcome == graphed.outcome == "diverged"
    assert eager.diverged_at == graphed.diverged_at
    np.testing.assert_array_equal(m1.params, m2.params)
    assert o1.step_count == o2.step_count


def test_the_replaying_capturer_catches_host_values_frozen_into_a_graph():
    """A control: an ungated optimizer step inside the captured step reads Python's step
    count, which a graph (and this capturer) freezes; the run then departs from eager."""
    backend = RecordingBackend("float64")
    x, y, loss_fn, _ = _data("multiclass")
    model = nb.MLP(5, [8], 3, seed=1, backend=backend)
    opt = nb.Adam(model, lr=0.01)
    xb, yb = backend.asarray(x[:32]), backend.asarray(y[:32], backend.int_dtype)

    def step():  # eager style: host step count (and a host-side finiteness check)
        logits = model.forward_buffered(xb, training=True, validate=False)
        _, grad = loss_fn.compute(backend, logits, yb)
        model.backward(grad)
        opt.step()

    graphs = StepGraphs(ReplayCapturer(backend))
    for _ in range(5):
        graphs.run(32, step)
    frozen = model.params.copy()

    reference = nb.MLP(5, [8], 3, seed=1, backend=nb.get_backend("numpy", "float64"))
    ref_opt = nb.Adam(reference, lr=0.01)
    for _ in range(5):
        nb.train_step(reference, loss_fn, ref_opt, x[:32], y[:32])
    assert not np.array_equal(frozen, reference.params)
