"""``python -m nnbench +sweep=lr hydra/launcher=stacked``: a Hydra launcher that composes every
job's config, groups the jobs that can share one computation (`nnbench.stack_plan`), trains
each group as one stacked model (`nnbench.stack_flow`) and records each job as the basic
launcher would: its folder with ``.hydra/``, its job line, its run, its return value.

A job that must train alone (a stack of one: a benchmark job, a CUDA-graph job, or simply
the only one of its kind) runs exactly as under the basic launcher, through Hydra's
``run_job`` and nnbench's task function.
"""

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    _save_config,
    configure_log,
    env_override,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.nnbench_stacked_launcher.compose import Compositions

log = logging.getLogger(__name__)


@dataclass
class StackedLauncherConf:
    _target_: str = "hydra_plugins.nnbench_stacked_launcher.stacked_launcher.StackedLauncher"
    # The most members one stack trains at once; a larger group runs as several stacks.
    # Measured (float32, Adam, B = 64): a digits member (64-64-64-10) holds about 0.5 MiB,
    # an MNIST member (784-256-256-10) about 13 MiB, so 64 members take 32 MiB and 0.8 GiB;
    # each distinct seed adds its own copy of the dataset (about 0.6 GB for MNIST).
    max_members: int = 64


ConfigStore.instance().store(
    group="hydra/launcher", name="stacked", node=StackedLauncherConf, provider="nnbench"
)


class StackedLauncher(Launcher):
    def __init__(self, max_members: int = 64) -> None:
        super().__init__()
        if isinstance(max_members, bool) or not isinstance(max_members, int) or max_members < 1:
            raise ValueError(
                f"Invalid hydra.launcher.max_members: {max_members!r} (must be an integer >= 1)"
            )
        self.max_members = max_members
        self.config = self.task_function = self.hydra_context = None
        self.invalid: list[Exception] = []  # the errors of jobs whose config is invalid

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.compositions = Compositions(hydra_context.config_loader)

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        from nnbench.stack_plan import plan_stacks
        from nnbench.user_errors import describe, exit_on_user_error, fail

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = [
            self._compose(initial_job_idx + i, overrides)
            for i, overrides in enumerate(job_overrides)
        ]
        plan = plan_stacks(configs, self.max_members)
        log.info(f"Launching {len(configs)} jobs stacked: {plan.line}")
        returns: list = [None] * len(configs)
        with exit_on_user_error():
            for number, stack in enumerate(plan.stacks, start=1):
                label = f"stack {number}/{len(plan.stacks)}"
                for index, ret in zip(
                    stack, self._launch_stack(configs, stack, label), strict=True
                ):
                    returns[index] = ret
        if self.invalid:  # as the basic launcher stops at such a job: one line, exit status 2
            fail(describe(self.invalid[0]))
        return returns

    def _compose(self, idx: int, overrides) -> DictConfig:
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        config = self.compositions.take(self.config, overrides)
        with open_dict(config):
            config.hydra.job.id = idx
            config.hydra.job.num = idx
        return config

    def _launch_stack(self, configs: list[DictConfig], stack: list[int], label: str):
        if len(stack) == 1:  # alone: exactly what the basic launcher does
            ret = run_job(
                hydra_context=self.hydra_context,
                task_function=self.task_function,
                config=configs[stack[0]],
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            return [ret]
        from nnbench.stack_flow import run_stack

        prepared = [self._prepare_job(configs[i]) for i in stack]
        callbacks = self.hydra_context.callbacks
        for config, _, _ in prepared:
            callbacks.on_job_start(config=config, task_function=self.task_function)
        with env_override(prepared[0][1].hydra_cfg.hydra.job.env_set):
            outcomes = run_stack(
                [ret.cfg for _, ret, _ in prepared], [job for _, _, job in prepared], label
            )
        returns = []
        for (config, ret, _), outcome in zip(prepared, outcomes, strict=True):
            _settle(ret, outcome)
            if isinstance(outcome, Exception):
                self.invalid.append(outcome)
            callbacks.on_job_end(config=config, job_return=ret)
            returns.append(ret)
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return returns

    def _prepare_job(self, config: DictConfig):
        """What Hydra's ``run_job`` does before it calls the task: the job's output folder,
        its ``.hydra/`` (config, hydra, overrides) and log file. Returns the job's config,
        its `JobReturn` to be settled, and the job as nnbench's flow knows it
        (`nnbench.hydra_job.job_info`, read while its config is Hydra's current one)."""
        from nnbench.hydra_job import job_info

        sweep_dir = str(OmegaConf.select(config, "hydra.sweep.dir"))
        output_dir = os.path.join(sweep_dir, str(OmegaConf.select(config, "hydra.sweep.subdir")))
        with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
            config.hydra.runtime.output_dir = os.path.abspath(output_dir)
        HydraConfig.instance().set_config(config)
        ret = JobReturn()
        task_cfg = copy.deepcopy(config)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        ret.cfg = task_cfg
        ret.hydra_cfg = HydraConfig.instance().cfg  # a copy of its own, made by set_config
        ret.overrides = list(config.hydra.overrides.task)
        ret.working_dir = os.getcwd()
        ret.task_name = str(config.hydra.job.name)
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        configure_log(config.hydra.job_logging, config.hydra.verbose)
        if config.hydra.output_subdir is not None:
            hydra_output = Path(config.hydra.runtime.output_dir) / str(config.hydra.output_subdir)
            _save_config(task_cfg, "config.yaml", hydra_output)
            _save_config(ret.hydra_cfg, "hydra.yaml", hydra_output)
            _save_config(config.hydra.overrides.task, "overrides.yaml", hydra_output)
        return config, ret, job_info()


def _settle(ret: JobReturn, outcome) -> None:
    """The job's status and return value: its objective, or FAILED with the error of an
    invalid config (`StackedLauncher.launch` reports it once every stack is done)."""
    failed = isinstance(outcome, BaseException)
    ret.status = JobStatus.FAILED if failed else JobStatus.COMPLETED
    ret.return_value = outcome
