"""Many runs recorded at once through one connection to the tracking agent, in batches: the
members of a stacked sweep, every one its own MLflow run (a child of the sweep's parent run),
without paying per member what a single run pays.

    batch = RecorderBatch.start(starts)   # starts: AgentRecorder.start's keyword dicts
    rec = batch.recorders[i]              # member i's nnbench.tracking.Recorder
    rec.run_id; rec.log_epoch(record); rec.set_tags(tags); ...; rec.end(status)
    batch.close("KILLED")                 # the members still open end KILLED; waits

One command creates every member's run (`run_id` waits for its answer, once for all);
every member's metrics travel in one command per flush (at most every
``FLUSH_INTERVAL_S``, and at `RecorderBatch.flush` and `RecorderBatch.close`); a member's
`end` is queued and waits for nothing, so a member ending mid-stack stalls no other. The
agent draws and logs the artifacts in its own process, and a thread of ours writes the
commands, so that an agent busy with them never holds up the training. Errors the agent
reports are kept (`RecorderBatch.errors`, member by member) and the first one is raised by
`RecorderBatch.close`, which waits until the agent has done everything. The agent's side:
`nnbench.tracking.members`.
"""

from __future__ import annotations

import json
import queue
import threading
import time

from nnbench.errors import TrackingUnavailableError
from nnbench.tracking.agent_client import (
    AgentProcess,
    AgentStopped,
    TrackingError,
    abandon,
    warm_agent,
)
from nnbench.tracking.run import ERROR_TAG, FLUSH_INTERVAL_S, OUTCOME_TAG, finite

DRAW_APART_MIN = 48  # members from which the agent draws their curves in a process apart


class MemberRecorder:
    """Member ``index`` of a `RecorderBatch`: the `nnbench.tracking.Recorder` protocol, each
    call a command of the batch's connection (sent by the batch's thread)."""

    def __init__(self, batch: RecorderBatch, index: int):
        self.batch, self.index = batch, index
        self._ended = False

    @property
    def run_id(self) -> str:
        """The run's id (waits, once for the whole batch, for the agent to have created
        every member's run); a member whose run could not be created raises its error."""
        return self.batch.run_id(self.index)

    def log_metrics(self, metrics: dict, step: int) -> None:
        """Queue finite metrics for ``step``; a non-finite value is never logged as a number."""
        stamp = int(time.time() * 1000)
        self.batch.queue(self.index, [[k, v, step, stamp] for k, v in finite(metrics).items()])

    def log_epoch(self, record: dict) -> None:
        """`fit`'s per-epoch record as metrics at step = epoch."""
        self.log_metrics({k: v for k, v in record.items() if k != "epoch"}, record["epoch"])

    def flush(self) -> None:
        """Send every member's pending metrics (one command)."""
        self.batch.flush()

    def set_tags(self, tags: dict) -> None:
        self.batch.send("tags", run=self.index, tags={k: str(v)[:8000] for k, v in tags.items()})

    def draw_artifacts(self, folder, *, history: list, title: str, trainer: dict) -> None:
        """Have the agent draw the curves and write the manifest into ``folder``."""
        fields = {"folder": str(folder), "history": history, "title": title, "trainer": trainer}
        self.batch.send("draw", run=self.index, **fields)

    def log_artifacts(self, folder, *, title: str) -> None:
        """Hand ``folder`` over to the agent, which completes it, logs it and deletes it
        (after the metrics queued so far)."""
        self.batch.flush()
        self.batch.send("artifacts", run=self.index, folder=str(folder), title=title)

    def end(self, status: str) -> None:
        """End the run after what was queued; returns at once (`RecorderBatch.close` waits)."""
        if self._ended:
            return
        self._ended = True
        self.batch.flush()
        self.batch.send("end", run=self.index, status=status)


class RecorderBatch:
    """The runs of many members, open at the same time, recorded on one agent connection."""

    def __init__(self, channel, starts: list, flush_interval: float = FLUSH_INTERVAL_S):
        self.channel = channel
        self.starts = starts
        self.flush_interval = flush_interval
        self.recorders = [MemberRecorder(self, i) for i in range(len(starts))]
        self.errors: dict[int | None, Exception] = {}  # member (None: the batch) -> first
        self._first_error: Exception | None = None
        self._pending: dict[int, list] = {}
        self._last_flush = time.monotonic()
        self._run_ids: list | None = None
        self._restarted = False
        self._closed = False
        self._outbox: queue.Queue = queue.Queue()
        self._sender: threading.Thread | None = None
        self._stopped: AgentStopped | None = None  # the writing thread found the agent gone
        self.draw_apart = False

    @classmethod
    def start(
        cls, starts: list, *, flush_interval: float = FLUSH_INTERVAL_S, draw_apart=None
    ) -> RecorderBatch:
        """Create every member's run with one command (``starts``: dicts of the keyword
        arguments of `AgentRecorder.start`, all recording into one store). ``draw_apart``:
        the agent draws the members' curves in a process beside it (`nnbench.tracking.
        drawer`; it costs a process start, so by default from `DRAW_APART_MIN` members)."""
        stores = {store_of(start) for start in starts}
        if len(stores) > 1:
            raise ValueError(f"a batch records into one store, not {sorted(stores)}")
        batch = cls(_connect(), [dict(start) for start in starts], flush_interval)
        batch.draw_apart = len(starts) >= DRAW_APART_MIN if draw_apart is None else draw_apart
        batch._send_start()
        return batch

    @property
    def store(self) -> str | None:
        return store_of(self.starts[0]) if self.starts else None

    # ------------------------------------------------------------------ the run ids
    def _send_start(self) -> None:
        starts = [{"parent": None, **start} for start in self.starts]
        try:
            self.channel.send("start_batch", starts=starts, draw_apart=self.draw_apart)
        except AgentStopped:
            self._reconnect()

    def _reconnect(self) -> None:
        """Send the batch's start to a new agent (the one we had is gone: a warm agent
        that was stopping as we connected); once."""
        if self._restarted:
            raise self.channel.stopped()
        self._restarted = True
        self.channel.close()
        self.channel = _connect()
        self._send_start()

    def run_id(self, index: int) -> str:
        """Member ``index``'s run id, once the agent has created the batch's runs."""
        if self._run_ids is None:
            self._wait_started()
        run_id = self._run_ids[index]
        if run_id is None:
            raise self.errors.get(index) or TrackingError(f"member {index}: no run")
        return run_id

    def _wait_started(self) -> None:
        while self._run_ids is None:
            try:
                answer = self.channel.wait()
            except AgentStopped:
                self._reconnect()
                continue
            if answer["op"] == "started_batch":
                self._run_ids = answer["run_ids"]
            else:
                self._take(answer)
        self._sender = threading.Thread(target=self._send_all, daemon=True)
        self._sender.start()

    # ------------------------------------------------------------------ sending
    def send(self, op: str, **fields) -> None:
        """Queue a command for the batch's thread, which writes it to the agent. Encoded
        here: a value that JSON cannot hold raises in the caller, as `AgentRecorder`'s."""
        self._outbox.put(json.dumps({"op": op, **fields}).encode() + b"\n")

    def _send_all(self) -> None:
        """The batch's thread: write the queued commands in order until `close`; once the
        agent is gone, the rest is dropped (`close` says so)."""
        while (data := self._outbox.get()) is not None:
            if self._stopped is None:
                try:
                    self.channel._write(data)
                except (OSError, ValueError):
                    self._stopped = self.channel.stopped()

    def queue(self, index: int, entries: list) -> None:
        """Member ``index``'s metrics, sent with the others' at the next flush."""
        if entries:
            self._pending.setdefault(index, []).extend(entries)
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        """Every member's pending metrics in one command; errors reported so far kept."""
        self._collect()
        if self._pending:
            pending, self._pending = self._pending, {}
            self.send("batch_metrics", metrics=sorted(pending.items()))
        self._last_flush = time.monotonic()

    # ------------------------------------------------------------------ answers
    def _take(self, answer: dict) -> None:
        """Keep an error the agent reported (per member: the first one)."""
        if answer["op"] != "error":
            return
        kind = TrackingUnavailableError if answer["unavailable"] else TrackingError
        error = kind(answer["message"])
        self.errors.setdefault(answer.get("run"), error)
        self._first_error = self._first_error or error

    def _collect(self) -> None:
        """The answers that have arrived, without waiting (before the runs exist: none)."""
        if self._run_ids is None:
            return
        try:
            while (answer := self.channel.poll()) is not None:
                self._take(answer)
        except AgentStopped as stopped:
            self._stopped = self._stopped or stopped

    # ------------------------------------------------------------------ the end
    def close(self, status: str = "KILLED", message: str | None = None) -> None:
        """End every member not ended yet with ``status`` (KILLED: outcome ``interrupted``;
        FAILED: outcome ``failed`` with ``message``), wait until the agent has done all the
        work, and raise the first error it reported."""
        if self._closed:
            return
        self._closed = True
        try:
            self._close(status, _end_tags(status, message))
        finally:
            self._outbox.put(None)
            self.channel.close()
        if self._first_error is not None:
            raise self._first_error

    def _close(self, status: str, tags: dict | None) -> None:
        if self._run_ids is None:
            self._wait_started()
        self.flush()
        for recorder in self.recorders:
            recorder._ended = True
        self.send("batch_end", status=status, tags=tags)
        try:
            self._wait_ended()
        except AgentStopped as stopped:
            self._abandon(stopped)
            raise

    def _wait_ended(self) -> None:
        while True:
            if self._stopped is not None:
                raise self._stopped
            answer = self.channel.wait()
            if answer["op"] == "batch_ended":
                return
            self._take(answer)

    def _abandon(self, stopped: AgentStopped) -> None:
        """Our agent died with runs open (a warm agent killed outright): an agent of our
        own ends each FAILED with why, unless it has ended already."""
        run_ids = [run_id for run_id in self._run_ids or [] if run_id]
        if run_ids:
            abandon(self.store, run_ids, str(stopped))

    def __enter__(self) -> RecorderBatch:
        return self

    def __exit__(self, kind, exc, _traceback) -> None:
        """FINISHED for the members still open; KILLED on Ctrl-C or SIGTERM, FAILED with
        the message on an exception, which propagates (not an error of the recording)."""
        if kind is None:
            self.close("FINISHED")
            return
        status = "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"
        try:
            self.close(status, f"{kind.__name__}: {exc}")
        except Exception:
            pass  # the exception that ended the block is the one to see


def store_of(start: dict) -> str | None:
    """The store a member's run records into: its parent's, else its own."""
    return (start.get("parent") or {}).get("uri") or start.get("uri")


def _end_tags(status: str, message: str | None) -> dict | None:
    """The tags of members ended by `RecorderBatch.close`, as a single run's (run.close)."""
    if status == "KILLED":
        return {OUTCOME_TAG: "interrupted"}
    if status == "FAILED":
        return {OUTCOME_TAG: "failed", ERROR_TAG: message or "the batch ended FAILED"}
    return None


def _connect():
    """A connection of the batch's own: to the warm agent, else an agent process."""
    return warm_agent() or AgentProcess()
