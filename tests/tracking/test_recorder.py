"""Every recorder implements `nnbench.tracking.Recorder`: each of its methods, taking the
protocol's arguments by the same names and kinds (a recorder may add optional ones)."""

from __future__ import annotations

import inspect

import pytest

from nnbench.tracking import NullRecorder, Recorder
from nnbench.tracking.agent_client import AgentRecorder
from nnbench.tracking.batch import MemberRecorder
from nnbench.tracking.run import RunRecorder

METHODS = sorted(
    name for name, member in vars(Recorder).items() if inspect.isfunction(member) and name[0] != "_"
)


def _accepts(method, protocol) -> list[str]:
    """What ``method`` lacks to be called as ``protocol`` is."""
    have = inspect.signature(method).parameters
    want = inspect.signature(protocol).parameters
    problems = [f"{n}: missing" for n in want if n not in have]
    problems += [
        f"{n}: {have[n].kind} not {p.kind}"
        for n, p in want.items()
        if n in have and have[n].kind != p.kind
    ]
    extra = [p for n, p in have.items() if n not in want and p.default is inspect.Parameter.empty]
    problems += [f"{p.name}: required, not in the protocol" for p in extra]
    return problems


def test_the_protocol_is_the_whole_interface():
    assert METHODS == [
        "draw_artifacts",
        "end",
        "flush",
        "log_artifacts",
        "log_epoch",
        "log_metrics",
        "set_tags",
    ]


@pytest.mark.parametrize("recorder", [NullRecorder, RunRecorder, AgentRecorder, MemberRecorder])
@pytest.mark.parametrize("name", METHODS)
def test_each_recorder_takes_each_call(recorder, name):
    assert _accepts(getattr(recorder, name), getattr(Recorder, name)) == []


def test_a_recorder_missing_a_call_is_caught():
    """A control: a class without `end` and with a required extra argument fails."""

    class Partial(NullRecorder):
        end = None

        def flush(self, now: bool) -> None:  # a required argument the flow never passes
            pass

    assert not isinstance(Partial(), Recorder)
    assert _accepts(Partial.flush, Recorder.flush) == ["now: required, not in the protocol"]


def test_the_null_recorder_is_a_recorder():
    assert isinstance(NullRecorder(), Recorder) and NullRecorder.run_id is None
