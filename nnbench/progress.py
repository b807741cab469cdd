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
