"""The multilayer perceptron: hidden blocks Dense -> [BatchNorm] -> activation -> [Dropout],
then an output Dense producing logits."""

from __future__ import annotations

import math
import numbers

import numpy as np

from nnbench.errors import invalid
from nnbench.nn.activation import Activation, check_activation
from nnbench.nn.batchnorm import BatchNorm1d
from nnbench.nn.dense import Dense
from nnbench.nn.dropout import Dropout, check_dropout
from nnbench.nn.init import init_weight


def _check_size(what: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise invalid(what, value, "must be an integer >= 1")
    return int(value)


def _check_penalty(what: str, value) -> float:
    if not (isinstance(value, numbers.Real) and value >= 0 and math.isfinite(value)):
        raise invalid(what, value, "must be a finite number >= 0")
    return float(value)


class MLP:
    """A multilayer perceptron whose parameters live in one flat buffer.

    ``params`` and ``grads`` are 1-D backend arrays; every layer holds views into them, so an
    optimizer updates the whole network with a few whole-buffer operations. Batch-norm
    running statistics are state but not trainable and live outside the flat buffers.

    The objective minimized is data_loss + l1 * sum|W| + (l2 / 2) * sum W^2 over the Dense
    weights (not biases, not batch-norm parameters); ``backward`` adds the penalty's
    gradient and `penalty` returns its value.
    """

    def __init__(
        self,
        in_features: int,
        hidden=(),
        out_features: int = 1,
        activation: str = "relu",
        dropout: float = 0.0,
        batchnorm: bool = False,
        l1: float = 0.0,
        l2: float = 0.0,
        seed: int = 0,
        backend=None,
    ):
        from nnbench.backend import get_backend

        self.backend = be = backend if backend is not None else get_backend("numpy")
        self.in_features = _check_size("in_features", in_features)
        self.hidden = [_check_size("hidden size", h) for h in hidden]
        self.out_features = _check_size("out_features", out_features)
        self.activation = check_activation(activation)
        self.dropout = check_dropout(dropout)
        self.batchnorm = bool(batchnorm)
        self.l1 = _check_penalty("l1", l1)
        self.l2 = _check_penalty("l2", l2)
        self.seed = int(seed)
        self._named, self.layers = self._build(be)
        self._dense = [layer for _, layer in self._named if isinstance(layer, Dense)]
        self._allocate(be)
        self._init_weights(np.random.default_rng(self.seed))

    # ------------------------------------------------------------------ construction
    def _build(self, be):
        dropout_seed = int(np.random.SeedSequence([self.seed, 1]).generate_state(1)[0])
        rng = be.rng(dropout_seed)
        named, layers, width = [], [], self.in_features
        for i, size in enumerate(self.hidden):
            if self.batchnorm:  # Dense -> BatchNorm1d -> activation
                dense = Dense(width, size, be, input_grad=i > 0)
                block = [(f"hidden.{i}.", dense)]
                block.append((f"hidden.{i}.bn.", BatchNorm1d(size, be, inplace=True)))
                block.append(("", Activation(self.activation, be, inplace=True)))
            else:  # the activation folded into the Dense layer (one kernel on a GPU)
                dense = Dense(width, size, be, input_grad=i > 0, activation=self.activation)
                block = [(f"hidden.{i}.", dense)]
            if self.dropout > 0:
                block.append(("", Dropout(self.dropout, be, rng, inplace=True)))
            named += block
            width = size
        named.append(("output.", Dense(width, self.out_features, be, input_grad=bool(self.hidden))))
        layers = [layer for _, layer in named]
        return named, layers

    def _allocate(self, be):
        """One flat buffer for parameters and one for gradients; layers get views."""
        specs = [
            (prefix + name, shape)
            for prefix, layer in self._named
            for name, shape in layer.param_shapes()
        ]
        keys = [key for key, _ in specs]
        shapes = [shape for _, shape in specs]
        self.num_parameters = sum(math.prod(s) for s in shapes)
        self.params = be.zeros((self.num_parameters,))
        self.grads = be.zeros((self.num_parameters,))
        self._param_views = dict(zip(keys, be.views(self.params, shapes), strict=True))
        self._grad_views = dict(zip(keys, be.views(self.grads, shapes), strict=True))
        for prefix, layer in self._named:
            names = [name for name, _ in layer.param_shapes()]
            if names:
                layer.bind(
                    {n: self._param_views[prefix + n] for n in names},
                    {n: self._grad_views[prefix + n] for n in names},
                )

    def _init_weights(self, rng):
        """He or Xavier weights by the activation each Dense feeds; zero biases; BN gamma 1."""
        be = self.backend
        for prefix, layer in self._named:
            if isinstance(layer, Dense):
                follows = self.activation if prefix != "output." else "identity"
                w = init_weight(rng, layer.out_features, layer.in_features, follows)
                layer.weight[...] = be.asarray(w)
            elif isinstance(layer, BatchNorm1d):
                layer.weight[...] = be.asarray(np.ones(layer.features))

    def __repr__(self) -> str:
        sizes = "-".join(str(s) for s in [self.in_features, *self.hidden, self.out_features])
        extras = [f"activation={self.activation!r}"]
        if self.batchnorm:
            extras.append("batchnorm=True")
        if self.dropout:
            extras.append(f"dropout={self.dropout}")
        return f"MLP({sizes}, {', '.join(extras)}, backend={self.backend!r})"

    # ------------------------------------------------------------------ computation
    def forward(self, x, training: bool = False):
        """Logits for a batch ``x`` of shape (n, in_features), host NumPy or backend array.

        ``training=True`` uses batch statistics and draws dropout masks (and must precede
        `backward`); ``training=False`` is evaluation mode. Returns a new backend array.
        """
        return self.backend.copy(self.forward_buffered(x, training))

    def forward_buffered(self, x, training: bool = False, *, validate: bool = True):
        """`forward` without the final copy: the result is a model-owned buffer that the next
        forward pass overwrites. The training step uses this.

        ``validate=False`` skips `check_input`: ``x`` must then be a backend array of the
        model's dtype that has passed it already (`nnbench.fit` checks the whole dataset once
        and then trains unchecked)."""
        h = self.check_input(x) if validate else x
        for layer in self.layers:
            h = layer.forward(h, training)
        return h

    def backward(self, dlogits) -> None:
        """Back-propagate dL/dlogits from the last training forward into `grads`
        (overwriting them), adding the gradient of the L1/L2 penalty."""
        d = dlogits
        for layer in reversed(self.layers):
            d = layer.backward(d)
        if self.l1 or self.l2:
            for dense in self._dense:
                self.backend.add_weight_penalty_grad(
                    dense.grad_weight, dense.weight, self.l1, self.l2
                )

    def penalty(self) -> float:
        """l1 * sum|W| + (l2 / 2) * sum W^2 over the Dense weights."""
        be, total = self.backend, 0.0
        for dense in self._dense:
            if self.l1:
                total += self.l1 * be.abs_sum(dense.weight)
            if self.l2:
                total += 0.5 * self.l2 * be.square_sum(dense.weight)
        return total

    def check_input(self, x):
        """``x`` as a backend array of the model's dtype, after checking that it has shape
        (n, in_features) and only finite values; ValueError (naming the first bad entry)
        otherwise."""
        be = self.backend
        if not hasattr(x, "shape"):
            x = np.asarray(x, dtype=float)
        if len(x.shape) != 2 or x.shape[1] != self.in_features:
            raise invalid("input shape", tuple(x.shape), f"expected (batch, {self.in_features})")
        with np.errstate(over="ignore"):  # values beyond the dtype's range become inf
            x = be.asarray(x)
        if not be.all_finite(x):
            host = be.to_host(x)
            row, col = (int(i) for i in np.argwhere(~np.isfinite(host))[0])
            raise invalid(
                f"input at row {row}, column {col}",
                float(host[row, col]),
                "all features must be finite numbers, not NaN or infinity",
            )
        return x

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, np.ndarray]:
        """Host copies of every parameter and running statistic: ``hidden.{i}.weight``,
        ``hidden.{i}.bias`` (and ``hidden.{i}.bn.weight``, ``.bias``, ``.running_mean``,
        ``.running_var`` with batch normalization), then ``output.weight``, ``output.bias``."""
        return {key: self.backend.to_host(value) for key, value in self._state_views().items()}

    def gradients(self) -> dict[str, np.ndarray]:
        """Host copies of the last gradients, keyed like the trainable state-dict entries."""
        return {key: self.backend.to_host(value) for key, value in self._grad_views.items()}

    def load_state_dict(self, state: dict) -> None:
        """Copy values in; keys and shapes must match exactly (else ValueError, nothing
        changed)."""
        views = self._state_views()
        missing = [k for k in views if k not in state]
        unexpected = [k for k in state if k not in views]
        if missing:
            raise invalid("state dict", f"missing key {missing[0]!r}", f"expected {list(views)}")
        if unexpected:
            raise invalid(
                "state dict", f"unexpected key {unexpected[0]!r}", f"expected {list(views)}"
            )
        for key, view in views.items():
            shape = tuple(np.shape(state[key]))
            if shape != tuple(view.shape):
                raise invalid(
                    f"state dict entry {key!r}", f"shape {shape}", f"expected {tuple(view.shape)}"
                )
        for key, view in views.items():
            view[...] = self.backend.asarray(np.asarray(state[key]))

    def _state_views(self) -> dict:
        views = {}
        for prefix, layer in self._named:
            for name, _ in layer.param_shapes():
                views[prefix + name] = self._param_views[prefix + name]
            for name, value in layer.state().items():
                views[prefix + name] = value
        return views
