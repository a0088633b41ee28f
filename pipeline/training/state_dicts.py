"""A network trained elsewhere: ``python visualize.py ckpt=weights.pt model=custom
model.net._target_=my_package.MyNet dataset=...`` where the file is a plain ``state_dict``
(``torch.save(net.state_dict(), "weights.pt")``), loaded with ``torch.load(weights_only=True)``.

The network is built from the ``model=`` config (as train.py would build it) and the weights are
loaded strictly: a missing or unexpected key, or a tensor of another shape, is one clear error
naming them (a few of each), never a partly loaded model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from pipeline.training.checkpoints import CheckpointLoadError, explain_load_failure

__all__ = ["StateDictMismatchError", "is_plain_state_dict", "read_weights", "load_state_dict_module"]

SHOWN = 8


class StateDictMismatchError(CheckpointLoadError):
    """The state_dict's keys or shapes do not fit the network built from the config."""


def read_weights(path: Path, what: str):
    """The file's content, loaded with ``weights_only=True`` (never code)."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise explain_load_failure(Path(path), exc, what) from exc


def is_plain_state_dict(obj) -> bool:
    """A ``{name: tensor}`` mapping (not a Lightning checkpoint, which has ``state_dict`` and hyper-parameters)."""
    return (isinstance(obj, Mapping) and bool(obj) and "state_dict" not in obj
            and all(isinstance(k, str) for k in obj) and all(isinstance(v, torch.Tensor) for v in obj.values()))


def _listed(names) -> str:
    names = list(names)
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def check_fits(net: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str, target: str) -> None:
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} key(s) missing from the file: {_listed(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} key(s) the network does not have: {_listed(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} tensor(s) of another shape (file vs network): {_listed(shapes)}")
    raise StateDictMismatchError(
        f"{what}: this state_dict does not fit model.net._target_={target} as configured: " + "; ".join(parts)
        + ". Pass the class and the arguments the weights were trained with (model.net.<name>=..., "
          "data.channels, data.image_size, the dataset's classes), or the matching weights file.")


def load_state_dict_module(state: Mapping, cfg, datamodule, what: str, device):
    """The ``LitClassifier`` built from ``cfg.model`` with ``state`` loaded strictly into its network."""
    import hydra

    if not cfg.get("model") or not cfg.model.get("net"):
        raise CheckpointLoadError(
            f"{what} is a plain state_dict (weights only, no record of the network): say which network it is for, "
            f"e.g. model=custom model.net._target_=my_package.MyNet (plus its arguments) dataset=...")
    module = hydra.utils.instantiate(cfg.model, class_names=datamodule.class_names, dataset=datamodule.name)
    check_fits(module.net, state, what, str(cfg.model.net.get("_target_")))
    module.net.load_state_dict(dict(state), strict=True)
    return module.to(device)
