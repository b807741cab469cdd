"""Fully connected layer: z = W a + b for each sample, y = x @ W.T + b for a batch."""

from __future__ import annotations

from nnbench.nn.activation import check_activation
from nnbench.nn.buffers import BufferCache
from nnbench.nn.layer import Layer


class Dense(Layer):
    """``y = f(x @ W.T + b)`` with W of shape (out_features, in_features) and f the
    activation folded into the layer (identity by default: the plain linear layer).

    Backward (dout = dL/dy, shape (batch, out)): dz = f'(z) * dout (written in terms of y,
    as `Activation` does, into dout's buffer), then
        dL/dx = dz @ W ; dL/dW = dz.T @ x ; dL/db = dz.sum(0)
    The first layer of a network skips dL/dx (``input_grad=False``): nothing consumes it.
    Folding f in lets a backend add the bias and apply f in one pass, and compute f'(z) * dout
    and the bias gradient in another.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        backend,
        input_grad: bool = True,
        activation: str = "identity",
    ):
        self.in_features = in_features
        self.out_features = out_features
        self.backend = backend
        self.input_grad = input_grad
        self.activation = check_activation(activation)
        self._buffers = BufferCache(backend, activations=True)
        self._x = self._y = None

    def param_shapes(self):
        return [("weight", (self.out_features, self.in_features)), ("bias", (self.out_features,))]

    def bind(self, params, grads):
        self.weight, self.bias = params["weight"], params["bias"]
        self.grad_weight, self.grad_bias = grads["weight"], grads["bias"]

    def forward(self, x, training: bool):
        self._x = x  # (batch, in)
        out = self._buffers.get("out", (x.shape[0], self.out_features))
        kind = self.activation
        self._y = self.backend.linear(x, self.weight, self.bias, out=out, activation=kind)
        return self._y  # (batch, out)

    def backward(self, dy):
        dx = self._buffers.get("dx", self._x.shape) if self.input_grad else None
        return self.backend.linear_backward(
            dy,
            self._x,
            self.weight,
            self.grad_weight,
            self.grad_bias,
            dx,
            activation=self.activation,
            y=self._y,
        )
