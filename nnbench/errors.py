"""One shape for every message about a bad value: what it is, what it was, what is allowed."""

from __future__ import annotations


def invalid(what: str, value, allowed: str) -> ValueError:
    """``ValueError("Invalid learning rate: -1.0 (must be > 0)")``, PyTorch's wording.

    The value is shown with ``repr`` so that strings are quoted and numbers are exact.
    """
    return ValueError(f"Invalid {what}: {value!r} ({allowed})")


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here; the message says what to install or use."""


class DatasetUnavailableError(RuntimeError):
    """A dataset's files are missing and cannot be fetched; the message says where to put them."""


class TrackingUnavailableError(RuntimeError):
    """The tracking store or server cannot be reached; the message says what to do."""
