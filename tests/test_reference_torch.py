"""nnbench against PyTorch: the same network, weights, batches and optimizer, step by step.

An equivalent torch model is built from torch.nn.Linear, BatchNorm1d (momentum 0.1, eps
1e-5) and activation modules, in float64 with one thread, and given nnbench's initial
weights through ``load_state_dict``. Both then train for 20 steps on the same fixed
sequence of random mini-batches. After every step the data losses agree to 1e-6 relative;
after training every weight, bias and batch-norm running statistic, the L1/L2 penalty and
the evaluation-mode outputs agree to 1e-6 relative (atol 1e-10). Dropout is left out: the
two libraries draw different masks. Parameters that batch norm makes inert are held at zero
(see `inert_keys`).

The last test prints the largest relative deviation seen over all cases (see
`relative_deviation`); it is shown without ``-s``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pytest

import nnbench as nb

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch)")
torch.set_num_threads(1)

IN, HIDDEN, BATCH, STEPS, POOL = 6, [8, 7], 16, 20, 64
RTOL, ATOL = 1e-6, 1e-10
DEVIATIONS: list[tuple[str, float]] = []  # (case, largest relative deviation seen)

TORCH_ACTIVATIONS = {
    "sigmoid": lambda: torch.nn.Sigmoid(),
    "tanh": lambda: torch.nn.Tanh(),
    "relu": lambda: torch.nn.ReLU(),
    "leaky_relu": lambda: torch.nn.LeakyReLU(negative_slope=0.01),
    "identity": lambda: torch.nn.Identity(),
}

# name -> (nnbench optimizer, torch optimizer), both from the model/parameters alone
OPTIMIZERS = {
    "sgd": (
        lambda m: nb.SGD(m, lr=0.1),
        lambda p: torch.optim.SGD(p, lr=0.1),
    ),
    "momentum": (
        lambda m: nb.SGD(m, lr=0.05, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    ),
    "nesterov_wd": (
        lambda m: nb.SGD(m, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    ),
    "adam": (
        lambda m: nb.Adam(m, lr=0.01),
        lambda p: torch.optim.Adam(p, lr=0.01),
    ),
    "adam_wd": (
        lambda m: nb.Adam(m, lr=0.01, weight_decay=0.05),
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.05),
    ),
    "adamw": (  # both libraries' default weight decay, 0.01
        lambda m: nb.AdamW(m, lr=0.01),
        lambda p: torch.optim.AdamW(p, lr=0.01),
    ),
}


@dataclass(frozen=True)
class Case:
    optimizer: str
    activation: str
    loss: str = "ce"  # "ce" (3 classes) or "mse" (2 real outputs)
    batchnorm: bool = False
    l1: float = 0.0
    l2: float = 0.0
    backend: str = "numpy"

    @property
    def id(self) -> str:
        parts = [self.optimizer, self.activation, self.loss]
        parts += ["bn"] if self.batchnorm else []
        parts += [f"l1={self.l1}"] if self.l1 else []
        parts += [f"l2={self.l2}"] if self.l2 else []
        parts += [self.backend] if self.backend != "numpy" else []
        return "-".join(parts)


CASES = [
    # every optimizer x several activations, cross-entropy, batch norm off and on
    Case("sgd", "sigmoid"),
    Case("sgd", "relu", batchnorm=True),
    Case("momentum", "tanh", batchnorm=True),
    Case("momentum", "identity"),
    Case("nesterov_wd", "relu"),
    Case("nesterov_wd", "sigmoid", batchnorm=True),
    Case("adam", "leaky_relu", batchnorm=True),
    Case("adam", "tanh"),
    Case("adam_wd", "identity"),
    Case("adam_wd", "leaky_relu", batchnorm=True),
    Case("adamw", "tanh"),
    Case("adamw", "relu", batchnorm=True),
    # mean squared error
    Case("sgd", "tanh", loss="mse"),
    Case("momentum", "leaky_relu", loss="mse"),
    Case("adam", "sigmoid", loss="mse", batchnorm=True),
    Case("adamw", "identity", loss="mse", batchnorm=True),
    # L1/L2 penalties on the Dense weights
    Case("momentum", "tanh", l1=1e-3, l2=1e-2),
    Case("adam", "relu", batchnorm=True, l1=1e-3, l2=1e-2),
    Case("sgd", "sigmoid", loss="mse", l2=0.1),
    # the reference backend on array-api-strict (slow: two cases only)
    Case("adam", "tanh", batchnorm=True, backend="strict"),
    Case("momentum", "relu", loss="mse", l1=1e-3, l2=1e-2, backend="strict"),
]


# ---------------------------------------------------------------------- the torch twin
class TorchBlock(torch.nn.Module):
    """Linear -> [BatchNorm1d] -> activation, as one nnbench hidden block."""

    def __init__(self, fan_in: int, size: int, activation: str, batchnorm: bool):
        super().__init__()
        self.linear = torch.nn.Linear(fan_in, size, dtype=torch.float64)
        self.bn = (
            torch.nn.BatchNorm1d(size, eps=1e-5, momentum=0.1, dtype=torch.float64)
            if batchnorm
            else None
        )
        self.act = TORCH_ACTIVATIONS[activation]()

    def forward(self, x):
        z = self.linear(x)
        if self.bn is not None:
            z = self.bn(z)
        return self.act(z)


class TorchMLP(torch.nn.Module):
    def __init__(self, out_features: int, activation: str, batchnorm: bool):
        super().__init__()
        widths = [IN, *HIDDEN]
        self.hidden = torch.nn.ModuleList(
            TorchBlock(a, b, activation, batchnorm) for a, b in zip(widths, HIDDEN, strict=False)
        )
        self.output = torch.nn.Linear(widths[-1], out_features, dtype=torch.float64)

    def forward(self, x):
        for block in self.hidden:
            x = block(x)
        return self.output(x)

    def weights(self):
        """The Linear weights (not biases, not batch-norm parameters): what L1/L2 penalize."""
        return [block.linear.weight for block in self.hidden] + [self.output.weight]


def torch_key(key: str) -> str:
    """nnbench ``hidden.{i}.weight`` / ``.bias`` is ``hidden.{i}.linear.*`` here; the
    batch-norm and output keys are spelled the same."""
    return re.sub(r"^(hidden\.\d+)\.(weight|bias)$", r"\1.linear.\2", key)


def torch_twin(model: nb.MLP, case: Case) -> TorchMLP:
    net = TorchMLP(model.out_features, case.activation, case.batchnorm)
    state = net.state_dict()
    ours = model.state_dict()
    for key, value in ours.items():
        assert torch_key(key) in state, key
        state[torch_key(key)] = torch.from_numpy(value.copy())
    expected = {k for k in state if not k.endswith("num_batches_tracked")}
    assert {torch_key(k) for k in ours} == expected
    net.load_state_dict(state)
    return net


# ---------------------------------------------------------------------- data
def make_data(loss: str):
    """A pool of samples with learnable targets, and a fixed sequence of mini-batch indices."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(POOL, IN))
    if loss == "ce":
        y = np.argmax(x @ rng.normal(size=(IN, 3)), axis=1).astype(np.int64)
    else:
        y = np.sin(x @ rng.normal(size=(IN, 2)))
    batches = [rng.choice(POOL, size=BATCH, replace=False) for _ in range(STEPS)]
    return x, y, batches


def torch_loss(case: Case, net: TorchMLP, logits, target):
    if case.loss == "ce":
        data = torch.nn.functional.cross_entropy(logits, target)
    else:
        data = torch.nn.functional.mse_loss(logits, target)
    return data, data + torch_penalty(case, net)


def torch_penalty(case: Case, net: TorchMLP):
    """l1 * sum|W| + (l2 / 2) * sum W^2 over the Linear weights."""
    total = torch.zeros((), dtype=torch.float64)
    for w in net.weights():
        total = total + case.l1 * w.abs().sum() + 0.5 * case.l2 * (w * w).sum()
    return total


# ---------------------------------------------------------------------- comparison
def relative_deviation(actual, expected) -> float:
    """max |actual - expected| / (|expected| + ATOL / RTOL): the elementwise relative error,
    with entries smaller than ATOL / RTOL measured against that floor instead. It is below
    RTOL exactly when ``assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)`` passes."""
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    return float(np.max(np.abs(actual - expected) / (np.abs(expected) + ATOL / RTOL)))


class Recorder:
    """Asserts elementwise closeness and remembers the largest relative deviation."""

    def __init__(self):
        self.largest = 0.0

    def check(self, actual, expected, what: str) -> None:
        self.largest = max(self.largest, relative_deviation(actual, expected))
        np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=what)


def inert_keys(case: Case) -> list[str]:
    """Parameters whose gradient is exactly 0 in exact arithmetic: a Dense bias feeding batch
    norm (which subtracts the batch mean), and with identity activations also a batch-norm
    shift feeding the next Dense and batch norm. They start at 0 and only collect rounding
    noise (~1e-17), which Adam divides by eps, moving them ~lr * 1e-9 per step, differently
    in each library; with L2 weight decay (g = wd * p) Adam amplifies that into an lr-sized
    random walk. Such noise says nothing about either library, so the test checks that these
    parameters stay below 1e-8 and resets them to 0 in both models after every step."""
    if not case.batchnorm:
        return []
    keys = [f"hidden.{i}.bias" for i in range(len(HIDDEN))]
    if case.activation == "identity":
        keys += [f"hidden.{i}.bn.bias" for i in range(len(HIDDEN) - 1)]
    return keys


def reset_inert(case: Case, model: nb.MLP, net: TorchMLP, step: int) -> None:
    keys = inert_keys(case)
    if not keys:
        return
    ours, theirs = model.state_dict(), dict(net.named_parameters())
    for key in keys:
        assert np.abs(ours[key]).max() < 1e-8, f"nnbench {key} moved at step {step}"
        with torch.no_grad():
            tensor = theirs[torch_key(key)]
            assert tensor.abs().max().item() < 1e-8, f"torch {key} moved at step {step}"
            tensor.zero_()
        ours[key] = np.zeros_like(ours[key])
    model.load_state_dict(ours)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_training_matches_torch(case: Case):
    if case.backend == "strict":
        pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    be = nb.get_backend(case.backend, dtype="float64")
    out = 3 if case.loss == "ce" else 2
    model = nb.MLP(
        IN,
        HIDDEN,
        out,
        activation=case.activation,
        batchnorm=case.batchnorm,
        l1=case.l1,
        l2=case.l2,
        seed=5,
        backend=be,
    )
    net = torch_twin(model, case)
    loss_fn = nb.CrossEntropyLoss() if case.loss == "ce" else nb.MSELoss()
    make_ours, make_theirs = OPTIMIZERS[case.optimizer]
    opt, topt = make_ours(model), make_theirs(net.parameters())
    x, y, batches = make_data(case.loss)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    rec = Recorder()

    net.train()
    for step, idx in enumerate(batches, start=1):
        ours = nb.train_step(model, loss_fn, opt, x[idx], y[idx])
        topt.zero_grad()
        data, total = torch_loss(case, net, net(tx[idx]), ty[idx])
        total.backward()
        topt.step()
        assert math.isfinite(ours)
        rec.check(ours, data.item(), f"data loss at step {step}")
        reset_inert(case, model, net, step)

    theirs = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    for key, value in model.state_dict().items():
        rec.check(value, theirs[torch_key(key)], f"{key} after {STEPS} steps")
    if case.l1 or case.l2:
        rec.check(model.penalty(), torch_penalty(case, net).item(), "penalty")
    net.eval()
    with torch.no_grad():
        expected = net(tx).numpy()
    rec.check(be.to_host(model.forward(x, training=False)), expected, "evaluation outputs")
    DEVIATIONS.append((case.id, rec.largest))


def test_zz_largest_relative_deviation(capsys):
    """Reports (and bounds) the largest relative deviation over all cases above."""
    if not DEVIATIONS:
        pytest.skip("no torch comparison ran in this session")
    case, largest = max(DEVIATIONS, key=lambda item: item[1])
    line = (
        f"nnbench vs torch: largest relative deviation {largest:.3e} "
        f"({case}; {len(DEVIATIONS)} cases, {STEPS} steps each)"
    )
    with capsys.disabled():  # shown without -s
        print("\n" + line)
    assert largest < RTOL
