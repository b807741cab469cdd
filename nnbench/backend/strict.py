"""The reference `Backend` on array-api-strict, a namespace that rejects anything outside the
array API standard. Code that passes here runs on any standard array library. For tests only:
every operation costs several microseconds."""

from __future__ import annotations

from nnbench.backend.base import Backend


class StrictBackend(Backend):
    name = "strict"

    def __init__(self, dtype: str = "float32"):
        try:
            import array_api_strict
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "backend=strict needs array-api-strict: pip install 'nnbench[test]'"
            ) from exc
        super().__init__(array_api_strict, dtype)
