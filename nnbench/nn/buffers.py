"""Preallocated activation and gradient buffers, reused across steps of the same shape."""

from __future__ import annotations


class BufferCache:
    """Buffers keyed by (name, shape), allocated on first use and reused afterwards.

    A training run sees two or three batch shapes (the mini-batch, the last short batch,
    the evaluation chunk), so the cache stays small; it is emptied if it ever grows past
    ``limit`` entries.
    """

    def __init__(self, backend, limit: int = 16, activations: bool = False):
        self.backend = backend
        self.limit = limit
        # activations=True: (batch, features) buffers that feed matrix products, allocated
        # with `Backend.activation_buffer` (the backend picks their memory layout).
        self._allocate = backend.activation_buffer if activations else backend.empty
        self._buffers: dict = {}

    def get(self, name: str, shape):
        key = (name, tuple(shape))
        buf = self._buffers.get(key)
        if buf is None:
            if len(self._buffers) >= self.limit:
                self._buffers.clear()
            buf = self._buffers[key] = self._allocate(shape)
        return buf
