"""What one training epoch returns, eager (`nnbench.train`) or replayed as CUDA graphs
(`nnbench.graphed`): both import it from here, so that neither imports the other back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EpochResult:
    loss: float  # mean data loss over the samples seen
    correct: int | None
    samples: int
    diverged_step: int | None = None  # 1-based step of the first non-finite loss
