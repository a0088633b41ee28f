"""Intermediate activations: forward hooks that record chosen layers' outputs.

``ActivationRecorder`` is a context manager: hooks are registered on ``__enter__`` and always
removed on ``__exit__`` (also when the body raises). Each hook stores
``out.detach().clone()``: the clone matters, because a later ``nn.ReLU(inplace=True)`` would
otherwise overwrite the very tensor that was recorded.

Neither the recorder nor :func:`record_activations` changes ``model.train()/eval()``; the
caller sets the mode (``eval()`` for visualization, so batch norm uses its running stats).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from pipeline.visualization.layers import resolve_layers

__all__ = ["ActivationRecorder", "record_activations", "activation_stats"]


def _model_device(model: nn.Module) -> torch.device | None:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return None


class ActivationRecorder:
    """Record the outputs of named layers during forward passes.

    ``activations`` maps each layer name to the **list of per-forward tensors** (one entry per
    batch that went through the model while the recorder was active); :meth:`concatenated`
    joins them along the batch dimension. ``device`` (optional) moves each recorded tensor,
    e.g. ``"cpu"`` to keep GPU memory flat over many batches.

    >>> with ActivationRecorder(model, ["features.conv1", "features.relu1"]) as rec:
    ...     model(x)
    >>> rec.concatenated()["features.conv1"].shape
    """

    def __init__(self, model: nn.Module, layers: str | Sequence[str], device: torch.device | str | None = None):
        self.model = model
        self.layers = resolve_layers(model, layers)  # fails fast on a typo
        self.device = device
        self.activations: dict[str, list[torch.Tensor]] = {n: [] for n in self.layers}
        self._handles: list = []

    # -- hooks -------------------------------------------------------------------------
    def _hook(self, name: str):
        def hook(module, inputs, out):
            if isinstance(out, (tuple, list)):
                out = out[0]
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"layer {name!r} returned {type(out).__name__}, not a tensor")
            t = out.detach().clone()
            if self.device is not None:
                t = t.to(self.device)
            self.activations[name].append(t)
        return hook

    def attach(self) -> "ActivationRecorder":
        if not self._handles:
            self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.layers.items()]
        return self

    def remove(self) -> None:
        """Remove every hook (idempotent)."""
        handles, self._handles = self._handles, []
        for h in handles:
            h.remove()

    def clear(self) -> None:
        for v in self.activations.values():
            v.clear()

    def concatenated(self) -> dict[str, torch.Tensor]:
        """``{name: tensor}`` joined over the recorded batches (empty layers are left out)."""
        return {n: torch.cat(v, 0) for n, v in self.activations.items() if v}

    def __enter__(self) -> "ActivationRecorder":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.remove()

    def __del__(self):  # best effort: never leave hooks behind
        try:
            self.remove()
        except Exception:
            pass


def _cat_outputs(outs: list):
    if isinstance(outs[0], Mapping):
        return {k: torch.cat([o[k] for o in outs], 0) for k in outs[0]}
    return torch.cat(outs, 0)


def record_activations(model: nn.Module, x: torch.Tensor, layers: str | Sequence[str], batch_size: int = 256,
                       device: torch.device | str | None = None):
    """Forward ``x`` in chunks of ``batch_size`` under ``torch.no_grad`` and record ``layers``.

    Returns ``(activations, outputs)``: ``activations`` is ``{name: tensor}`` concatenated over
    the batch, ``outputs`` the model outputs concatenated likewise (a tensor, or a dict of
    tensors for a multi-head model). ``x`` is moved to the model's device; ``device`` moves the
    recorded tensors and outputs (e.g. ``"cpu"``). The model's train/eval mode is not touched.
    """
    x = torch.as_tensor(x)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    mdev = _model_device(model)
    outs = []
    with ActivationRecorder(model, layers, device=device) as rec, torch.no_grad():
        for i in range(0, max(len(x), 1), batch_size):
            xb = x[i:i + batch_size]
            if mdev is not None:
                xb = xb.to(mdev)
            out = model(xb)
            if device is not None:
                out = {k: v.to(device) for k, v in out.items()} if isinstance(out, Mapping) else out.to(device)
            outs.append(out)
    return rec.concatenated(), _cat_outputs(outs)


def activation_stats(act: torch.Tensor) -> dict[str, float]:
    """Summary numbers of one layer's activations ``[N, C, ...]``.

    ``sparsity``: fraction of exact zeros; ``mean``, ``std`` (population), ``min``, ``max``;
    ``dead_channels``: fraction of channels (dim 1) that are zero for every image and position
    (a 1-D tensor counts as one channel).
    """
    a = act.detach().float()
    if a.numel() == 0:
        raise ValueError("empty activation tensor")
    zero = a == 0
    if a.dim() >= 2:
        per_channel = zero.transpose(0, 1).reshape(a.shape[1], -1).all(dim=1)
    else:
        per_channel = zero.all().reshape(1)
    return {
        "sparsity": zero.float().mean().item(),
        "mean": a.mean().item(),
        "std": a.std(unbiased=False).item(),
        "min": a.min().item(),
        "max": a.max().item(),
        "dead_channels": per_channel.float().mean().item(),
    }
