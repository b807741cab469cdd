"""``python -m nnbench``: Hydra composes the config, and the job it describes runs
(`nnbench.flow.run_job`: resume, build, train, record, summarize).

Hydra's config stays in the entry layer (this module, `nnbench.flow`, `nnbench.config`,
`nnbench.hydra_job`, `nnbench.user_errors`, `nnbench.sweep_callback`) and the sweep's
parent-run callback (`nnbench.tracking.sweep`): what they call below them takes plain values
(docs/design.md, "Parts and layers").
"""

from __future__ import annotations

import logging
import os

import hydra
from omegaconf import DictConfig, OmegaConf

from nnbench import config as schema
from nnbench.backend import devices
from nnbench.flow import run_job
from nnbench.hydra_job import job_info
from nnbench.user_errors import exit_on_user_error, reporting_user_errors


def _find_launcher_plugin() -> None:
    """Show Hydra our ``hydra_plugins`` folder (hydra/launcher=stacked). An installed nnbench
    puts it beside the other plugins, where Hydra's scan finds it; an editable install
    (``make venv``) serves it through an import hook that the scan does not list."""
    import hydra_plugins
    import hydra_plugins.nnbench_stacked_launcher as ours

    folder = os.path.dirname(os.path.dirname(ours.__file__))
    if folder not in list(hydra_plugins.__path__):
        hydra_plugins.__path__.append(folder)


schema.register()
_find_launcher_plugin()
# hydra/launcher=joblib_gpus: as many jobs at once as there are GPUs.
OmegaConf.register_new_resolver("nnbench.gpus", devices.parallel_jobs, replace=True)

QUIET_LOGGERS = ("mlflow", "alembic", "matplotlib", "urllib3")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    for name in QUIET_LOGGERS:  # their INFO chatter is not the user's business
        logging.getLogger(name).setLevel(logging.WARNING)
    with exit_on_user_error():
        return run_job(cfg, job_info())


def main() -> None:
    """Console entry point: ``nnbench`` and ``python -m nnbench``."""
    with reporting_user_errors():
        _hydra_main()
