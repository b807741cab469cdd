"""The tracking agent: a companion process that does all of a run's MLflow work.

``python -m nnbench.tracking.agent`` reads one JSON command a line on stdin and answers the
few that need an answer on stdout. The training process never imports MLflow or matplotlib:
their import (about 1.5 s), opening the store (0.7 s, seconds for a fresh one) and drawing
the plots happen here, on another core, while the training process starts up and trains.

Commands (``op``) and answers:

- ``warm {uri}``: import MLflow and matplotlib and open the store, ahead of any run.
- ``start {uri, experiment, run_name, params, tags, parent}`` -> ``started {run_id}``.
- ``metrics {metrics: [[key, value, step, timestamp_ms], ...]}``: one ``log_batch``.
- ``tags {tags}``.
- ``draw {folder, history, title, trainer}``: draw the curves and write the environment
  manifest into the folder (`draw_artifacts`) while the training process writes its files.
- ``artifacts {folder, title}``: complete the folder (the decision boundary:
  `finish_artifacts`), log it, delete it.
- ``end {status}`` -> ``ended``.
- ``abandon {uri, run_id, message}`` -> ``ended``: a run whose agent died with it open
  (the warm agent, killed outright) ends FAILED with the message, if still RUNNING.

A batch of runs open at once (`nnbench.tracking.batch`, the members of a stacked sweep;
`nnbench.tracking.members` records them):

- ``start_batch {starts: [{uri, experiment, run_name, params, tags, parent}, ...]}`` ->
  ``started_batch {run_ids}`` (None for a member whose start failed).
- ``batch_metrics {metrics: [[run, [[key, value, step, timestamp_ms], ...]], ...]}``: every
  member's pending metrics in one command, one ``log_batch`` per run.
- ``tags``, ``draw``, ``artifacts``, ``end`` with ``run`` (the member's index): that
  member's run alone; its ``end`` is not answered.
- ``batch_end {status, tags}`` -> ``batch_ended``: the members still open get the tags and
  end with the status.
A member's failure answers ``error`` with its ``run`` and ends that run FAILED; the
others go on.

A failing command answers ``error {unavailable, message}``; after it the run still takes
metrics and tags, as far as the store does, and ``end`` ends it FAILED with that error.
When stdin closes with a run still open (the training process died, even by SIGKILL), the
run is ended KILLED with outcome ``interrupted``: no run is left RUNNING. A store that
refuses a run's end (a full disk) is asked again (`retry_unended`): by the warm agent every
second until it takes it, by an agent of one run once more as it exits.
Ctrl-C reaches only the training process (this one ignores SIGINT and has its own session),
which ends the run itself.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
import traceback

from nnbench.tracking.members import BATCH_OPS, Members
from nnbench.tracking.run import ERROR_TAG, OUTCOME_TAG, RunRecorder, close

QUIET_LOGGERS = ("mlflow", "alembic", "matplotlib", "urllib3")


class Agent:
    """Executes the commands of one training process, one run at a time. The stores'
    clients and the prepared state are shared by every agent of the process (the warm
    agent, `nnbench.tracking.daemon`, serves many training processes, one command at a
    time)."""

    clients: dict = {}  # store URI -> MlflowClient
    prepared = False
    # (store URI, recorder, status, tags) of the runs whose end the store refused
    unended: list = []

    def __init__(self, answer):
        self.answer = answer
        self.store: str | None = None  # the store of the open run (or of the last command)
        self.recorder = None
        self.error: str | None = None  # the first failure of the open run
        self.manifest: dict | None = None  # the environment, read at ``warm``
        self.members: Members | None = None  # a batch's runs (``start_batch``)

    def client(self, uri: str):
        """One client per store, opened (and the store created or checked) once, and again
        when its SQLite file was deleted or replaced since (a warm agent outlives stores)."""
        from nnbench.tracking import store

        known = self.clients.get(uri)
        if known is None or known[1] != _identity(store.sqlite_path(uri)):
            if known is not None:
                store.forget(uri)
            client = store.client(uri)
            self.clients[uri] = known = (client, _identity(store.sqlite_path(uri)))
        return known[0]

    def store_of(self, command: dict) -> str | None:
        """The store ``command`` works on: the one it names, else the open run's."""
        parent = command.get("parent") or {}
        uri = parent.get("uri") or command.get("uri")
        if command.get("op") == "start_batch" and command.get("starts"):
            start = command["starts"][0]
            uri = (start.get("parent") or {}).get("uri") or start.get("uri")
        if uri is not None and command.get("op") in ("warm", "start", "start_batch"):
            self.store = uri
        return uri or self.store

    def handle(self, command: dict) -> None:
        op = command.pop("op")
        if op in BATCH_OPS or "run" in command:
            self.batch(op, command)
            return
        if op == "warm":
            self.warm(**command)
            return
        if op == "start":
            self.recorder, self.error = None, None
        if op == "end":
            self.end(**command)
            return
        try:
            if self.error is None:
                getattr(self, op)(**command)
            elif self.recorder is not None and op in ("metrics", "tags"):
                self.keep(op, command)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.report(exc)

    def batch(self, op: str, command: dict) -> None:
        """A command of a batch of runs, to their `Members` (one set per connection)."""
        if self.members is None:
            self.members = Members(self)
        try:
            self.members.handle(op, command)
        except Exception as exc:  # a malformed command: said, and the members go on
            self.report(exc)

    def keep(self, op: str, command: dict) -> None:
        """After a failure, still record metrics and tags where the store takes them."""
        try:
            getattr(self, op)(**command)
        except Exception:
            pass

    def report(self, exc: Exception) -> None:
        from nnbench.errors import TrackingUnavailableError

        if not isinstance(exc, TrackingUnavailableError):
            traceback.print_exc(file=sys.stderr)
        unavailable = isinstance(exc, TrackingUnavailableError)
        message = str(exc) if unavailable else f"{type(exc).__name__}: {exc}"
        self.answer({"op": "error", "unavailable": unavailable, "message": message})

    def warm(self, uri: str) -> None:
        """Open the store (if it exists) and `prepare`, ahead of any run. Best effort: a
        store that cannot be opened is reported by ``start``, not here."""
        from nnbench.tracking import store

        try:
            path = store.sqlite_path(uri)
            if path is None or path.exists():
                self.client(uri)
            else:  # never create a store before a run asks for it (it may be tracking=none)
                import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
            self.prepare()
            from nnbench.manifest import environment_manifest

            self.manifest = environment_manifest()  # this connection's runs' environment
        except Exception:
            pass

    def prepare(self) -> None:
        """Once: what the artifacts of a run would otherwise pay for after its training
        (reading the installed packages, importing matplotlib, loading its fonts)."""
        if self.prepared:
            return
        from nnbench.manifest import environment_manifest
        from nnbench.tracking.artifacts import DRAWING
        from nnbench.tracking.curves import draw_curves

        environment_manifest()
        with DRAWING:
            draw_curves([{"epoch": 1, "train/loss": 1.0, "train/acc": 0.5}], io.BytesIO())
        Agent.prepared = True

    def start(self, uri, experiment, run_name, params, tags, parent) -> None:
        """Create the run, `prepare`, then answer: the training process waits for this
        answer before it trains, so that the agent's start-up runs beside the training
        process's own start-up but never beside its training (whose timing it records)."""
        from nnbench import tracking

        self.recorder = tracking.start_run(
            uri=uri,
            experiment=experiment,
            run_name=run_name,
            params=params,
            tags=tags,
            parent=parent,
            client=self.client(parent["uri"] if parent else uri),
        )
        self.prepare()
        self.answer({"op": "started", "run_id": self.recorder.run_id})

    def metrics(self, metrics: list) -> None:
        from mlflow.entities import Metric

        self.recorder.queue([Metric(k, v, stamp, step) for k, v, step, stamp in metrics])
        self.recorder.flush()

    def tags(self, tags: dict) -> None:
        self.recorder.set_tags(tags)

    def draw(self, folder: str, history: list, title: str, trainer: dict) -> None:
        self.recorder.draw_artifacts(
            folder, history=history, title=title, trainer=trainer, manifest=self.manifest
        )

    def artifacts(self, folder: str, title: str) -> None:
        self.recorder.log_artifacts(folder, title=title)

    def end(self, status: str) -> None:
        """End the open run (if it started) and answer ``ended``, whatever happened before.
        A run whose recording failed here ends FAILED with the error, unless the training
        process ended it otherwise (interrupted, failed itself). A store that refuses the
        end (a full disk) gets it again later (`retry_unended`)."""
        recorder, self.recorder, error, self.error = self.recorder, None, self.error, None
        if recorder is not None and error is not None and status == "FINISHED":
            status, tags = "FAILED", {OUTCOME_TAG: "failed", ERROR_TAG: error}
        else:
            tags = None
        try:
            if tags is not None:
                close(recorder, status, tags)
            elif recorder is not None:
                recorder.flush()
                recorder.end(status)
        except Exception as exc:
            self.end_later(recorder, status, tags, exc)
            self.report(exc)
        self.answer({"op": "ended"})

    def end_later(self, recorder, status: str, tags: dict | None, exc: Exception) -> None:
        """Keep the run whose end the store refused, for `retry_unended`."""
        if tags is None and status == "FINISHED":
            status = "FAILED"
            tags = {OUTCOME_TAG: "failed", ERROR_TAG: f"the store refused the run's end: {exc}"}
        elif tags is None:
            tags = {OUTCOME_TAG: "interrupted" if status == "KILLED" else "failed"}
        Agent.unended.append((self.store, recorder, status, tags))

    def abandon(self, uri: str, run_id: str, message: str) -> None:
        """``abandon {uri, run_id, message}`` -> ``ended``: the run's own agent died with
        the run open; end it FAILED with the message, unless it has ended already."""
        try:
            client = self.client(uri)
            if client.get_run(run_id).info.status == "RUNNING":
                recorder = RunRecorder(client, run_id)
                close(recorder, "FAILED", {OUTCOME_TAG: "failed", ERROR_TAG: message})
        finally:
            self.answer({"op": "ended"})

    def orphaned(self) -> None:
        """stdin closed: the training process is gone; end an open run KILLED, and every
        member of a batch still open."""
        if self.members is not None:
            self.members.orphaned()
        if self.recorder is not None:
            try:
                close(self.recorder, "KILLED", {OUTCOME_TAG: "interrupted"})
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                self.end_later(self.recorder, "KILLED", None, exc)
            self.recorder = None


def retry_unended(lock_for=None) -> None:
    """End the runs whose end a store refused (a full disk), where it takes them now; a
    store busy with another command (``lock_for(uri)`` held) is tried next time."""
    for entry in list(Agent.unended):
        uri, recorder, status, tags = entry
        lock = lock_for(uri) if lock_for is not None else None
        if lock is not None and not lock.acquire(blocking=False):
            continue
        try:
            close(recorder, status, tags)
            Agent.unended.remove(entry)
        except Exception:
            pass  # still refused: next time
        finally:
            if lock is not None:
                lock.release()


def _identity(path) -> tuple | None:
    """Which file ``path`` is now (None for a server's store or a missing file)."""
    if path is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


def serve(lines, answer) -> None:
    """Run the commands read from ``lines`` until they end."""
    agent = Agent(answer)
    try:
        for line in lines:
            if line.strip():
                agent.handle(json.loads(line))
    finally:
        agent.orphaned()
        retry_unended()  # an agent of one run: one more try before it exits


def quiet_libraries() -> None:
    """MLflow's defaults for a recording process (set before MLflow is imported) and its
    libraries' loggers at WARNING."""
    from nnbench.tracking.store import mlflow_defaults

    mlflow_defaults()
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    quiet_libraries()
    out = sys.stdout

    def answer(message: dict) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    sys.stdout = sys.stderr  # stray prints from libraries must not corrupt the answers
    serve(sys.stdin, answer)
    # Done, and nothing left to write: skip the interpreter's teardown of MLflow, SQLAlchemy
    # and matplotlib (a second or so), during which this process would still hold the
    # training process's stderr open, and anyone reading it to the end would wait.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
