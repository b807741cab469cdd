"""CUDA graphs of a training step: warm up once per batch shape, capture, then replay.

A CUDA graph records the kernels that a piece of code queues on a stream and replays them with
one launch, so a step of dozens of small kernels costs the CPU one launch. What replays is the
kernels with the arguments they were captured with, hence the rules for a captured step:

- every buffer stays where it was: the step reads its batch from fixed buffers and writes
  into preallocated ones (temporaries come from a memory pool private to the graph);
- host values are frozen: whatever changes from step to step (Adam's step count, the flag
  that skips the update after a non-finite loss, the dropout generator's counter) lives in
  device memory;
- nothing waits for the device: no ``float(loss)``; losses and counts go to device buffers
  (`nnbench.backend.base.Backend.record_step`) that the host reads once per epoch.

`StepGraphs` is the bookkeeping and knows nothing about devices: for each batch shape the
first call runs the step eagerly (a warm-up: kernels compile, buffers, cuBLAS state and lazily
created tables are allocated), the second captures it and launches the graph, later calls
launch the graph. A capture that fails (an operation a graph cannot hold) leaves that shape
on eager steps, with the reason in `StepGraphs.failures`. The device side is a *capturer*:
`CupyCapturer` for backend=cupy, and `HostCapturer`, which has no graph and re-runs the
step, so that the bookkeeping and the device-side step run on the CPU in tests.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback

from nnbench.errors import invalid


class HostCapturer:
    """No graph: every step runs eagerly on the host. `capture` runs the step and returns it
    as its own replay. For tests of the bookkeeping (and the device-side step) on NumPy."""

    name = "host"

    def running(self):
        """Context in which the steps of an epoch run (here: nothing to set up)."""
        return contextlib.nullcontext()

    def eager(self, key, step) -> None:
        step()

    def capture(self, key, step):
        step()
        return step

    def synchronize(self) -> None:
        """Nothing is queued."""


class CupyCapturer:
    """CUDA graphs with CuPy: one non-blocking stream for the warm-up, the capture and every
    replay, and one private memory pool per graph.

    The pool: a step that allocates a temporary during capture frees it again, and memory a
    graph uses must never be handed to anyone else while the graph lives (its replays write
    there). Each graph's warm-up and capture allocate from a pool of their own that nothing
    else draws from afterwards. The stream: capture is not possible on the legacy default
    stream, and a non-blocking stream does not synchronize with it implicitly, so `running`
    waits for the default stream's work (data uploads, initial weights) first, and
    `synchronize` waits for this stream.
    """

    name = "cuda"

    def __init__(self, cupy):
        self.cupy = cupy
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self._pools: dict = {}  # key -> MemoryPool; kept as long as the graphs live

    @contextlib.contextmanager
    def running(self):
        self.cupy.cuda.get_current_stream().synchronize()  # the default stream's work
        with self.stream:
            yield

    def _pool(self, key):
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = self.cupy.cuda.MemoryPool()
        return self.cupy.cuda.using_allocator(pool.malloc)

    def eager(self, key, step) -> None:
        with self.stream, self._pool(key):
            step()

    def capture(self, key, step):
        stream = self.stream
        with stream, self._pool(key):
            stream.begin_capture()
            try:
                step()
            except BaseException:
                _end_quietly(stream)
                raise
            graph = stream.end_capture()
        graph.launch(stream)  # capturing ran nothing: this is the step itself

        def replay():
            graph.launch(stream)

        replay.graph = graph  # keeps the graph alive with its replay
        return replay

    def synchronize(self) -> None:
        self.stream.synchronize()


def _where(exc: BaseException) -> str:
    """`` at nnbench/<file>:<line> (<function>)``: the innermost nnbench frame below this
    module that led to ``exc``, i.e. the operation of the step that the graph could not hold
    ('' when the step's own code is not nnbench's)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../nnbench
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename.startswith(package + os.sep) and f.filename != os.path.abspath(__file__)
    ]
    if not frames:
        return ""
    frame = frames[-1]
    short = os.path.relpath(frame.filename, os.path.dirname(package)).replace(os.sep, "/")
    return f" at {short}:{frame.lineno} ({frame.name})"


def _end_quietly(stream) -> None:
    """Leave capture mode after a failure inside it (the graph, if any, is dropped)."""
    try:
        stream.end_capture()
    except Exception:  # cudaErrorStreamCaptureInvalidated: the expected outcome
        pass


def capturer_for(backend):
    """The capturer for ``backend``: CUDA graphs need backend=cupy; anything else is a user
    error naming ``trainer.cuda_graph``."""
    if getattr(backend, "name", None) != "cupy":
        name = getattr(backend, "name", type(backend).__name__)
        raise invalid(
            "trainer.cuda_graph", True, f"CUDA graphs need backend=cupy; this run uses {name}"
        )
    return CupyCapturer(backend.xp)


class StepGraphs:
    """One captured graph per batch shape (``key``), after ``warmup`` eager runs of the step.

    `run(key, step)` runs ``step`` (a function of no arguments that reads and writes only
    device buffers fixed for that key) once, eagerly or from the graph. The step passed on
    later calls for the same key is ignored once its graph exists: the graph *is* the step.
    """

    def __init__(self, capturer, warmup: int = 1, log=None):
        self.capturer = capturer
        self.warmup = warmup
        self.failures: dict = {}  # key -> why its capture failed (it then runs eagerly)
        self.eager_runs: dict = {}  # key -> eager runs (warm-up and after a failure)
        self._replays: dict = {}  # key -> replay callable
        self._log = sys.stderr if log is None else log

    @property
    def captured(self) -> list:
        """The keys that replay a graph."""
        return sorted(self._replays)

    def running(self):
        return self.capturer.running()

    def synchronize(self) -> None:
        self.capturer.synchronize()

    def run(self, key, step) -> None:
        replay = self._replays.get(key)
        if replay is not None:
            replay()
            return
        if key in self.failures or self.eager_runs.get(key, 0) < self.warmup:
            self.eager_runs[key] = self.eager_runs.get(key, 0) + 1
            self.capturer.eager(key, step)
            return
        try:
            self._replays[key] = self.capturer.capture(key, step)
        except Exception as exc:  # the graph cannot hold some operation of the step
            self.failures[key] = f"{type(exc).__name__}: {exc}{_where(exc)}"
            print(
                f"nnbench: CUDA graph capture failed for batch shape {key} "
                f"({self.failures[key]}); those steps run eagerly",
                file=self._log,
            )
            self.eager_runs[key] = self.eager_runs.get(key, 0) + 1
            self.capturer.eager(key, step)  # nothing ran during the failed capture
