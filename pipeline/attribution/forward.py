"""One forward pass of the model as the attribution methods run it: the target layer's output
captured, no autograd graph below it, and the two fast paths (a channels_last input below the
layer, unrequested heads cut to an empty batch). Every hook lives only during the call."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

__all__ = ["forward_at_layer", "unused_head_hooks"]


def forward_at_layer(model: nn.Module, xb: torch.Tensor, layer: nn.Module | None, layer_name: str, *,
                     capture: bool = False, grad: bool = False, channels_last: bool = False, share: bool = False,
                     keep_layout: bool = False, on_hand_on=None, hooks=()):
    """``(out, a)``: the model's output on ``xb``, and with ``capture`` the layer's output as a
    detached leaf ``a`` (``grad``: requiring grad, the rest of the forward recorded from it).

    With ``capture`` grad is off below the layer, so no graph is built there. The layer hands the
    rest of the model a contiguous copy: an in-place op after it cannot overwrite ``a``, and a
    ``channels_last`` input (the layout oneDNN is fast in on the CPU) stops at the layer. With
    ``share`` and ``grad`` it hands on ``a`` itself instead (contiguous, so at most one copy): an
    in-place op on a leaf that requires grad raises, so the caller can redo the pass without
    ``share``; nothing can overwrite ``a`` silently (``keep_layout``: not made contiguous, for a
    caller that runs no autograd through the big tensors above the layer; ``on_hand_on(a)`` is
    called with the tensor handed on). ``hooks``
    (handles, e.g. from :func:`unused_head_hooks`) are removed with the layer's hook.
    """
    captured: dict = {}

    def at_layer(module, inputs, out):
        if not capture:
            return out.contiguous()
        if "a" in captured:
            raise RuntimeError(f"layer {layer_name!r} ran twice in one forward pass; a CAM needs a layer used once")
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"a CAM needs a layer with a spatial output [N, C, h, w]; {layer_name!r} gives {shape}")
        a = out.detach()
        if share and grad and not keep_layout:
            # contiguous (a copy only for a channels_last output): the backward of the ops above the
            # layer mixes no memory layouts (a reduction's gradient comes back contiguous)
            a = a.contiguous()
        a = a.clone() if a.is_inference() else a
        if grad:
            a.requires_grad_(True)
            torch.set_grad_enabled(True)  # the graph from here on only
        captured["a"] = a
        if share and grad:
            if on_hand_on is not None:
                on_hand_on(a)
            return a
        return a.clone(memory_format=torch.contiguous_format)

    handles = list(hooks)
    try:
        if layer is not None and (capture or channels_last):
            handles.append(layer.register_forward_hook(at_layer))
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        if capture:
            torch.set_grad_enabled(False)  # no graph below the target layer
        out = model(xb)
    finally:
        for h in handles:
            h.remove()
    if capture and "a" not in captured:
        raise RuntimeError(f"layer {layer_name!r} was not executed by the forward pass")
    return out, captured.get("a")


def unused_head_hooks(model: nn.Module, heads: Sequence[str] | None, head_classes: Mapping[str, int] | None,
                      layer: nn.Module | None) -> list:
    """Forward pre-hooks cutting the input of the heads not in ``heads`` to an empty batch.

    Only for a model whose ``heads`` is an ``nn.ModuleDict`` keyed like ``head_classes`` (the
    project's MultiHead), and never for the head that holds the target ``layer``.
    """
    mh = getattr(model, "heads", None)
    if (heads is None or not isinstance(mh, nn.ModuleDict) or not head_classes
            or set(mh.keys()) != set(head_classes) or len(heads) >= len(head_classes)):
        return []

    def empty(module, args):
        return tuple(a[:0] if isinstance(a, torch.Tensor) and a.dim() > 0 else a for a in args)

    return [m.register_forward_pre_hook(empty) for name, m in mh.items()
            if name not in heads and not any(sub is layer for sub in m.modules())]
