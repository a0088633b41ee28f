"""The config groups that ``--help`` lists: only the ones this script's own defaults list uses.

Hydra's ``$APP_CONFIG_GROUPS`` lists every folder under conf/ (so train.py would offer ``job=`` and
visualize.py ``trainer=``) and the schema nodes registered in the ConfigStore (``base_lines``...).
``${help_groups:}`` in ``hydra.help.template`` (conf/hydra/*.yaml) lists instead the groups of the
composed config's defaults (``hydra.runtime.choices``, plus the groups named as its arguments),
each with its options, ``base_*`` left out.
"""
from __future__ import annotations

from omegaconf import OmegaConf

INTERNAL_PREFIX = "base_"   # schema nodes that the config files extend, not choices for a user


def _options(loader, group: str) -> list[str]:
    return sorted(o for o in loader.get_group_options(group) if not o.startswith(INTERNAL_PREFIX))


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
