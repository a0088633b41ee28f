"""Any ``nn.Module`` as the network: ``model=custom model.net._target_=my_package.MyNet`` (+ its arguments).

:func:`build_net` imports it (the working directory is on the import path, so ``my_package`` may
be a folder next to where ``train.py``/``visualize.py`` is run, or an installed package) and turns
every way this can go wrong into one :class:`CustomModelError`. :func:`head_classes_of` gives the
network's heads: its own ``head_classes`` attribute when it has one (the project's models), else
learned from one forward pass of a blank image: a tensor ``[N, K]`` is the head ``class`` with K
classes (K=1: one sigmoid unit, two classes), a dict ``{name: [N, K]}`` one head per key.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Mapping

import torch
from torch import nn

from pipeline.errors import CnnvisError

__all__ = ["CustomModelError", "build_net", "head_classes_of", "heads_from_output", "normalize_inputs"]


class CustomModelError(CnnvisError, ValueError):
    """The network named by ``model.net._target_`` cannot be built or does not return logits."""


def _ensure_cwd_importable() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of ``exc``'s chain (what actually went wrong inside the constructor)."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def _arguments(net_cfg: Mapping) -> str:
    return ", ".join(f"{k}={v}" for k, v in net_cfg.items() if k != "_target_") or "none"


def build_net(net_cfg: Mapping) -> nn.Module:
    """``hydra.utils.instantiate(net_cfg)``, checked to be an ``nn.Module``; a clear error otherwise."""
    import hydra
    from hydra.errors import InstantiationException

    _ensure_cwd_importable()
    target = (net_cfg or {}).get("_target_") if isinstance(net_cfg, Mapping) else None
    if not target or target == "???":
        raise CustomModelError("model=custom needs the network's class: pass model.net._target_=my_package.MyNet "
                               "(importable from the working directory or an installed package), plus its "
                               "arguments as model.net.<name>=...")
    try:
        net = hydra.utils.instantiate(net_cfg)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(cause, (ImportError, AttributeError)) or "Error locating target" in msg:
            raise CustomModelError(
                f"model.net._target_={target}: cannot import it ({msg}). Give the full dotted path of an nn.Module "
                f"class, e.g. model.net._target_=my_package.my_module.MyNet, importable from the working directory "
                f"({os.getcwd()}) or an installed package.") from exc
        root = _root_cause(cause)
        why = f"{type(root).__name__}: {str(root).splitlines()[0]}" if root is not exc and str(root).strip() else msg
        raise CustomModelError(f"model.net._target_={target}: building it failed ({why}). Check its arguments "
                               f"(model.net.<name>=..., now {_arguments(net_cfg)}).") from exc
    if not isinstance(net, nn.Module):
        raise CustomModelError(f"model.net._target_={target} gave a {type(net).__name__}, not a torch.nn.Module")
    return net


def heads_from_output(out: Any, where: str = "the network") -> dict[str, int]:
    """``{head: classes}`` of one forward's output: logits ``[N, K]`` or a dict of them."""
    def classes(name: str, t: Any) -> int:
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.shape[1] < 1 or not t.is_floating_point():
            what = f"a tensor of shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else f"a {type(t).__name__}"
            raise CustomModelError(
                f"{where} returned {what} for {name}: it must return logits, a float tensor [N, K] (K classes; "
                f"K=1 for one sigmoid unit), or a dict {{head: logits [N, K]}} for several heads. Flatten or "
                f"pool the features before the last layer, and return logits (no softmax).")
        return 2 if t.shape[1] == 1 else int(t.shape[1])

    if isinstance(out, Mapping):
        if not out or not all(isinstance(k, str) for k in out):
            raise CustomModelError(f"{where} returned a dict without string keys ({list(out)[:4]}): use "
                                   f"{{head_name: logits [N, K]}}")
        return {k: classes(f"head {k!r}", v) for k, v in out.items()}
    return {"class": classes("its output", out)}


def head_classes_of(net: nn.Module, input_shape=None, where: str = "the network") -> dict[str, int]:
    """The network's own ``head_classes``, or the heads of one forward pass on a blank image."""
    hc = getattr(net, "head_classes", None)
    if isinstance(hc, Mapping) and hc:
        return dict(hc)
    if not input_shape:
        raise CustomModelError(f"{where} has no head_classes attribute and no input shape was given to find its "
                               f"outputs (model.input_shape=[C, H, W])")
    was_training = net.training
    param = next(net.parameters(), None)
    try:
        net.eval()
        with torch.no_grad():
            out = net(torch.zeros(2, *[int(s) for s in input_shape],
                                  device=param.device if param is not None else "cpu"))
    except CustomModelError:
        raise
    except Exception as exc:
        raise CustomModelError(f"{where} fails on a blank batch of shape [2, {', '.join(map(str, input_shape))}] "
                               f"(data.channels, data.image_size): {type(exc).__name__}: "
                               f"{(str(exc).splitlines() or [''])[0]}") from exc
    finally:
        net.train(was_training)
    return heads_from_output(out, where)


def normalize_inputs(net: nn.Module, normalize: Mapping | None) -> None:
    """``model.normalize={mean: [...], std: [...]}`` (one value per channel, or one for all): a forward
    pre-hook on the network computes ``(x - mean) / std``, so the network sees normalized images while
    the data, the stored inputs and every input-space picture (filters, saliency) stay in [0, 1]; the
    layer names and the state_dict are unchanged."""
    if not normalize:
        return
    try:
        mean = [float(v) for v in (normalize["mean"] if isinstance(normalize["mean"], (list, tuple)) else [normalize["mean"]])]
        std = [float(v) for v in (normalize["std"] if isinstance(normalize["std"], (list, tuple)) else [normalize["std"]])]
    except (KeyError, TypeError, ValueError) as exc:
        raise CustomModelError(f"model.normalize={dict(normalize)} is invalid: use {{mean: [m1, ...], std: [s1, ...]}}, "
                               f"one number per channel (or one for all)") from exc
    if not all(s > 0 for s in std):
        raise CustomModelError(f"model.normalize.std={std} is invalid: every std must be > 0")

    def pre(module, args):
        x = args[0]
        shape = (1, -1, 1, 1)
        return (x - x.new_tensor(mean).view(shape)) / x.new_tensor(std).view(shape), *args[1:]

    net.register_forward_pre_hook(pre)
