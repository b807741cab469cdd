"""Compare runs read back from MLflow (placeholder until the report lands)."""

from __future__ import annotations


def log_sweep_summary(client, parent_run_id, sweep_dir) -> None:
    """Attach the comparison of the sweep's children to its parent run."""
