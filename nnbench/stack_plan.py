"""Which jobs of a sweep train together (``hydra/launcher=stacked``): jobs whose configs
differ only in `STACKABLE` values share one computation, a stack; anything else (the
dataset, sizes, activation, batch normalization on or off, optimizer kind, batch size,
epochs, backend, dtype) starts another. A group larger than ``max_members`` is cut into
several stacks of at most that many, in job order.

    >>> plan = plan_stacks(configs, max_members=64)
    >>> plan.line
    '18 jobs in 2 stacks (model.batchnorm differs)'
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

# What members of one stack may have of their own: values, never shapes or kinds.
STACKABLE = (
    "optimizer.lr",
    "optimizer.momentum",
    "optimizer.weight_decay",
    "optimizer.betas",
    "model.l1",
    "model.l2",
    "model.dropout",
    "seed",
)


@dataclass(frozen=True)
class StackPlan:
    stacks: list[list[int]]  # the jobs of each stack (indices into the configs), job order
    differing: list[str]  # the keys whose values start another group
    groups: int  # groups of jobs that could share a computation
    max_members: int

    @property
    def line(self) -> str:
        """How the jobs were grouped: ``24 jobs in 1 stack``, ``18 jobs in 2 stacks
        (model.batchnorm differs)``, ``96 jobs in 2 stacks (at most 64 members a stack:
        hydra.launcher.max_members)``."""
        jobs = sum(len(stack) for stack in self.stacks)
        count = len(self.stacks)
        line = f"{jobs} job{'s' * (jobs != 1)} in {count} stack{'s' * (count != 1)}"
        notes = []
        if self.differing:
            shown = ", ".join(self.differing[:4]) + (", ..." if len(self.differing) > 4 else "")
            notes.append(f"{shown} differ{'s' * (len(self.differing) == 1)}")
        if count > self.groups:
            notes.append(f"at most {self.max_members} members a stack: hydra.launcher.max_members")
        return line + (f" ({'; '.join(notes)})" if notes else "")


def plan_stacks(configs: list[DictConfig], max_members: int) -> StackPlan:
    """Group ``configs`` (the jobs' composed configs, Hydra's node included or not) into
    stacks of at most ``max_members``; jobs that must train alone get a stack of one."""
    flats = [_flat(config) for config in configs]
    keys: dict[str, list[int]] = {}
    for index, flat in enumerate(flats):
        key = _solo(flat, index) or _signature(flat)
        keys.setdefault(key, []).append(index)
    groups = list(keys.values())
    stacks = [stack for group in groups for stack in _cut(group, max_members)]
    return StackPlan(stacks, _differing([flats[g[0]] for g in groups]), len(groups), max_members)


def _cut(group: list[int], max_members: int) -> list[list[int]]:
    """``group`` in as few stacks of at most ``max_members`` as it takes, their sizes as
    even as can be (9 jobs at 4 a stack: 3 + 3 + 3, not 4 + 4 + 1)."""
    count = -(-len(group) // max_members)
    size, extra = divmod(len(group), count)
    bounds = [k * size + min(k, extra) for k in range(count + 1)]
    return [group[bounds[k] : bounds[k + 1]] for k in range(count)]


def _flat(config: DictConfig) -> dict:
    """The job's config as dotted keys and JSON values, without Hydra's node."""
    keys = [key for key in config if key != "hydra"]
    container = OmegaConf.to_container(OmegaConf.masked_copy(config, keys), resolve=True)
    flat: dict = {}
    _flatten(container, "", flat)
    return flat


def _flatten(node, prefix: str, into: dict) -> None:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            _flatten(value, f"{prefix}{key}.", into)
    else:
        into[prefix[:-1]] = json.dumps(node, sort_keys=True)


def _solo(flat: dict, index: int) -> str | None:
    """A key of its own for a job that trains alone, through the job flow every launcher
    runs: a benchmark job, or one that captures its steps as CUDA graphs."""
    bench = any(key.startswith("bench.") for key in flat) or flat.get("bench", "null") != "null"
    if bench or flat.get("trainer.cuda_graph") == "true":
        return f"solo {index}"
    return None


def _signature(flat: dict) -> str:
    return json.dumps({k: v for k, v in flat.items() if k not in STACKABLE}, sort_keys=True)


def _differing(representatives: list[dict]) -> list[str]:
    """The keys, not stackable, whose values differ between the groups."""
    if len(representatives) < 2:
        return []
    keys = sorted(set().union(*representatives))
    return [
        key
        for key in keys
        if key not in STACKABLE and len({flat.get(key) for flat in representatives}) > 1
    ]
