"""The one protocol of nnbench's benchmark workers, on the worker's side (the driving side is
`nnbench.bench.process.WorkerProcess`). Every worker speaks it: `nnbench.bench.worker` (the
comparison's steps), `nnbench.bench.measure` (a bench job's framework) and
`nnbench.bench.gpu_worker` (the GPU table's variants); each adds its own requests.

One JSON object a line. The first line announces the worker: ``{"ready": true, "env":
{...}}``, or ``{"unavailable": "<why>"}`` for a worker that cannot run on this machine, which
then exits with status 0. Then one answer line per request line, as the request's ``op``
says; an exception while answering becomes ``{"error": "...", "trace": "..."}`` and the
worker goes on. ``{"op": "exit"}``, or the end of the input, ends it.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable


def run(make_worker: Callable, unavailable: tuple = (), describe: Callable = str) -> int:
    """Make the worker and serve it; a worker that raises one of ``unavailable`` while it
    is made is announced so (``describe(exception)`` says why) instead. Returns the exit
    status: 0."""
    try:
        worker = make_worker()
    except unavailable as exc:
        print(json.dumps({"unavailable": describe(exc)}), flush=True)
        return 0
    serve(worker)
    return 0


def serve(worker, stdin=sys.stdin, stdout=sys.stdout) -> None:
    """Announce ``worker`` (its ``environment()``), then answer each request with its
    ``handle(request)`` until ``exit`` or the end of ``stdin``."""
    print(json.dumps({"ready": True, "env": worker.environment()}), file=stdout, flush=True)
    for line in stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("op") == "exit":
            break
        try:
            response = worker.handle(request)
        except Exception as exc:  # reported to the controller, which decides
            response = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        print(json.dumps(response), file=stdout, flush=True)
