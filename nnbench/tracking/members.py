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
"""

from __future__ import annotations

BATCH_OPS = ("start_batch", "batch_metrics", "batch_end")


class Members:
    """The member runs of one connection's batch, each recorded by an Agent of its own."""

    def __init__(self, agent):
        self.agent = agent  # the connection's Agent: its answer, store and manifest
        self.agents: list = []
        self.run_ids: list = []

    def handle(self, op: str, command: dict) -> None:
        if op == "start_batch":
            self.start(**command)
        elif op == "batch_metrics":
            self.metrics(**command)
        elif op == "batch_end":
            self.end(**command)
        else:
            self.agents[command.pop("run")].handle({"op": op, **command})

    def answer_for(self, index: int):
        """Member ``index``'s answers: its run id kept, its errors passed on with its
        ``run``, its ``ended`` kept back (nobody waits for one member's end)."""

        def answer(message: dict) -> None:
            if message["op"] == "started":
                self.run_ids[index] = message["run_id"]
            elif message["op"] == "error":
                self.agent.answer({**message, "run": index})

        return answer

    def start(self, starts: list) -> None:
        """``start_batch {starts}`` -> ``started_batch {run_ids}``: every member's run
        created (a member whose start failed has its ``error`` answered first, and None)."""
        self.prepare_manifest()
        first = len(self.agents)
        for index, start in enumerate(starts, first):
            member = self.agent.__class__(self.answer_for(index))
            member.manifest, member.store = self.agent.manifest, self.agent.store
            self.agents.append(member)
            self.run_ids.append(None)
            member.handle({"op": "start", **start})
        self.agent.answer({"op": "started_batch", "run_ids": self.run_ids[first:]})

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
            self.agents[index].handle({"op": "metrics", "metrics": entries})

    def end(self, status: str, tags: dict | None = None) -> None:
        """``batch_end {status, tags}`` -> ``batch_ended``: every member still open gets
        ``tags`` and ends with ``status`` (one that failed ends FAILED with its error)."""
        for member in self.agents:
            if member.recorder is None:
                continue
            if tags:
                member.handle({"op": "tags", "tags": tags})
            member.end(status)
        self.agent.answer({"op": "batch_ended"})

    def orphaned(self) -> None:
        """The training process is gone: every member still open ends KILLED."""
        for member in self.agents:
            member.orphaned()
