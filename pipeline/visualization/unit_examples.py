"""Dataset examples per unit: the test images that drive each unit hardest (``job=units``).

A *unit* is one channel of a convolution layer (its activation map's maximum over positions) or one
class of an output head (its logit; a one-logit head has two classes, scored -logit and +logit).
:func:`top_unit_examples` streams the test set through the model once, in batches, with forward
hooks that reduce each watched layer's output to ``[B, units]`` maxima (and their positions) at
once; a running top-k per unit (:class:`RunningTopK`) keeps the k best images. Nothing of size
``[N, C, H, W]`` is ever held: memory is one batch plus ``units x k`` numbers per layer.

The receptive field of a position (:func:`receptive_field`) is the geometry the attribution maps
are placed by (:mod:`pipeline.visualization.receptive_field`, traced through the modules); where
that has no extent it is measured here: the support of the input gradient of the layer's centre
position over a few random inputs, so strides, padding, pooling and residual branches count as they are. The
crop of an example is that field's square around the maximum's position, cut from the test image
(zeros where it runs past the image's border).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from pipeline.visualization.layers import resolve_layers

__all__ = ["ReceptiveField", "receptive_field", "RunningTopK", "UnitExamples", "top_unit_examples", "crop"]


@dataclass(frozen=True)
class ReceptiveField:
    """Where a layer's position ``(y, x)`` looks in the input: the square of side ``size`` pixels
    centred on ``start + p * jump`` (per axis; pixel indices, so a centre may fall between two)."""
    size: int
    jump: float
    start: float

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """``(y0, x0, y1, x1)`` in input pixels, half-open, not clipped to the image."""
        def side(p):
            lo = int(np.floor(self.start + p * self.jump - (self.size - 1) / 2 + 1e-6))
            return lo, lo + self.size
        (y0, y1), (x0, x1) = side(y), side(x)
        return y0, x0, y1, x1


def receptive_field(net: nn.Module, layer: str, input_shape: Sequence[int], samples: int = 8,
                    seed: int = 0) -> ReceptiveField:
    """The receptive field of ``layer``'s positions: the geometry of
    :func:`pipeline.visualization.receptive_field.layer_geometry` (traced through the modules) when it
    knows the field's extent, else measured here (see the module docstring); a layer whose output has
    no spatial map (a head) sees the whole image."""
    from pipeline.visualization.receptive_field import layer_geometry

    module = resolve_layers(net, [layer])[layer]
    c, h, w = (int(s) for s in input_shape)
    p = next(net.parameters())
    try:
        with torch.no_grad():
            geo, _ = layer_geometry(net, module, torch.zeros((1, c, h, w), device=p.device, dtype=p.dtype))
    except Exception:  # noqa: BLE001 - a head's output or an unusual module: measure it below
        geo = None
    if geo is not None and geo.y.extent > 0 and geo.y == geo.x:
        return ReceptiveField(size=int(geo.y.extent), jump=float(geo.y.stride), start=float(geo.y.offset))
    x = torch.rand((samples, c, h, w), generator=torch.Generator().manual_seed(seed)).to(p.device, p.dtype) * 2 - 1
    x.requires_grad_(True)
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, i, o: seen.append(o[0] if isinstance(o, (tuple, list)) else o))
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        with torch.enable_grad():
            net(x)
            out = seen[0]
            if out.dim() != 4:
                return ReceptiveField(size=max(h, w), jump=float(max(h, w)), start=(max(h, w) - 1) / 2)
            ho, wo = out.shape[-2:]
            py, px = ho // 2, wo // 2
            grad, = torch.autograd.grad(out[:, :, py, px].abs().sum(), x)
    finally:
        handle.remove()
        for m, t in modes:
            m.training = t
    support = grad.abs().sum(dim=(0, 1)) > 0  # [H, W]
    ys, xs = torch.nonzero(support, as_tuple=True)
    if len(ys) == 0:  # a unit that ignores its input: say the position's own pixel
        return ReceptiveField(size=1, jump=h / ho, start=(h / ho - 1) / 2)
    size = int(max(ys.max() - ys.min(), xs.max() - xs.min()) + 1)
    jump = h / ho
    centre = float(ys.min() + ys.max()) / 2  # square maps: the y axis stands for both
    return ReceptiveField(size=size, jump=jump, start=centre - py * jump)


class RunningTopK:
    """The ``k`` largest values per unit seen so far, with their image index and position; ties go
    to the earlier image (a stable sort over the kept entries, then the batch in order)."""

    def __init__(self, units: int, k: int):
        self.k = k
        self.values = torch.full((units, 0), -torch.inf)
        self.indices = torch.zeros((units, 0), dtype=torch.long)
        self.positions = torch.zeros((units, 0, 2), dtype=torch.long)

    def update(self, values: torch.Tensor, positions: torch.Tensor, first_index: int) -> None:
        """``values`` [B, units] of images ``first_index ...``; ``positions`` [B, units, 2]."""
        b, u = values.shape
        v = torch.cat([self.values, values.T.float()], dim=1)
        idx = torch.cat([self.indices, torch.arange(first_index, first_index + b).expand(u, b)], dim=1)
        pos = torch.cat([self.positions, positions.transpose(0, 1)], dim=1)
        order = torch.sort(v, dim=1, descending=True, stable=True).indices[:, : self.k]
        self.values = torch.gather(v, 1, order)
        self.indices = torch.gather(idx, 1, order)
        self.positions = torch.gather(pos, 1, order[..., None].expand(-1, -1, 2))


@dataclass
class UnitExamples:
    """The top-k test images of every unit of one layer (a convolution: ``kind="channel"``; a head:
    ``kind="class"``). Arrays are [units, k]; ``positions`` [units, k, 2] (y, x) in the layer's map
    (-1 for a head); ``boxes`` [units, k, 4] the receptive field's (y0, x0, y1, x1) in input pixels,
    half-open, possibly past the border; ``crops`` uint8 [units, k, C, s, s] those boxes cut from the
    images; ``labels`` the images' true classes."""
    layer: str
    kind: str
    values: np.ndarray
    indices: np.ndarray
    positions: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    crops: np.ndarray
    field: ReceptiveField
    images_seen: int
    attrs: dict = field(default_factory=dict)

    @property
    def units(self) -> int:
        return self.values.shape[0]


def crop(image: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """``image`` [C, H, W] cut to ``box`` (y0, x0, y1, x1), zeros outside the image."""
    y0, x0, y1, x1 = (int(b) for b in box)
    c, h, w = image.shape
    out = np.zeros((c, y1 - y0, x1 - x0), dtype=image.dtype)
    sy0, sx0, sy1, sx1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
    if sy1 > sy0 and sx1 > sx0:
        out[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[:, sy0:sy1, sx0:sx1]
    return out


def _reduce(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's output -> (values [B, units], positions [B, units, 2])."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    out = out.detach()
    if out.dim() == 4:
        b, c, h, w = out.shape
        if out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous():
            v, arg = out.permute(0, 2, 3, 1).reshape(b, h * w, c).max(dim=1)  # a view, no copy
        else:
            v, arg = out.reshape(b, c, h * w).max(dim=2)
        return v, torch.stack([arg // w, arg % w], dim=-1)
    if out.dim() == 2:
        if out.shape[1] == 1:  # one logit: class 0 is -logit, class 1 is +logit
            out = torch.cat([-out, out], dim=1)
        return out, torch.full(out.shape + (2,), -1, dtype=torch.long, device=out.device)
    raise ValueError(f"a unit's layer must output [B, C, H, W] or [B, classes], not {tuple(out.shape)}")


def top_unit_examples(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, layers: Sequence[str], k: int,
                      batch_size: int = 1024, device: torch.device | str = "cpu",
                      input_shape: Sequence[int] | None = None, progress=None) -> dict[str, UnitExamples]:
    """One streaming pass of ``images`` (uint8 [N, C, H, W], scaled to [0, 1] per batch, or float
    already in [0, 1]) through ``net``: the ``k`` images with the highest maximum of every unit of
    every layer in ``layers`` (module docstring)."""
    modules = resolve_layers(net, list(layers))
    n = int(images.shape[0])
    if n == 0:
        raise ValueError("no test image to rank")
    k = min(int(k), n)
    tops: dict[str, RunningTopK] = {}
    batch: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(name):
        def record(module, inputs, out):
            batch[name] = _reduce(out)
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in modules.items()]
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    starts = range(0, n, batch_size)
    try:
        with torch.inference_mode():
            for s in (progress(starts) if progress else starts):
                x = images[s:s + batch_size].to(device)
                x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
                x = x.contiguous(memory_format=torch.channels_last)  # ~20 % faster convolutions on CPU
                net(x)
                for name in layers:
                    v, pos = batch.pop(name)
                    if name not in tops:
                        tops[name] = RunningTopK(v.shape[1], k)
                    tops[name].update(v.cpu(), pos.cpu(), s)
    finally:
        for h in handles:
            h.remove()
        for m, t in modes:
            m.training = t
    shape = tuple(input_shape or images.shape[1:])
    out = {}
    for name in layers:
        t = tops[name]
        idx = t.indices.numpy()
        pos = t.positions.numpy()
        spatial = bool((pos >= 0).all())
        side = max(shape[1], shape[2])
        rf = receptive_field(net, name, shape) if spatial else ReceptiveField(side, float(side), (side - 1) / 2)
        if spatial:
            boxes = np.array([[rf.box(int(y), int(x)) for y, x in row] for row in pos], dtype=np.int64)
        else:  # a head: the whole image
            boxes = np.broadcast_to(np.array([0, 0, shape[1], shape[2]], np.int64), idx.shape + (4,)).copy()
        pics = images[torch.from_numpy(idx.reshape(-1))].cpu().numpy()
        if pics.dtype != np.uint8:
            pics = np.clip(np.round(pics * 255), 0, 255).astype(np.uint8)
        crops = np.stack([crop(p, b) for p, b in zip(pics, boxes.reshape(-1, 4))]).reshape(
            idx.shape + (pics.shape[1], boxes[0, 0, 2] - boxes[0, 0, 0], boxes[0, 0, 3] - boxes[0, 0, 1]))
        out[name] = UnitExamples(layer=name, kind="channel" if spatial else "class", values=t.values.numpy(),
                                 indices=idx, positions=pos, boxes=boxes,
                                 labels=labels[torch.from_numpy(idx.reshape(-1))].cpu().numpy().reshape(idx.shape),
                                 crops=crops, field=rf, images_seen=n)
    return out
