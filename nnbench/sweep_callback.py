"""The Hydra callback of a tracked multirun (``conf/tracking/mlflow.yaml``): the sweep's
parent run (`nnbench.tracking.sweep.SweepCallback`, opened before the first job, ended after
the last) and, when the last job is done, the comparison of its children logged to it
(`nnbench.report.log_sweep_summary`: table, plots, best run, runs per outcome).

It sits above both packages so that tracking, which writes the record, never imports the
report, which reads it back (docs/design.md, "Parts and layers")."""

from __future__ import annotations

from pathlib import Path

from nnbench.tracking import sweep
from nnbench.usage import exit_on_user_error


class SweepCallback(sweep.SweepCallback):
    def on_multirun_start(self, config, **kwargs) -> None:
        """Hydra only warns about a callback's exception and launches the jobs anyway: a
        sweep folder or a store that cannot be used stops the sweep here, in one line."""
        with exit_on_user_error():
            super().on_multirun_start(config, **kwargs)

    def summarize(self, sweep_dir: Path) -> None:
        # Imported here: Hydra builds this callback in every run's process (a single run
        # too), and only the launching process of a multirun summarizes.
        from nnbench.report.summary import log_sweep_summary

        log_sweep_summary(self.client, self.parent_run_id, sweep_dir)
