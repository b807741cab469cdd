"""Compare runs read back from MLflow: the summary a sweep's parent run gets when the sweep
ends (`log_sweep_summary`), and the ``nnbench-report`` command (`main`).

    runs     the runs as plain rows, the swept params, the ranking
    table    the comparison table: terminal, Markdown, CSV
    plots    all validation-loss curves (in panels for wide sweeps); the final metric against
             each swept value
    colors   the runs' colours (by the numeric swept param, on a colour bar) and the panels
    summary  the report's files, and the sweep summary logged to the parent run
    note     the parent run's description in the MLflow UI: best run, links, ranked table
    cli      ``python -m nnbench.report``
"""

from __future__ import annotations

from nnbench.report.cli import main
from nnbench.report.summary import log_sweep_summary

__all__ = ["log_sweep_summary", "main"]
