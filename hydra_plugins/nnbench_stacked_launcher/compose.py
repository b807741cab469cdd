"""Every job's config, composed once and fast (`Compositions`).

Hydra composes a job's config from its files and overrides in about 80 ms; the basic sweeper
does it for every job to check it before launching (``Sweeper.validate_batch_is_legal``),
and a launcher again to run it. The stacked launcher's jobs mostly differ from one another
in a few values (``optimizer.lr=0.001`` where another job has ``optimizer.lr=0.01``), so:

- a job whose overrides differ from an earlier job's only in the values of plain
  ``key=value`` overrides of `STACKABLE` keys gets the earlier job's config with those
  values set, as Hydra's own override step sets them (``OmegaConf.update(..., merge=True)``),
  and its ``hydra.overrides.task`` and ``hydra.job.override_dirname`` written as Hydra
  writes them: about 5 ms;
- the first config made that way is also composed by Hydra and the two compared; if they
  differ in anything, every later job is composed by Hydra;
- the configs made for the sweeper's check are kept, and the launcher takes each once.
"""

import copy

from hydra._internal.config_loader_impl import get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from nnbench.stack_plan import STACKABLE


class Compositions:
    def __init__(self, loader) -> None:
        self.compose = loader.load_sweep_config  # Hydra's
        self.parser = OverridesParser.create()
        self.kept: dict[tuple, DictConfig] = {}
        self.template: tuple[list, DictConfig] | None = None
        self.checked = False  # a derived config was compared with Hydra's
        self.trusted = True
        loader.load_sweep_config = self.load_sweep_config

    def take(self, master_config: DictConfig, overrides) -> DictConfig:
        """The job's config, made once: the one kept from the sweeper's check, or new."""
        key = tuple(overrides)
        if key not in self.kept:
            self.load_sweep_config(master_config, list(overrides))
        return self.kept.pop(key)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list) -> DictConfig:
        config = self._derived(sweep_overrides) if self.trusted else None
        if config is not None and not self.checked:
            composed = self.compose(master_config, sweep_overrides)
            self.checked = True
            self.trusted = _same(config, composed)
            config = composed
        if config is None:
            config = self.compose(master_config, sweep_overrides)
            self.template = (list(sweep_overrides), config)
        self.kept[tuple(sweep_overrides)] = config
        return config

    def _derived(self, overrides: list) -> DictConfig | None:
        """The template's config with this job's values, or None when the overrides differ
        in more than stackable values."""
        if self.template is None or len(self.template[0]) != len(overrides):
            return None
        changes = []
        for before, after in zip(self.template[0], overrides, strict=True):
            if before != after:
                change = self._value_change(before, after)
                if change is None:
                    return None
                changes.append(change)
        config = copy.deepcopy(self.template[1])
        with read_write(config), open_dict(config.hydra):
            for override in changes:
                OmegaConf.update(config, override.key_or_group, override.value(), merge=True)
            task = [o for o in self._parse(overrides) if not o.is_hydra_override()]
            config.hydra.overrides.task = [o.input_line for o in task]
            dirname = config.hydra.job.config.override_dirname
            config.hydra.job.override_dirname = get_overrides_dirname(
                overrides=task,
                kv_sep=dirname.kv_sep,
                item_sep=dirname.item_sep,
                exclude_keys=dirname.exclude_keys,
            )
        return config

    def _value_change(self, before: str, after: str):
        """``after`` parsed, when it sets another plain value of the same stackable key."""
        old, new = self._parse([before, after])
        plain = all(
            o.key_or_group in STACKABLE
            and o.package is None
            and not (o.is_add() or o.is_force_add() or o.is_delete() or o.is_sweep_override())
            for o in (old, new)
        )
        same_key = old.key_or_group == new.key_or_group
        if plain and same_key and not isinstance(new.value(), dict):
            return new
        return None

    def _parse(self, overrides: list):
        return self.parser.parse_overrides(overrides=list(overrides))


def _same(derived: DictConfig, composed: DictConfig) -> bool:
    return OmegaConf.to_container(derived) == OmegaConf.to_container(composed)
