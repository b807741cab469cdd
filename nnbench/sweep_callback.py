"""The Hydra callback of a tracked multirun (``conf/tracking/mlflow.yaml``): the sweep's
parent run (`nnbench.tracking.sweep.SweepCallback`, opened before the first job, ended after
the last), and when the last job is done, the comparison of its children logged to it
(`nnbench.report.log_sweep_summary`: table, plots, best run, runs per outcome) and the lines
the multirun ends with.

It sits above both packages so that tracking, which writes the record, never imports the
report, which reads it back (docs/design.md, "Parts and layers")."""

from __future__ import annotations

from pathlib import Path

from nnbench.tracking import resolve_uri, sweep, ui_address, ui_command, views
from nnbench.user_errors import exit_on_user_error


class SweepCallback(sweep.SweepCallback):
    def on_multirun_start(self, config, **kwargs) -> None:
        """Hydra only warns about a callback's exception and launches the jobs anyway: a
        sweep folder or a store that cannot be used stops the sweep here, in one line."""
        with exit_on_user_error():
            super().on_multirun_start(config, **kwargs)

    def summarize(self, sweep_dir: Path):
        # Imported here: Hydra builds this callback in every run's process (a single run
        # too), and only the launching process of a multirun summarizes.
        from nnbench.report.summary import log_sweep_summary

        return log_sweep_summary(self.client, self.parent_run_id, sweep_dir)

    def closing(self, config, parent_run_id: str, comparison) -> str:
        """The lines a multirun ends with, as a single run does: how it went, where it is
        recorded, the commands that show it."""
        from nnbench.report.runs import outcome_counts

        run = self.client.get_run(parent_run_id)
        uri = resolve_uri(config.tracking.uri)
        rows = comparison.rows if comparison else []
        counts = ", ".join(f"{n} {outcome}" for outcome, n in outcome_counts(rows).items())
        lines = [f"sweep {run.info.run_name}: {len(rows)} runs ({counts or 'none'})"]
        if comparison and comparison.best:
            best = comparison.best
            value = best.metrics[comparison.metric]
            lines[0] += f"; best {best.name}: {comparison.metric} {value:.4f}"
        view = views.view_link(run.info.experiment_id, parent_run_id)
        report = f"python -m nnbench.report --sweep {parent_run_id}"
        if config.tracking.uri:
            report += f" --uri {uri}"
        lines += [
            f"recorded: sweep run {parent_run_id} in {uri}",
            f"look at it: {ui_command(uri)}",
            f"  its runs compared: {ui_address(uri)}/#{view}&workflowType=machine_learning",
            f"compare in the terminal: {report}",
            f"outputs: {config.hydra.sweep.dir}",
        ]
        return "\n".join(lines)
