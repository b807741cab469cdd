"""The tracking agent's side of a batch of runs (`nnbench.tracking.batch.RecorderBatch`):
the members of a stacked sweep, all open at once on one connection.

Each member is an `nnbench.tracking.agent.Agent` of its own, with the agent's whole logic
for one run (its error, its end, its end retried when a store refuses it); `Members` routes
the batch's commands to them (``nnbench.tracking.agent``'s docstring lists the commands):

- ``start_batch`` creates every member's run, then answers once with all the run ids;
- ``batch_metrics`` carries every member's pending metrics: one ``log_batch`` per run;
- a command with ``"run": i`` (tags, draw, artifacts, end) goes to member ``i`` alone;
- ``batch_end`` ends every member still open, then answers ``batch_ended``.

A member's failure is reported as ``error`` with its ``run`` and ends that member FAILED;
the others go on recording. Member ``i``'s other answers (``started``, ``ended``) stay
here: the training process waits only for ``started_batch`` and ``batch_ended``.

With ``draw_apart`` (a large batch), a member's ``draw`` goes to a `Drawer` process, and
the member's later commands wait, in order, until its drawing is done; meanwhile the other
members' commands go on. Should the drawer die, what it had not drawn is drawn here.
"""

from __future__ import annotations

import shutil

BATCH_OPS = ("start_batch", "batch_metrics", "batch_end")
DRAW_WAIT_S = 60.0  # the longest wait for one drawing before drawing here instead


class Members:
    """The member runs of one connection's batch, each recorded by an Agent of its own."""

    def __init__(self, agent):
        self.agent = agent  # the connection's Agent: its answer, store and manifest
        self.agents: list = []
        self.run_ids: list = []
        self.drawer = None  # a Drawer, with draw_apart
        self.drawing: dict = {}  # folder -> (member, its draw command), at the drawer
        self.waiting: dict = {}  # member -> its commands held until its drawing is done

    def handle(self, op: str, command: dict) -> None:
        """Route ``command``; a malformed one is answered ``error``, the members go on."""
        try:
            self.route(op, command)
        except Exception as exc:
            self.agent.report(exc)

    def route(self, op: str, command: dict) -> None:
        self.take_drawn()
        if op == "start_batch":
            self.start(**command)
        elif op == "batch_metrics":
            self.metrics(**command)
        elif op == "batch_end":
            self.end(**command)
        else:
            self.deliver(command.pop("run"), op, command)

    def deliver(self, index: int, op: str, command: dict) -> None:
        """Member ``index``'s command: held while its drawing is at the drawer, a drawing
        sent there, anything else done now by the member's agent."""
        member = self.agents[index]
        if index in self.waiting:
            self.waiting[index].append((op, command))
        elif op == "draw" and self.drawer and member.recorder and member.error is None:
            job = {**command, "manifest": member.manifest}
            if self.drawer.submit(job):
                self.drawing[command["folder"]] = (index, command)
                self.waiting[index] = []
                return
            self.drawer_gone()
            member.handle({"op": op, **command})
        else:
            member.handle({"op": op, **command})

    def take_drawn(self, wait_s: float = 0.0) -> None:
        """The drawings done (waiting up to ``wait_s`` for one): each member's held
        commands go on."""
        if not self.drawing:
            return
        answers = self.drawer.answers(wait_s)
        if answers is None:
            return self.drawer_gone()
        for answer in answers:
            index, _ = self.drawing.pop(answer["folder"])
            if answer["error"] is not None:
                self.drawing_failed(index, answer["folder"], answer["error"])
            self.release(index)

    def drawing_failed(self, index: int, folder: str, error: str) -> None:
        """As a drawing that failed here: the member fails, its folder goes."""
        shutil.rmtree(folder, ignore_errors=True)
        member = self.agents[index]
        member.error = member.error or error
        member.answer({"op": "error", "unavailable": False, "message": error})

    def release(self, index: int) -> None:
        for op, command in self.waiting.pop(index, []):
            self.deliver(index, op, command)

    def drawer_gone(self) -> None:
        """The drawer died (or hangs): what it had not drawn is drawn here, and the rest."""
        drawing, self.drawing, self.drawer = self.drawing, {}, None
        for index, command in drawing.values():
            self.agents[index].handle({"op": "draw", **command})
            self.release(index)

    def drain(self) -> None:
        """Every drawing done and every held command delivered."""
        while self.drawing:
            before = len(self.drawing)
            self.take_drawn(DRAW_WAIT_S)
            if self.drawing and len(self.drawing) == before:
                self.drawer_gone()

    def answer_for(self, index: int):
        """Member ``index``'s answers: its run id kept, its errors passed on with its
        ``run``, its ``ended`` kept back (nobody waits for one member's end)."""

        def answer(message: dict) -> None:
            if message["op"] == "started":
                self.run_ids[index] = message["run_id"]
            elif message["op"] == "error":
                self.agent.answer({**message, "run": index})

        return answer

    def start(self, starts: list, draw_apart: bool = False) -> None:
        """``start_batch {starts, draw_apart}`` -> ``started_batch {run_ids}``: every
        member's run created (a member whose start failed has its ``error`` answered
        first, and None). One batch at a time: one still open is ended KILLED first."""
        from nnbench.tracking.drawer import Drawer

        self.orphaned()
        self.agents, self.run_ids = [], [None] * len(starts)
        self.drawer = Drawer() if draw_apart else None  # starts beside the runs' creation
        for index, start in enumerate(starts):
            member = self.agent.__class__(self.answer_for(index))
            member.store = self.agent.store
            self.agents.append(member)
            member.handle({"op": "start", **start})
        self.agent.answer({"op": "started_batch", "run_ids": self.run_ids})
        self.prepare_manifest()  # after the answer: the training waits for that only
        for member in self.agents:
            member.manifest = self.agent.manifest

    def prepare_manifest(self) -> None:
        """The environment manifest, read once for every member's artifacts (``warm`` has
        read it already on a connection that sent one)."""
        if self.agent.manifest is None:
            from nnbench.manifest import environment_manifest

            try:
                self.agent.manifest = environment_manifest()
            except Exception:
                pass  # each member reads it when it draws, as a run of its own does

    def metrics(self, metrics: list) -> None:
        """``batch_metrics {metrics: [[run, [[key, value, step, timestamp_ms], ...]], ...]}``:
        one ``log_batch`` per member."""
        for index, entries in metrics:
            self.deliver(index, "metrics", {"metrics": entries})

    def end(self, status: str, tags: dict | None = None) -> None:
        """``batch_end {status, tags}`` -> ``batch_ended``: every member still open gets
        ``tags`` and ends with ``status`` (one that failed ends FAILED with its error)."""
        self.drain()
        self.close_drawer()
        for member in self.agents:
            if member.recorder is None:
                continue
            if tags:
                member.handle({"op": "tags", "tags": tags})
            member.end(status)
        self.agent.answer({"op": "batch_ended"})

    def orphaned(self) -> None:
        """The training process is gone: what it sent is done, then every member still
        open ends KILLED."""
        self.drain()
        self.close_drawer()
        for member in self.agents:
            member.orphaned()

    def close_drawer(self) -> None:
        if self.drawer is not None:
            self.drawer.close()
            self.drawer = None
