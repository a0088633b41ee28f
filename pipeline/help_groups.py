"""The config groups that ``--help`` lists: only the ones this script's own defaults list uses.

Hydra's ``$APP_CONFIG_GROUPS`` lists every folder under conf/ (so train.py would offer ``job=`` and
visualize.py ``trainer=``) and the schema nodes registered in the ConfigStore (``base_lines``...).
``${help_groups:}`` in ``hydra.help.template`` (conf/hydra/*.yaml) lists instead the groups of the
composed config's defaults (``hydra.runtime.choices``, plus the groups named as its arguments),
each with its options, ``base_*`` left out.

Hydra computes ``$APP_CONFIG_GROUPS`` and ``$HYDRA_CONFIG_GROUPS`` for every ``--help`` even when
the template does not name them (about 8 s: every group of conf/ and of the installed plugins);
:func:`use_lazy_help` makes it compute only the placeholders the template names.
"""
from __future__ import annotations

import string

from omegaconf import OmegaConf

INTERNAL_PREFIX = "base_"   # schema nodes that the config files extend, not choices for a user


def _options(loader, group: str) -> list[str]:
    # the loader's repository answers what loader.get_group_options(group) does, without the deep copy
    # of every config source that it makes per call (about 0.2 s each)
    repository = getattr(loader, "repository", None)
    if repository is not None:
        from hydra.core.object_type import ObjectType

        options = repository.get_group_options(group, ObjectType.CONFIG)
    else:
        options = loader.get_group_options(group)
    return sorted(o for o in options if not o.startswith(INTERNAL_PREFIX))


def help_groups(*extra: str) -> str:
    """``group: option, option`` lines for this script's groups (hydra/* left out), sorted by group;
    ``extra``: groups chosen as a list in the defaults (``methods: [...]``), which choices do not record."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    if not (GlobalHydra.instance().is_initialized() and HydraConfig.initialized()):
        return "(the groups are listed by --help)"   # the template resolved outside --help (a composed test config)
    choices = HydraConfig.get().runtime.choices
    loader = GlobalHydra.instance().config_loader()
    groups = sorted({*(g for g in choices if not (g == "hydra" or g.startswith("hydra/"))), *extra})
    return "\n".join(f"{g}: {', '.join(_options(loader, g))}" for g in groups)


def register_help_resolver() -> None:
    if not OmegaConf.has_resolver("help_groups"):
        OmegaConf.register_new_resolver("help_groups", help_groups)


def _is_hydra_group(group: str) -> bool:
    return group == "hydra" or group.startswith("hydra/")


def _lazy_get_help(self, help_cfg, cfg, args_parser, resolve: bool) -> str:
    """Hydra 1.3's ``Hydra.get_help`` (``--help``, ``--hydra-help``), computing only the placeholders
    that the template names; the text is the same."""
    template = string.Template(help_cfg.template)
    values = {
        "FLAGS_HELP": lambda: self.format_args_help(args_parser),
        "HYDRA_CONFIG_GROUPS": lambda: self.format_config_groups(_is_hydra_group),
        "APP_CONFIG_GROUPS": lambda: self.format_config_groups(lambda g: not _is_hydra_group(g)),
        "CONFIG": lambda: OmegaConf.to_yaml(cfg, resolve=resolve),
    }
    named = set(template.get_identifiers())
    return template.substitute({key: value() for key, value in values.items() if key in named})


def use_lazy_help() -> None:
    """Replace Hydra's ``Hydra.get_help`` by :func:`_lazy_get_help` (once; called by register_configs)."""
    from hydra._internal.hydra import Hydra

    if Hydra.get_help is not _lazy_get_help:
        Hydra.get_help = _lazy_get_help
