"""``hydra/launcher=stacked``: nnbench's launcher that trains the jobs of a sweep that differ
only in values as one stacked model (`stacked_launcher.StackedLauncher`). Hydra finds it
like its own plugins, in the ``hydra_plugins`` namespace package."""
