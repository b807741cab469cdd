"""Progress reporting: a bar on a terminal, one line per job in a multirun, else quiet.

Each reporter is a callable taking `fit`'s per-epoch record, plus `close(summary_line)`.
"""

from __future__ import annotations

import sys

BAR_WIDTH = 24


def _metrics(record: dict) -> str:
    parts = [f"loss {record['train/loss']:.4f}"]
    for key, label in (("train/acc", "acc"), ("val/loss", "val_loss"), ("val/acc", "val_acc")):
        if key in record:
            parts.append(f"{label} {record[key]:.4f}")
    return "  ".join(parts)


class Bar:
    """A one-line bar redrawn in place: ``epoch 7/20 [########----] loss ... acc ...``."""

    def __init__(self, epochs: int, stream=None):
        self.epochs = epochs
        self.stream = stream if stream is not None else sys.stderr

    def __call__(self, record: dict) -> None:
        done = round(BAR_WIDTH * record["epoch"] / self.epochs)
        bar = "#" * done + "-" * (BAR_WIDTH - done)
        line = f"epoch {record['epoch']:>{len(str(self.epochs))}}/{self.epochs} [{bar}] "
        self.stream.write("\r" + line + _metrics(record) + "\033[K")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class Quiet:
    """Nothing per epoch (output not on a terminal, or a multirun job)."""

    def __call__(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


def make_progress(mode: str, epochs: int, multirun: bool, stream=None):
    """``auto``: a bar for an interactive single run; ``bar``: always; ``none``: never."""
    stream = stream if stream is not None else sys.stderr
    interactive = hasattr(stream, "isatty") and stream.isatty()
    if mode == "bar" or (mode == "auto" and interactive and not multirun):
        return Bar(epochs, stream)
    return Quiet()


class StackLine:
    """One line per stack redrawn in place on a terminal: ``stack 1/2: epoch 7/20, 22 of 24
    members training``. `clear` wipes it before a job line is printed; the next epoch draws
    it again."""

    def __init__(self, epochs: int, members: int, stream=None):
        self.epochs, self.members = epochs, members
        self.stream = stream if stream is not None else sys.stderr
        self.shown = False

    def __call__(self, epoch: int, training: int, label: str) -> None:
        width = len(str(self.epochs))
        line = f"{label}: epoch {epoch:>{width}}/{self.epochs}, {training} of {self.members}"
        self.stream.write(f"\r{line} members training\033[K")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False

    def close(self) -> None:
        self.clear()


class QuietStack:
    """No stack line (output not on a terminal, or trainer.progress=none)."""

    def __call__(self, epoch: int, training: int, label: str) -> None:
        pass

    def clear(self) -> None:
        pass

    def close(self) -> None:
        pass


def make_stack_progress(mode: str, epochs: int, members: int, stream=None):
    """A stacked sweep's line per stack: on a terminal (``auto``), always (``bar``) or
    never (``none``); the members' job lines are printed as each ends."""
    stream = stream if stream is not None else sys.stderr
    interactive = hasattr(stream, "isatty") and stream.isatty()
    if mode == "bar" or (mode == "auto" and interactive):
        return StackLine(epochs, members, stream)
    return QuietStack()
