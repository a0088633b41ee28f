"""Layer addressing by module name (as ``model.named_modules()`` spells it).

A layer name is the dotted path of a sub-module, e.g. ``features.conv3``,
``heads.angle.fc1`` or ``classifier.out``: the names the model itself shows, the same in the
config, the checkpoint, the HDF5 store and the figures. Nothing here keeps global state and
nothing registers hooks; the visualization classes resolve names with :func:`resolve_layers`
*before* doing any work, so a typo fails fast with the list of valid names.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from torch import nn

from pipeline.errors import CnnvisError

__all__ = ["UnknownLayerError", "layer_names", "conv_layer_names", "resolve_layers",
           "resolve_layer", "last_conv_name", "module_name"]

_CONTAINERS = (nn.Sequential, nn.ModuleDict, nn.ModuleList)


class UnknownLayerError(CnnvisError, KeyError):
    """A layer name that the model does not have: an actionable error (the entry scripts print it
    and exit 2, no traceback), still a ``KeyError`` for code that looks names up.

    ``str(err)`` is a readable sentence naming the wrong name(s) and every valid layer name
    (``KeyError.__str__`` would show the repr of a tuple). ``err.names`` holds the unknown
    names and ``err.valid`` the valid ones.
    """

    def __init__(self, names: str | Sequence[str], valid: Sequence[str], model_name: str = "model",
                 containers: Sequence[str] = ()):
        self.names = [names] if isinstance(names, str) else list(names)
        self.valid = list(valid)
        self.containers = list(containers)
        self.model_name = model_name
        super().__init__(self.names[0] if len(self.names) == 1 else tuple(self.names))

    def __str__(self) -> str:  # noqa: D401 - readable message, not KeyError's repr
        wrong = ", ".join(repr(n) for n in self.names)
        noun = "layer" if len(self.names) == 1 else "layers"
        msg = f"unknown {noun} {wrong} in {self.model_name}. Valid layer names: " + ", ".join(self.valid)
        if self.containers:
            msg += " (containers also accepted: " + ", ".join(self.containers) + ")"
        return msg


def _named(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if n]


def layer_names(model: nn.Module) -> list[str]:
    """Every sub-module name in definition order, without the root and pure containers
    (``nn.Sequential``, ``nn.ModuleDict``, ``nn.ModuleList``)."""
    return [n for n, m in _named(model) if not isinstance(m, _CONTAINERS)]


def conv_layer_names(model: nn.Module) -> list[str]:
    """Names of the ``nn.Conv2d`` layers, in definition order."""
    return [n for n, m in _named(model) if isinstance(m, nn.Conv2d)]


def _error(model: nn.Module, unknown: Iterable[str]) -> UnknownLayerError:
    named = _named(model)
    return UnknownLayerError(list(unknown), layer_names(model), type(model).__name__,
                             [n for n, m in named if isinstance(m, _CONTAINERS)])


def resolve_layers(model: nn.Module, names: str | Sequence[str]) -> dict[str, nn.Module]:
    """``{name: module}`` in the order given; raises :class:`UnknownLayerError` listing every
    unknown name (and the valid ones) before anything else happens.

    Leaf layers and containers (``features``, ``heads.angle``) are both accepted.
    """
    if isinstance(names, str):
        names = [names]
    names = list(names)
    modules = dict(_named(model))
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise _error(model, unknown)
    return {n: modules[n] for n in names}


def module_name(model: nn.Module, module: nn.Module) -> str:
    """The name of ``module`` inside ``model`` (raises ``ValueError`` when it is not a
    sub-module; the root itself is named ``""``)."""
    for n, m in model.named_modules():
        if m is module:
            return n
    raise ValueError(f"{type(module).__name__} is not a sub-module of {type(model).__name__}")


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """One layer given by name or by module object -> ``(name, module)``."""
    if isinstance(layer, nn.Module):
        return module_name(model, layer), layer
    if not isinstance(layer, str):
        raise TypeError(f"a layer is a module name (str) or an nn.Module, not {type(layer).__name__}")
    return next(iter(resolve_layers(model, layer).items()))


def last_conv_name(model: nn.Module) -> str:
    """The last ``nn.Conv2d`` in definition order (the usual Grad-CAM layer)."""
    convs = conv_layer_names(model)
    if not convs:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer; layers: "
                         + ", ".join(layer_names(model)))
    return convs[-1]
