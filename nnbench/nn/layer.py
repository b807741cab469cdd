"""What every layer offers the MLP that holds it."""

from __future__ import annotations


class Layer:
    """A layer maps a batch forward and a gradient backward; the mode is an argument.

    Trainable parameters are declared by `param_shapes` and handed back by `bind` as views
    into the model's flat parameter and gradient buffers, so layers never allocate them.
    ``backward`` overwrites the parameter gradients (it does not accumulate).
    """

    def param_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return []

    def bind(self, params: dict, grads: dict) -> None:
        """Receive views named as in `param_shapes`."""

    def state(self) -> dict:
        """Non-trainable state saved in the state dict (running statistics)."""
        return {}

    def forward(self, x, training: bool):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError
