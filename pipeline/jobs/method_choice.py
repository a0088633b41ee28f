"""The attribution methods a job uses, picked by name from the run's ``methods`` catalog.

``methods`` (conf/methods/, one file per method) maps a name to a config node with
``_target_`` and ``_partial_: true``; a job block receives it as ``catalog: ${methods}``, so
``hydra.utils.instantiate`` hands the job one partial per method, ``factory(model, layer,
heads=..., batch_size=...)``. This module checks the names and each method's settings before
any work.
"""
from __future__ import annotations

import inspect
from typing import Callable, Mapping, Sequence

from torch import nn

from pipeline.errors import CnnvisError, ConfigError

__all__ = ["chosen_methods", "needs_layer", "build_method"]


def needs_layer(factory: Callable) -> bool:
    """Whether the method works at a layer (the CAMs, Guided Grad-CAM) rather than the input."""
    return bool(getattr(getattr(factory, "func", factory), "needs_layer", True))


def chosen_methods(names: str | Sequence[str], catalog: Mapping[str, Callable], key: str) -> dict[str, Callable]:
    """``{name: factory}`` for ``names`` (one name or a list), in order; ``key`` is the config
    key that chose them (for the message). Unknown names and settings that the method's
    constructor does not take raise before any work."""
    names = [names] if isinstance(names, str) else [str(n) for n in names]
    unknown = [n for n in names if n not in catalog]
    if unknown or not names:
        raise CnnvisError(f"{key}: unknown attribution method {', '.join(unknown) or '(none given)'}; valid: "
                          f"{', '.join(catalog)} (conf/methods/<name>.yaml; add one to a run with +methods=<name>)")
    for name in names:
        factory = catalog[name]
        cls = getattr(factory, "func", factory)
        unknown = sorted(set(getattr(factory, "keywords", {})) - _accepted(cls))
        if unknown:
            raise ConfigError(f"methods.{name}: {cls.__name__} takes no setting {', '.join(unknown)}; its settings: "
                              f"{', '.join(sorted(_accepted(cls) - {'self', 'model', 'target_layer'}))} "
                              f"(conf/methods/{name}.yaml)")
        try:
            inspect.signature(factory).bind(nn.Identity(), None, heads=None, batch_size=1)
        except TypeError as exc:
            raise ConfigError(f"methods.{name}: {exc}; see conf/methods/{name}.yaml") from None
    return {n: catalog[n] for n in names}


def _accepted(cls) -> set[str]:
    """The keyword arguments a method class takes, its base classes' included (a subclass hands
    its ``**kwargs`` on to them)."""
    names: set[str] = set()
    for c in getattr(cls, "__mro__", (cls,)):
        init = c.__dict__.get("__init__") if isinstance(c, type) else c
        if init is not None and init is not object.__init__:
            names |= {p.name for p in inspect.signature(init).parameters.values()
                      if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return names


def build_method(factory: Callable, net: nn.Module, layer: str | None, heads: Sequence[str] | None, batch_size: int):
    """The method for ``net`` at ``layer`` (ignored by input-gradient methods)."""
    return factory(net, layer if needs_layer(factory) else None, heads=heads, batch_size=batch_size)
