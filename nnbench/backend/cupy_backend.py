"""CuPy backend: NumPy's in-place paths run unchanged on the GPU (CuPy mirrors NumPy's ufunc
API, ``out=`` included), and fused kernels replace the hot ones (``fused=True``, the default).

A GPU step of a small MLP is launch-bound: each CuPy call costs 10-30 us of CPU time, while
an H100 does a B=1024 step's arithmetic in about 20 us. So the fused paths cut the calls:

- matrix products go to cuBLAS directly (`nnbench.backend._cublas`, capturable in CUDA
  graphs), the bias is added by one kernel and the bias gradient is one GEMV (no reduction
  temporaries);
- an activation, its backward, a dropout mask and each optimizer update are one elementwise
  kernel each (`nnbench.backend._cupy_kernels`), the optimizer over the whole flat buffer;
- softmax, cross-entropy, its gradient and the mean loss are one kernel, as is the count of
  right predictions;
- dropout masks come from a counter-based generator (Philox4x32-10) whose counter lives on
  the device, so a CUDA graph draws fresh masks on every replay.

Every fast path checks its operands (C-contiguous, the backend's dtype, shapes that fit) and
otherwise falls back to the NumPy path it overrides, or to the reference `Backend` where a
device buffer must receive a scalar (the NumPy path would synchronize). ``fused=False``
(or ``NNBENCH_NO_CUPY_KERNELS=1``) keeps the NumPy paths throughout: the "eager" baseline.
``tf32=True`` lets float32 products use TF32 tensor cores (cuBLAS math mode, and CuPy's
compute type for its own matmuls).
"""

from __future__ import annotations

import os

import numpy as np

from nnbench.backend._cublas import (
    bias_grad_plan,
    cublas,
    input_grad_plan,
    linear_plan,
    plannable,
    weight_grad_plan,
)
from nnbench.backend._cupy import import_cupy
from nnbench.backend._cupy_kernels import ACTIVATION_CODES, BLOCK, kernels
from nnbench.backend.base import Backend
from nnbench.backend.numpy_backend import NumpyBackend
from nnbench.backend.vector_stacked import VectorStackedOps

# Cross-entropy and counting run in one block of threads: beyond this many logits the
# NumPy path (several kernels, all of the GPU) is faster.
MAX_ONE_BLOCK_ELEMENTS = 1 << 22


class PhiloxGenerator:
    """A counter-based generator on the device: ``state`` = [seed, draws so far] (uint64).
    Each draw reads the counter in a kernel and then advances it by one on the device."""

    def __init__(self, xp, seed: int):
        self.state = xp.asarray([int(seed) % 2**64, 0], dtype=xp.uint64)

    def advance(self) -> None:
        self.state[1:] += 1


class CupyBackend(VectorStackedOps, NumpyBackend):
    name = "cupy"

    def __init__(self, dtype: str = "float32", fused: bool = True, tf32: bool = False):
        super().__init__(dtype, xp=import_cupy())
        self.fused = bool(fused) and not os.environ.get("NNBENCH_NO_CUPY_KERNELS")
        self.tf32 = bool(tf32)
        if self.tf32:
            enable_tf32(self.xp)
        self._blas = None
        self._blas_error: str | None = None
        self._kernels = None
        if self.fused:
            self._kernels = kernels(self.xp)
        # The gate of an ungated optimizer step, and the scalars of eager losses and counts.
        self._one = self.xp.ones(1, dtype=self.xp.float64)
        self._ones_cache: dict = {}
        self._scalars = self.xp.zeros(2, dtype=self.xp.float64)

    def __repr__(self) -> str:
        extras = "" if self.fused else ", fused=False"
        extras += ", tf32=True" if self.tf32 else ""
        return f"CupyBackend(dtype={self.dtype_name!r}{extras}, device={self.device!r})"

    # ------------------------------------------------------------------ device and memory
    @property
    def device(self) -> str:
        cupy = self.xp
        device_id = cupy.cuda.runtime.getDevice()
        props = cupy.cuda.runtime.getDeviceProperties(device_id)
        name = props["name"]
        return f"cuda:{device_id} ({name.decode() if isinstance(name, bytes) else name})"

    def kernels(self) -> str:
        return "fused CUDA kernels + cuBLAS" if self.fused else "CuPy ufuncs + cuBLAS"

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()

    def memory_in_use(self) -> int | None:
        return int(self.xp.get_default_memory_pool().used_bytes())

    def memory_stats(self) -> dict:
        pool = self.xp.get_default_memory_pool()
        pinned = self.xp.get_default_pinned_memory_pool()
        return {
            "pool_used_bytes": int(pool.used_bytes()),
            "pool_total_bytes": int(pool.total_bytes()),
            "pool_free_bytes": int(pool.free_bytes()),
            "pool_limit_bytes": int(pool.get_limit()),
            "pinned_free_blocks": int(pinned.n_free_blocks()),
        }

    def to_host(self, a) -> np.ndarray:
        return self.xp.asnumpy(a)

    def all_finite(self, a) -> bool:
        return bool(self.xp.isfinite(a).all())

    def take_rows(self, x, indices, out=None):
        indices = self.xp.asarray(indices)
        if out is None:
            return self.xp.take(x, indices, axis=0)
        return self.xp.take(x, indices, axis=0, out=out)  # cupy.take has no ``mode``

    # ------------------------------------------------------------------ random numbers
    def rng(self, seed: int):
        if self.fused:
            return PhiloxGenerator(self.xp, seed)
        return self.xp.random.default_rng(seed)

    def uniform(self, rng, shape, out=None):
        if isinstance(rng, PhiloxGenerator):
            out = self._out(shape, out)
            if _elementwise_ok(self.dtype, out):
                self._kernels.elementwise("uniform")(rng.state, out)
                rng.advance()
                return out
            return Backend._store(self.uniform(rng, shape), out)
        if out is None:
            return rng.random(shape, dtype=self.dtype)
        return rng.random(shape, dtype=self.dtype, out=out)

    def dropout_mask(self, rng, p: float, shape, out=None):
        if not isinstance(rng, PhiloxGenerator):
            return super().dropout_mask(rng, p, shape, out)
        out = self._out(shape, out)
        if not _elementwise_ok(self.dtype, out):
            return Backend._store(self.dropout_mask(rng, p, shape), out)
        scale = 1.0 / (1.0 - p)
        self._kernels.elementwise("dropout_mask")(rng.state, float(p), scale, out)
        rng.advance()
        return out

    # ------------------------------------------------------------------ layers
    def linear(self, x, weight, bias, out=None, activation: str = "identity"):
        blas = self._cublas()
        code = ACTIVATION_CODES.get(activation)
        if out is None and blas is not None:
            out = self.xp.empty((x.shape[0], weight.shape[0]), dtype=self.dtype)
        if blas is None or code is None or not _linear_ok(self.dtype, x, weight, bias, out):
            return super().linear(x, weight, bias, out, activation)
        blas.gemm(linear_plan(x, weight, out))
        if activation == "identity":
            self._kernels.elementwise("bias_add")(bias, out.shape[1], out)
        else:  # bias and activation in one pass
            self._kernels.elementwise("bias_activation")(bias, out.shape[1], code, out)
        return out

    def linear_backward(
        self, dout, x, weight, grad_weight, grad_bias, dx=None, activation="identity", y=None
    ):
        if activation != "identity":
            dout = self.activation_backward(activation, y, dout, out=dout)
        blas = self._cublas()
        arrays = (dout, x, weight, grad_weight, grad_bias) + (() if dx is None else (dx,))
        if blas is None or not _backward_ok(self.dtype, *arrays):
            return super().linear_backward(dout, x, weight, grad_weight, grad_bias, dx)
        blas.gemm(weight_grad_plan(dout, x, grad_weight))
        blas.gemv(bias_grad_plan(dout, self._ones(dout.shape[0]), grad_bias))
        if dx is None:
            return None
        blas.gemm(input_grad_plan(dout, weight, dx))
        return dx

    def activation(self, kind: str, z, out=None):
        code = ACTIVATION_CODES.get(kind) if self.fused else None
        if code is None:
            return super().activation(kind, z, out)
        out = self.xp.empty_like(z, order="C") if out is None else out
        if not _elementwise_ok(self.dtype, z, out):
            return super().activation(kind, z, out)
        if kind == "identity" and out is z:
            return out
        return self._kernels.elementwise("activation")(z, code, out)

    def activation_backward(self, kind: str, y, dy, out=None):
        code = ACTIVATION_CODES.get(kind) if self.fused else None
        if code is None:
            return super().activation_backward(kind, y, dy, out)
        out = self.xp.empty_like(dy, order="C") if out is None else out
        if not _elementwise_ok(self.dtype, y, dy, out):
            return super().activation_backward(kind, y, dy, out)
        return self._kernels.elementwise("activation_grad")(y, dy, code, out)

    # ------------------------------------------------------------------ losses
    def cross_entropy(self, logits, labels, dlogits=None, loss_out=None):
        if dlogits is None and self.fused:
            dlogits = self.xp.empty_like(logits, order="C")
        if not (self.fused and _rows_ok(self.dtype, logits, labels, dlogits, loss_out)):
            if loss_out is not None:  # device scalars: the reference, which never syncs
                return Backend.cross_entropy(self, logits, labels, dlogits, loss_out)
            return super().cross_entropy(logits, labels, dlogits)
        n, classes = logits.shape
        target = self._scalars[0:1] if loss_out is None else loss_out
        kernel = self._kernels.raw(f"nnb_cross_entropy_{self.dtype_name}")
        kernel((1,), (BLOCK,), (logits, labels, dlogits, target, np.int32(n), np.int32(classes)))
        return (float(target[0]) if loss_out is None else loss_out), dlogits

    def count_correct(self, logits, labels, out=None):
        if not (self.fused and _rows_ok(self.dtype, logits, labels, None, out)):
            if out is not None:
                return Backend.count_correct(self, logits, labels, out)
            return super().count_correct(logits, labels)
        n, classes = logits.shape
        target = self._scalars[1:2] if out is None else out
        kernel = self._kernels.raw(f"nnb_count_correct_{self.dtype_name}")
        kernel((1,), (BLOCK,), (logits, labels, target, np.int32(n), np.int32(classes)))
        return int(target[0]) if out is None else out

    def record_step(self, stats, loss, correct, rows: int) -> None:
        if not (self.fused and _scalar_buffers_ok(stats, loss, correct)):
            return Backend.record_step(self, stats, loss, correct, rows)
        with_correct = correct is not None
        args = (stats, loss, correct if with_correct else loss, np.float64(rows))
        args += (np.int32(with_correct),)
        self._kernels.raw("nnb_record_step")((1,), (1,), args)

    # ------------------------------------------------------------------ optimizers
    def sgd_step(
        self, param, grad, buf, *, lr, momentum, nesterov, weight_decay, first, scratch, gate=None
    ):
        hyper = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        arrays = (param, grad) if not momentum else (param, grad, buf)
        if not (self.fused and _elementwise_ok(self.dtype, *arrays) and _gate_ok(gate)):
            # Gated: the reference, whose gate stays on the device (NumPy's reads it).
            method = super().sgd_step if gate is None else self._reference_sgd
            return method(param, grad, buf, first=first, scratch=scratch, gate=gate, **hyper)
        gate = self._one if gate is None else gate
        if momentum:
            kernel = self._kernels.elementwise("sgd_momentum")
            args = (lr, momentum, weight_decay, int(nesterov), int(first))
            kernel(grad, gate, *args, param, buf)
        else:
            self._kernels.elementwise("sgd")(grad, gate, lr, weight_decay, param)

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
        hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)
        ok = self.fused and _elementwise_ok(self.dtype, param, grad, m, v) and _gate_ok(gate)
        if not ok:
            method = super().adam_step if gate is None else self._reference_adam
            return method(
                param,
                grad,
                m,
                v,
                decoupled=decoupled,
                step=step,
                scratch=scratch,
                gate=gate,
                **hyper,
            )
        if gate is None:
            gate, counter, t, on_device = self._one, self._one, float(step), 0
        else:
            self.xp.add(step, gate, out=step)  # the count of applied steps, on the device
            gate, counter, t, on_device = gate, step, 0.0, 1
        scalars = (lr, beta1, beta2, eps, weight_decay, int(decoupled))
        self._kernels.elementwise("adam")(grad, gate, counter, t, on_device, *scalars, param, m, v)

    def _reference_sgd(self, *args, **kwargs):
        return Backend.sgd_step(self, *args, **kwargs)

    def _reference_adam(self, *args, **kwargs):
        return Backend.adam_step(self, *args, **kwargs)

    # ------------------------------------------------------------------ helpers
    def _cublas(self):
        """The cuBLAS handle of the fused paths, or None (unfused, or cuBLAS could not be
        loaded through ctypes: then CuPy's matmul serves, and graphs cannot capture it)."""
        if not self.fused or self._blas_error is not None:
            return None
        if self._blas is None:
            try:
                self._blas = cublas(self.xp, self.tf32)
            except (OSError, RuntimeError, AttributeError) as exc:
                self._blas_error = f"{type(exc).__name__}: {exc}"
                return None
        return self._blas

    def _out(self, shape, out):
        return self.xp.empty(shape, dtype=self.dtype) if out is None else out

    def _ones(self, n: int):
        # Kept for good, apart from the scratch cache (which may be emptied): a CUDA graph
        # captured with this vector keeps reading its memory.
        ones = self._ones_cache.get(n)
        if ones is None:
            ones = self._ones_cache[n] = self.xp.ones(n, dtype=self.dtype)
        return ones


def enable_tf32(cupy) -> None:
    """Let CuPy's own float32 matmuls use TF32 (a process-wide CuPy setting)."""
    os.environ["CUPY_TF32"] = "1"  # read by CuPy before its first float32 product
    try:
        from cupy._core import _routines_linalg as linalg

        cupy._core.set_compute_type(cupy.float32, linalg.COMPUTE_TYPE_TF32)
    except (ImportError, AttributeError):  # private API moved: the variable still applies
        pass


# ---------------------------------------------------------------------- dispatch rules
# Plain functions of array attributes, so that the choice of path is tested on the CPU.
def _address(a) -> int:
    data = a.data
    return data.ptr if hasattr(data, "ptr") else a.__array_interface__["data"][0]


def _elementwise_ok(dtype, *arrays) -> bool:
    """One elementwise kernel serves: C-contiguous arrays of one shape and ``dtype``, any
    two of them either the very same memory (in place) or disjoint."""
    first = arrays[0]
    for a in arrays:
        if a.dtype != dtype or not a.flags.c_contiguous or a.shape != first.shape:
            return False
    spans = [(_address(a), _address(a) + a.nbytes) for a in arrays]
    for i, (start, end) in enumerate(spans):
        for other_start, other_end in spans[i + 1 :]:
            if start != other_start and start < other_end and other_start < end:
                return False
    return True


def _linear_ok(dtype, x, weight, bias, out) -> bool:
    """cuBLAS plus the bias kernel serve `linear`: 2-D operands that fit together, all
    plannable, the output apart from the inputs."""
    if x.ndim != 2 or weight.ndim != 2 or bias.ndim != 1 or out is None:
        return False
    if x.shape[1] != weight.shape[1] or bias.shape[0] != weight.shape[0]:
        return False
    if tuple(out.shape) != (x.shape[0], weight.shape[0]):
        return False
    if not plannable(dtype, x, weight, bias, out):
        return False
    return _elementwise_ok(dtype, out) and all(
        _address(out) != _address(a) for a in (x, weight, bias)
    )


def _backward_ok(dtype, dout, x, weight, grad_weight, grad_bias, dx=None) -> bool:
    """cuBLAS serves `linear_backward`: plannable operands whose shapes fit together."""
    if dout.ndim != 2 or x.ndim != 2 or weight.ndim != 2:
        return False
    rows, fan_out = dout.shape
    fan_in = x.shape[1]
    shapes_fit = (
        x.shape[0] == rows
        and tuple(weight.shape) == (fan_out, fan_in)
        and tuple(grad_weight.shape) == (fan_out, fan_in)
        and tuple(grad_bias.shape) == (fan_out,)
        and (dx is None or tuple(dx.shape) == (rows, fan_in))
    )
    arrays = (dout, x, weight, grad_weight, grad_bias) + (() if dx is None else (dx,))
    return shapes_fit and plannable(dtype, *arrays)


def _rows_ok(dtype, logits, labels, grad, scalar) -> bool:
    """The one-block row kernels serve: (n, C) C-contiguous logits of ``dtype``, n int64
    labels, a gradient buffer like the logits and apart from them, a float64 scalar buffer,
    and at most MAX_ONE_BLOCK_ELEMENTS logits."""
    if logits.ndim != 2 or logits.dtype != dtype or not logits.flags.c_contiguous:
        return False
    n, classes = logits.shape
    if n < 1 or n * classes > MAX_ONE_BLOCK_ELEMENTS:
        return False
    if labels.shape != (n,) or str(labels.dtype) != "int64" or not labels.flags.c_contiguous:
        return False
    if grad is not None and not (
        _elementwise_ok(dtype, logits, grad) and _address(grad) != _address(logits)
    ):
        return False
    return scalar is None or _scalar_buffers_ok(scalar)


def _scalar_buffers_ok(*buffers) -> bool:
    """Device scalars as the kernels take them: contiguous float64 (None allowed)."""
    return all(
        b is None or (str(b.dtype) == "float64" and b.flags.c_contiguous and b.size >= 1)
        for b in buffers
    )


def _gate_ok(gate) -> bool:
    return gate is None or (_scalar_buffers_ok(gate) and gate.size == 1)
