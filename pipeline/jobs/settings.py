"""The typed schema of a job's config block, read from the job's constructor.

A job's settings are the keyword-only parameters of its constructor (``def __init__(self, ctx,
layers, seed, *, steps: int, step_size: float, ...)``), so the constructor is the one place
that names and types them. :func:`settings_schema` turns it into a dataclass that OmegaConf
checks a block against: ``_target_``, ``_partial_`` and one typed field per setting (default:
the parameter's, else required). The built-in jobs' schemas type the composed config
(pipeline/config.py); :func:`check_settings` checks any job's block, a new job's included,
before it is built.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.errors import ConfigError

__all__ = ["settings_schema", "check_settings"]

_PLAIN = (int, float, str, bool)


def _config_type(tp) -> Any:
    """The OmegaConf type of an annotation: int/float/str/bool, Optional, List, Dict, else Any."""
    if tp in _PLAIN:
        return tp
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            inner = _config_type(rest[0])
            return Any if inner is Any else Optional[inner]
        return Any
    if origin is list and args:
        return List[_config_type(args[0])]
    if origin is dict and len(args) == 2 and args[0] is str:
        return Dict[str, _config_type(args[1])]
    return Any


@functools.cache
def settings_schema(job_class: type) -> type:
    """A dataclass ``<Job>Settings`` typing the config block of ``job_class`` (see the module docstring)."""
    hints = typing.get_type_hints(job_class.__init__)
    fields = [("_target_", str, MISSING), ("_partial_", bool, True)]
    for p in inspect.signature(job_class.__init__).parameters.values():
        if p.kind is not p.KEYWORD_ONLY:
            continue
        default = MISSING if p.default is p.empty else p.default
        spec = dataclasses.field(default_factory=lambda d=default: d) if isinstance(default, (list, dict)) \
            else dataclasses.field(default=default)
        fields.append((p.name, _config_type(hints.get(p.name, Any)), spec))
    name = job_class.__name__.removesuffix("Job") + "Settings"
    return dataclasses.make_dataclass(name, fields, namespace={"__doc__": f"The config block of {job_class.__qualname__}."})


def check_settings(name: str, block: DictConfig, job_class: type) -> None:
    """``block`` against the schema of ``job_class``: an unknown key or a value of the wrong type
    raises :class:`ConfigError` naming the key and the job."""
    try:
        OmegaConf.merge(OmegaConf.structured(settings_schema(job_class)), OmegaConf.to_container(block))
    except OmegaConfBaseException as exc:
        key = f"{name}.{exc.full_key}" if getattr(exc, "full_key", None) else name
        raise ConfigError(f"{key}: {str(exc).splitlines()[0]} (the settings of job {name} are the keyword "
                          f"arguments of {job_class.__module__}.{job_class.__qualname__})") from None
