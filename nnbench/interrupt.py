"""SIGTERM treated like Ctrl-C, so that a terminated run ends its record (KILLED) and
keeps what it logged, instead of vanishing mid-write; which signal it was is kept for the
exit status (128 + its number: 130 for Ctrl-C, 143 for SIGTERM)."""

from __future__ import annotations

import contextlib
import signal
import threading

received: int = signal.SIGINT  # the signal behind the latest KeyboardInterrupt


def on_signal(signum, _frame) -> None:
    """A signal handler that raises KeyboardInterrupt, remembering which signal it was."""
    global received
    received = signum
    raise KeyboardInterrupt


def sigterm_raises():
    """Make SIGTERM raise KeyboardInterrupt (main thread only); the previous handler, or
    None where nothing changed."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, on_signal)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within this block SIGTERM raises KeyboardInterrupt (main thread only)."""
    previous = sigterm_raises()
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
