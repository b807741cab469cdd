"""The reference backend: every primitive the network needs, written against the array API.

`Backend` uses only functions of the Python array API standard (2023.12 and later), reached
through ``self.xp``. It is the specification the fast backends are tested against: a subclass
may override any method for speed (in-place NumPy, fused CuPy kernels) but must return the
same numbers up to rounding.

Conventions shared by every method:
- Arrays are 2-D ``(batch, features)`` unless stated; vectors are ``(features,)``.
- ``out`` arguments are preallocated buffers owned by the caller. The method writes its
  result there and returns it. ``out`` may alias an input only where the docstring says so.
- Scalars that leave the device (losses, counts) are returned as Python numbers, except
  where a method takes a device buffer for them (``loss_out=``, ``out=``): it then writes
  the value there, as float64, and returns the buffer without synchronizing with the host.
  A training step captured as a CUDA graph uses these (see `record_step`).
- The flat-buffer design relies on basic slicing and ``reshape`` returning views, which
  NumPy, CuPy and array-api-strict all do; ``tests/backend`` pins it.
"""

from __future__ import annotations

import math

import numpy as np

from nnbench.backend.stacked import StackedOps
from nnbench.errors import invalid

DTYPES = ("float32", "float64")
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")
LEAKY_SLOPE = 0.01


class Backend(StackedOps):
    """Array primitives for one array namespace and one floating dtype.

    The base class is the reference implementation: plain array-API expressions that allocate
    freely and copy their result into ``out``. Its RNG draws on the host and transfers.
    """

    name = "base"

    def __init__(self, xp, dtype: str = "float32"):
        if dtype not in DTYPES:
            raise invalid("dtype", dtype, "allowed: " + ", ".join(DTYPES))
        self.xp = xp
        self.dtype_name = dtype
        self.dtype = getattr(xp, dtype)
        self.int_dtype = xp.int64

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dtype={self.dtype_name!r}, device={self.device!r})"

    # ------------------------------------------------------------------ device and memory
    @property
    def device(self) -> str:
        """A human-readable name of where the arrays live."""
        return "cpu"

    def kernels(self) -> str:
        """What computes the hot paths, for a run's environment record."""
        return "array API reference"

    def synchronize(self) -> None:
        """Block until queued work is done (a no-op on synchronous devices)."""

    def memory_in_use(self) -> int | None:
        """Bytes held by the backend's allocator, or None where nothing meaningful is known."""
        return None

    def memory_stats(self) -> dict:
        """The allocator's statistics in bytes or counts, by name (empty where it has none)."""
        return {}

    # ------------------------------------------------------------------ arrays in and out
    def asarray(self, x, dtype=None):
        """Move ``x`` (host NumPy, a scalar list or a backend array) here, as ``dtype``.

        ``dtype`` defaults to the backend's floating dtype; pass ``backend.int_dtype`` for
        class labels. Returns ``x`` itself when nothing needs converting.
        """
        return self.xp.asarray(x, dtype=self.dtype if dtype is None else dtype)

    def to_host(self, a) -> np.ndarray:
        """A NumPy copy of ``a``, safe to keep after the backend reuses its buffers."""
        return np.array(np.from_dlpack(a), copy=True)

    def empty(self, shape):
        return self.xp.empty(shape, dtype=self.dtype)

    def zeros(self, shape):
        return self.xp.zeros(shape, dtype=self.dtype)

    def activation_buffer(self, shape):
        """An uninitialized ``(batch, features)`` buffer for a layer's output or input
        gradient: `empty`, except that a backend may give it the memory layout its matrix
        products are fastest with (the values, shape and dtype are the same either way)."""
        return self.empty(shape)

    def copy(self, a):
        return self.xp.asarray(a, copy=True)

    def views(self, flat, shapes):
        """Split a 1-D ``flat`` buffer into consecutive reshaped views, one per shape."""
        out, start = [], 0
        for shape in shapes:
            size = math.prod(shape)
            out.append(self.xp.reshape(flat[start : start + size], shape))
            start += size
        return out

    def take_rows(self, x, indices, out=None):
        """Rows ``x[indices]`` (a mini-batch gather); ``indices`` is a host int array."""
        rows = self.xp.take(x, self.xp.asarray(indices, dtype=self.int_dtype), axis=0)
        return self._store(rows, out)

    def all_finite(self, a) -> bool:
        return bool(self.xp.all(self.xp.isfinite(a)))

    def min_max(self, a) -> tuple[float, float]:
        return float(self.xp.min(a)), float(self.xp.max(a))

    def abs_sum(self, a) -> float:
        """sum |a|"""
        return float(self.xp.sum(self.xp.abs(a)))

    def square_sum(self, a) -> float:
        """sum a^2"""
        return float(self.xp.sum(a * a))

    def multiply(self, a, b, out=None):
        """Elementwise a * b. ``out`` may alias ``a``."""
        return self._store(a * b, out)

    # ------------------------------------------------------------------ random numbers
    def rng(self, seed: int):
        """A generator for dropout masks, seeded with ``seed``."""
        return np.random.default_rng(seed)

    def uniform(self, rng, shape, out=None):
        """Uniform samples in [0, 1) drawn from ``rng``."""
        return self._store(self.asarray(rng.random(shape)), out)

    # ------------------------------------------------------------------ layers
    def linear(self, x, weight, bias, out=None, activation: str = "identity"):
        """y = f(x @ W.T + b), with W of shape (out_features, in_features) and f one of
        ACTIVATIONS (identity by default: the plain layer). A layer followed by its
        activation can ask for both at once, which a GPU backend fuses into one kernel."""
        y = x @ weight.T + bias
        if activation != "identity":
            y = self.activation(activation, y)
        return self._store(y, out)

    def bias_activation(self, y, bias, activation: str = "identity"):
        """y <- f(y + b) in place, the bias broadcast over rows: the second half of
        `linear`, after its matrix product."""
        return self._store(self.activation(activation, y + bias), y)

    def bias_activation_backward(self, dout, grad_bias, activation="identity", y=None):
        """The first half of `linear_backward`: dz = f'(z) * dout written over ``dout``
        (returned) and grad_bias = sum_rows(dz)."""
        if activation != "identity":
            dout = self.activation_backward(activation, y, dout, out=dout)
        grad_bias[...] = self.xp.sum(dout, axis=0)
        return dout

    def linear_backward(
        self, dout, x, weight, grad_weight, grad_bias, dx=None, activation="identity", y=None
    ):
        """Gradients of y = f(z), z = x @ W.T + b, from dout = dL/dy and the layer's output y
        (`linear` with the same ``activation``; not needed for identity).

        dz = f'(z) * dout   (`activation_backward`; written over ``dout``)
        dL/dW = dz.T @ x  -> grad_weight (out, in)
        dL/db = sum_rows(dz) -> grad_bias (out,)
        dL/dx = dz @ W    -> dx (batch, in), computed only when ``dx`` is given.
        """
        if activation != "identity":
            dout = self.activation_backward(activation, y, dout, out=dout)
        grad_weight[...] = dout.T @ x
        grad_bias[...] = self.xp.sum(dout, axis=0)
        if dx is None:
            return None
        dx[...] = dout @ weight
        return dx

    def activation(self, kind: str, z, out=None):
        """y = f(z) for f in ACTIVATIONS. ``out`` may alias ``z``."""
        xp = self.xp
        if kind == "sigmoid":
            # sigma(z) = 1 / (1 + e^-z), evaluated through e = exp(-|z|) <= 1 so that nothing
            # overflows: sigma(z) = 1 / (1 + e) for z >= 0 and e / (1 + e) for z < 0.
            e = xp.exp(-xp.abs(z))
            y = xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        elif kind == "tanh":
            y = xp.tanh(z)
        elif kind == "relu":
            y = xp.where(z > 0, z, 0.0)
        elif kind == "leaky_relu":
            y = xp.where(z > 0, z, LEAKY_SLOPE * z)
        elif kind == "identity":
            y = z
        else:
            raise invalid("activation", kind, "allowed: " + ", ".join(ACTIVATIONS))
        return self._store(y, out)

    def activation_backward(self, kind: str, y, dy, out=None):
        """dL/dz from the activation's output y = f(z) and dL/dy. ``out`` may alias ``dy``.

        sigmoid: f' = y (1 - y); tanh: f' = 1 - y^2; relu: f' = [y > 0];
        leaky_relu: f' = 1 if y > 0 else 0.01 (the sign of y is the sign of z); identity: 1.
        At z = 0 the ReLU family takes the left derivative, as PyTorch does.
        """
        xp = self.xp
        if kind == "sigmoid":
            dz = dy * y * (1.0 - y)
        elif kind == "tanh":
            dz = dy * (1.0 - y * y)
        elif kind == "relu":
            dz = xp.where(y > 0, dy, 0.0)
        elif kind == "leaky_relu":
            dz = xp.where(y > 0, dy, LEAKY_SLOPE * dy)
        elif kind == "identity":
            dz = dy
        else:
            raise invalid("activation", kind, "allowed: " + ", ".join(ACTIVATIONS))
        return self._store(dz, out)

    def dropout_mask(self, rng, p: float, shape, out=None):
        """Inverted-dropout mask: 1 / (1 - p) with probability 1 - p, else 0."""
        keep = self.uniform(rng, shape) >= p
        return self._store(self.xp.astype(keep, self.dtype) * (1.0 / (1.0 - p)), out)

    def batchnorm_train(self, x, gamma, beta, eps: float, xhat, out):
        """Batch normalization with batch statistics (training mode).

        mu = mean_rows(x); var = mean_rows((x - mu)^2) (biased); s = 1 / sqrt(var + eps)
        xhat = (x - mu) * s; y = gamma * xhat + beta.
        Writes ``xhat`` and ``out`` (which may alias ``x``); returns (mu, var, s) as vectors.
        """
        xp = self.xp
        mean = xp.mean(x, axis=0)
        centered = x - mean
        var = xp.mean(centered * centered, axis=0)
        inv_std = 1.0 / xp.sqrt(var + eps)
        xhat[...] = centered * inv_std
        out[...] = gamma * xhat + beta
        return mean, var, inv_std

    def batchnorm_eval(self, x, running_mean, running_var, gamma, beta, eps: float, out=None):
        """y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta."""
        scale = gamma / self.xp.sqrt(running_var + eps)
        return self._store((x - running_mean) * scale + beta, out)

    def batchnorm_backward(self, dy, xhat, inv_std, gamma, grad_gamma, grad_beta, dx):
        """Gradients of training-mode batch normalization over a batch of n rows.

        dL/dgamma = sum_rows(dy * xhat); dL/dbeta = sum_rows(dy)
        dL/dx = gamma * s / n * (n * dy - dL/dbeta - xhat * dL/dgamma)
        (the mean and variance depend on x, which gives the two subtracted terms).
        ``dx`` may alias ``dy``.
        """
        n = dy.shape[0]
        grad_gamma[...] = self.xp.sum(dy * xhat, axis=0)
        grad_beta[...] = self.xp.sum(dy, axis=0)
        dx[...] = (gamma * inv_std / n) * (n * dy - grad_beta - xhat * grad_gamma)
        return dx

    def moving_average(self, running, value, momentum: float) -> None:
        """running <- (1 - momentum) * running + momentum * value, in place."""
        running[...] = (1.0 - momentum) * running + momentum * value

    # ------------------------------------------------------------------ losses
    def cross_entropy(self, logits, labels, dlogits=None, loss_out=None):
        """Mean softmax cross-entropy of integer ``labels`` given ``logits`` (n, C).

        L = -1/n sum_i log softmax(z_i)[y_i], with log softmax(z) = z - m - log sum exp(z - m)
        and m = max(z) (so exp never overflows). dL/dz = (softmax(z) - onehot(y)) / n.
        Returns (L as a float, dlogits), or (``loss_out`` holding L, dlogits).
        """
        xp = self.xp
        n, classes = logits.shape
        shifted = logits - xp.max(logits, axis=1, keepdims=True)
        log_probs = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
        onehot = xp.astype(
            xp.expand_dims(labels, axis=1) == xp.arange(classes, dtype=labels.dtype),
            logits.dtype,
        )
        total = -xp.sum(log_probs * onehot)
        grad = self._store((xp.exp(log_probs) - onehot) / n, dlogits)
        return self._scalar(total, n, loss_out), grad

    def mse(self, pred, target, dpred=None, loss_out=None):
        """L = mean((pred - target)^2) over all elements; dL/dpred = 2 (pred - target) / N.
        ``loss_out``: as in `cross_entropy`."""
        diff = pred - target
        count = math.prod(pred.shape)
        grad = self._store(diff * (2.0 / count), dpred)
        return self._scalar(self.xp.sum(diff * diff), count, loss_out), grad

    def bce_with_logits(self, logits, target, dlogits=None, loss_out=None):
        """Binary cross-entropy on logits z with targets t in [0, 1], mean over elements.

        L = mean(max(z, 0) - z t + log(1 + exp(-|z|)))   (never overflows)
        dL/dz = (sigmoid(z) - t) / N. ``loss_out``: as in `cross_entropy`.
        """
        xp = self.xp
        count = math.prod(logits.shape)
        per_element = (
            xp.where(logits > 0, logits, 0.0) - logits * target + xp.log1p(xp.exp(-xp.abs(logits)))
        )
        grad = self._store((self.activation("sigmoid", logits) - target) / count, dlogits)
        return self._scalar(xp.sum(per_element), count, loss_out), grad

    def count_correct(self, logits, labels, out=None):
        """Rows whose largest logit is at the label (ties go to the first index): an int, or
        written to the one-element float64 device buffer ``out`` (returned)."""
        xp = self.xp
        predicted = xp.astype(xp.argmax(logits, axis=1), labels.dtype)
        return self._count(xp.sum(xp.astype(predicted == labels, self.int_dtype)), out)

    def count_correct_binary(self, logits, target, out=None):
        """Elements where [logit > 0] equals the 0/1 target; ``out`` as in `count_correct`."""
        xp = self.xp
        predicted = xp.astype(logits > 0, target.dtype)
        return self._count(xp.sum(xp.astype(predicted == target, self.int_dtype)), out)

    def record_step(self, stats, loss, correct, rows: int) -> None:
        """Book-keep one training step on the device, with no host synchronization (the steps
        of a CUDA graph cannot look at their loss). ``stats`` is a float64 vector of
        `STEP_STATS` entries, ``loss`` and ``correct`` one-element float64 buffers written by
        the loss and `count_correct` (``correct`` None for regression), ``rows`` the batch size:

            steps += 1
            if ok and loss is finite:  loss_sum += loss * rows; correct += correct;
                                       seen += rows; applied += 1
            elif ok:                   ok = 0; diverged_at = steps
        ``ok`` (1 until the first non-finite loss) is the gate of the optimizer step that
        follows, so the weights stay those of the last finite loss, as in eager training.
        """
        xp = self.xp
        ok = stats[0:1] > 0
        finite = xp.isfinite(loss)
        good = ok & finite
        goods = xp.astype(good, stats.dtype)
        steps = stats[4:5] + 1.0
        stats[4:5] = steps
        zero = xp.zeros_like(loss)
        stats[1:2] = stats[1:2] + xp.where(good, loss * float(rows), zero)
        if correct is not None:
            stats[2:3] = stats[2:3] + xp.where(good, correct, zero)
        stats[3:4] = stats[3:4] + goods * float(rows)
        stats[5:6] = xp.where(ok & ~finite, steps, stats[5:6])
        stats[6:7] = stats[6:7] + goods
        stats[0:1] = goods

    # ------------------------------------------------------------------ regularization
    def add_weight_penalty_grad(self, grad, weight, l1: float, l2: float) -> None:
        """grad += l1 * sign(W) + l2 * W  (the gradient of l1 sum|W| + l2/2 sum W^2)."""
        grad[...] = grad + l1 * self.xp.sign(weight) + l2 * weight

    # ------------------------------------------------------------------ optimizers
    def sgd_step(
        self, param, grad, buf, *, lr, momentum, nesterov, weight_decay, first, scratch, gate=None
    ):
        """One step of torch.optim.SGD (dampening 0) on flat buffers; see nnbench.optim.SGD.

        ``gate``: None, or a one-element float64 device buffer read on the device: 1 applies
        the step, 0 leaves ``param`` and ``buf`` as they are (see `record_step`).
        """
        g = grad + weight_decay * param if weight_decay else grad
        new_buf = buf
        if momentum:
            new_buf = g if first else momentum * buf + g
            g = g + momentum * new_buf if nesterov else new_buf
        new_param = param - lr * g
        if momentum:
            buf[...] = self._gated(gate, new_buf, buf)
        param[...] = self._gated(gate, new_param, param)

    def adam_step(
        self,
        param,
        grad,
        m,
        v,
        *,
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        decoupled,
        step,
        scratch,
        gate=None,
    ):
        """One step of torch.optim.Adam / AdamW on flat buffers; see nnbench.optim.Adam.

        ``step`` is the 1-based step number t. With a ``gate`` (as in `sgd_step`), ``step`` is
        instead a one-element float64 device buffer counting the steps applied so far: the
        call adds the gate to it and, when the gate is 1, applies step t = the new count, so
        t and the bias corrections 1 - beta^t never leave the device.
        """
        xp = self.xp
        p = param
        if gate is not None:
            step[...] = step + gate
            step = step + xp.astype(step == 0, step.dtype)  # t = 0 (skipped): no 0 / 0
        g = grad
        if weight_decay and decoupled:
            p = param * (1.0 - lr * weight_decay)
        elif weight_decay:
            g = grad + weight_decay * param
        new_m = beta1 * m + (1.0 - beta1) * g
        new_v = beta2 * v + (1.0 - beta2) * g * g
        if gate is None:
            bias1, root2 = 1.0 - beta1**step, math.sqrt(1.0 - beta2**step)
        else:
            bias1 = xp.astype(1.0 - beta1**step, param.dtype)
            root2 = xp.astype(xp.sqrt(1.0 - beta2**step), param.dtype)
        new_param = p - (lr / bias1) * new_m / (xp.sqrt(new_v) / root2 + eps)
        m[...] = self._gated(gate, new_m, m)
        v[...] = self._gated(gate, new_v, v)
        param[...] = self._gated(gate, new_param, param)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _store(value, out):
        if out is None:
            return value
        out[...] = value
        return out

    def _gated(self, gate, new, old):
        """``new``, or ``new`` where the device gate is 1 and ``old`` where it is 0."""
        if gate is None:
            return new
        return self.xp.where(gate > 0, new, old)

    def _scalar(self, total, count: int, out):
        """total / count as a Python float, or written to the float64 device buffer ``out``."""
        if out is None:
            return float(total) / count
        out[...] = self.xp.reshape(self.xp.astype(total, out.dtype), (1,)) / count
        return out

    def _count(self, count, out):
        """An integer count as a Python int, or written to the float64 device buffer ``out``."""
        if out is None:
            return int(count)
        out[...] = self.xp.reshape(self.xp.astype(count, out.dtype), (1,))
        return out


# The float64 vector of `Backend.record_step`: ok, loss_sum, correct, seen, steps,
# diverged_at, applied.
STEP_STATS = ("ok", "loss_sum", "correct", "seen", "steps", "diverged_at", "applied")
