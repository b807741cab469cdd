"""What members must share to train as one stack, checked up front: a member that differs
gets one line naming the first differing thing, the member and member 0's value."""

from __future__ import annotations

from nnbench.errors import invalid
from nnbench.nn.losses import Loss
from nnbench.nn.mlp import MLP
from nnbench.optim import SGD, Adam

SHARED = "a stack's members share every shape and kind"


def check_members(models, optimizers, loss_fn) -> None:
    """ValueError unless every member is an MLP of member 0's kind, with its own
    optimizer of member 0's kind, and ``loss_fn`` an `nnbench.nn.Loss`."""
    if len(models) < 1:
        raise invalid("number of members", len(models), "need at least 1")
    if len(optimizers) != len(models):
        raise invalid(
            "number of optimizers", len(optimizers), f"expected {len(models)}, one per model"
        )
    if not isinstance(loss_fn, Loss):
        raise invalid("loss_fn", type(loss_fn).__name__, "a stack needs an nnbench.nn.Loss")
    reference = _signature(models[0], optimizers[0])
    seen = {}
    for i, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
        if id(model) in seen:
            raise invalid(
                f"member {i}'s model",
                "the same object as member " + str(seen[id(model)]),
                "one model per member",
            )
        seen[id(model)] = i
        if optimizer.model is not model:
            raise invalid(
                f"member {i}'s optimizer",
                "one of another model",
                "each optimizer must be its member's",
            )
        for (what, value), (_, expected) in zip(
            _signature(model, optimizer), reference, strict=False
        ):
            if value != expected:
                raise invalid(
                    f"member {i}'s {what}", value, f"expected {expected!r} as member 0: {SHARED}"
                )


def check_lengths(members: int, **sequences) -> None:
    """Each named sequence (None skipped) has one entry per member."""
    for name, sequence in sequences.items():
        if sequence is not None and len(sequence) != members:
            raise invalid(f"number of {name}", len(sequence), f"expected {members}, one per member")


def check_rows(rows) -> None:
    """Every member's training set has member 0's number of rows (one step count)."""
    for i, n in enumerate(rows):
        if n != rows[0]:
            raise invalid(
                f"member {i}'s number of training rows",
                n,
                f"expected {rows[0]} as member 0: {SHARED}",
            )


def _signature(model, optimizer):
    """(what, value) pairs that must agree across members, in the order they are named."""
    kind = type(optimizer)
    be = getattr(model, "backend", None)
    pairs = [
        ("model type", type(model).__name__),
        ("backend", getattr(be, "name", None)),
        ("dtype", getattr(be, "dtype_name", None)),
    ]
    if not isinstance(model, MLP):
        return pairs
    pairs += [
        ("in_features", model.in_features),
        ("hidden sizes", list(model.hidden)),
        ("out_features", model.out_features),
        ("activation", model.activation),
        ("batchnorm", model.batchnorm),
        ("optimizer", kind.__name__),
        ("optimizer step count", optimizer.step_count),
    ]
    if kind is SGD:
        pairs.append(("nesterov", optimizer.nesterov))
    elif isinstance(optimizer, Adam):
        pairs.append(("decoupled_weight_decay", optimizer.decoupled_weight_decay))
    return pairs
