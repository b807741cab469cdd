"""Stacked training: many members of one architecture trained as one batched model.

A *stack* is a list of solo members (an `nnbench.MLP` and its optimizer each) that share
every shape and kind (sizes, activation, batch normalization on or off, optimizer class,
batch size, epochs, backend, dtype) and differ only in values: learning rate, momentum,
weight decay, betas, L1/L2, dropout rate and seed (initial weights, dropout masks, batch
order, data split). `fit_stack` trains them together and gives each member exactly what
`nnbench.fit` gives it alone: the same per-epoch records, the same outcome, and its final
weights written back into its own model.

    import nnbench as nb
    from nnbench.stack import fit_stack

    models = [nb.MLP(64, [64], 10, seed=s) for s in range(4)]
    optimizers = [nb.SGD(m, lr=lr) for m, lr in zip(models, (0.01, 0.03, 0.1, 0.3))]
    results = fit_stack(models, nb.CrossEntropyLoss(), optimizers, [(x, y)] * 4,
                        epochs=20, batch_size=64, seeds=range(4))

Inside, the stack is one model: parameters, gradients and optimizer state are (M, ...)
arrays with a leading member axis, every matrix product is one batched ``matmul`` over the
members, and per-member hyperparameters are arrays. Members keep their solo numbers bit
for bit on NumPy: each member's products and reductions are its solo ones, in the same
order (`nnbench.backend.stacked`). A member that diverges, stops early or completes
leaves the stack, which goes on without it.

`Stack` is one training step of the whole stack, for benchmarks and custom loops:

    from nnbench.stack import Stack

    stack = Stack(models, optimizers, nb.CrossEntropyLoss())
    losses = stack.step(xb, yb)   # xb (M, B, 64), yb (M, B) labels: one step per member
    stack.write_back()            # each member's weights and state back into its model

`fit_stack_reference` is the same contract written as one `nnbench.fit` per member: the
oracle the stacked implementation is checked against.
"""

from nnbench.stack.fit import fit_stack
from nnbench.stack.reference import fit_stack_reference
from nnbench.stack.step import Stack

__all__ = ["Stack", "fit_stack", "fit_stack_reference"]
