"""What every attribution method returns: :class:`AttributionResult`, one per head.

The maps come in three forms: ``maps`` (at the input's size, raw scale, >= 0), ``maps_normalized``
(per image min-max to [0, 1] by :func:`normalize_maps`, never NaN) and ``layer_maps`` (at the
layer's resolution for the CAMs; the same as ``maps`` for the input-gradient methods). An image
whose map is zero everywhere is flagged in ``all_zero`` and explained by :meth:`~AttributionResult.notes`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

__all__ = ["AttributionResult", "ChunkMaps", "normalize_maps"]


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Per-image min-max to [0, 1] of ``[N, H, W]`` maps, never NaN.

    An all-zero map stays exactly zero; a constant non-zero map becomes all ones.
    """
    flat = maps.flatten(1)
    mn, mx = flat.amin(1), flat.amax(1)   # (torch.aminmax measured 10x slower on the CPU)
    rng = mx - mn
    ok = rng > 0
    out = (maps - mn.view(-1, 1, 1)) / torch.where(ok, rng, torch.ones_like(rng)).view(-1, 1, 1)
    flat_rows = torch.nonzero(~ok).flatten()
    if len(flat_rows):   # all zero stays 0, a constant non-zero map becomes 1
        out[flat_rows] = (maps[flat_rows] > 0).to(maps.dtype)
    return out.clamp_(0.0, 1.0)


def _all_zero(maps: torch.Tensor) -> torch.Tensor:
    """Bool ``[N]``: no pixel of the map is > 0 (a row max is cheaper than a comparison of every
    pixel; a row holding NaN is decided pixel by pixel, as NaN hides its max)."""
    flat = maps.flatten(1)
    mx = flat.amax(1)
    out = ~(mx > 0)
    nan = torch.isnan(mx)
    if bool(nan.any()):
        out[nan] = ~(flat[nan] > 0).any(1)
    return out


@dataclass
class ChunkMaps:
    """One head's maps for one chunk of images, as a method's ``_chunk`` returns them.

    ``targets`` are the class indices explained, ``scores`` the differentiated target scores,
    ``probs`` the target's probability; the optional fields are what the method has.
    """

    maps: torch.Tensor
    targets: torch.Tensor
    scores: torch.Tensor
    probs: torch.Tensor
    binary: bool
    layer_maps: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    zero_grad: torch.Tensor | None = None
    attributions: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)

    def cpu(self) -> "ChunkMaps":
        """A copy with every tensor detached and on the CPU."""
        def move(v):
            return v.detach().cpu() if isinstance(v, torch.Tensor) else v
        values = {f.name: move(getattr(self, f.name)) for f in fields(self)}
        values["extras"] = {k: move(v) for k, v in self.extras.items()}
        return ChunkMaps(**values)


def _cat(parts: list[ChunkMaps], name: str, dtype=None) -> torch.Tensor | None:
    if getattr(parts[0], name) is None:
        return None
    if len(parts) == 1:   # one chunk: its own tensor, unless it is a view into a larger one (every head's maps)
        t = getattr(parts[0], name)
        t = t.clone() if t._is_view() else t
    else:
        t = torch.cat([getattr(p, name) for p in parts], 0)
    return t if dtype is None else t.to(dtype)


@dataclass
class AttributionResult:
    """The maps of one method and one head for N images (all tensors on the CPU).

    maps             float32 [N, H, W]: at the input size, raw scale, >= 0
    maps_normalized  float32 [N, H, W]: per-image min-max to [0, 1]; all-zero maps stay 0
    layer_maps       float32 [N, h, w]: at the layer's resolution (CAMs), else ``maps``
    targets          long [N]: the class each map explains
    scores           float32 [N]: the differentiated score (target logit, or +/-logit)
    probs            float32 [N]: probability of the target (softmax, or sigmoid for 1 unit)
    all_zero         bool [N]: the map is zero everywhere
    weights          float32 [N, C] or None: channel weights (Grad-CAM: mean_hw(dScore/dA))
    zero_grad        bool [N] or None: the gradient itself was exactly zero everywhere
    attributions     float32 [N, C, H, W] or None: input-space attribution of the gradient methods
    method           the name of the method that made it
    extras           method-specific per-image tensors (e.g. Integrated Gradients' ``delta``)
    zero_reason      why a map of this method can be all zeros (used by :meth:`notes`)
    """

    maps: torch.Tensor
    maps_normalized: torch.Tensor
    layer_maps: torch.Tensor
    targets: torch.Tensor
    scores: torch.Tensor
    probs: torch.Tensor
    all_zero: torch.Tensor
    weights: torch.Tensor | None = None
    zero_grad: torch.Tensor | None = None
    layer: str = ""
    head: str = "class"
    binary: bool = field(default=False, repr=False)
    attributions: torch.Tensor | None = None
    method: str = ""
    extras: dict = field(default_factory=dict)
    zero_reason: str = "no positive evidence for the target"

    @classmethod
    def from_chunks(cls, parts: list[ChunkMaps], *, layer: str, head: str, method: str,
                    zero_reason: str) -> "AttributionResult":
        """Concatenate the per-chunk results of one head."""
        maps = _cat(parts, "maps", torch.float32).clamp_min_(0)   # _cat's tensor is this result's own
        layer_maps = _cat(parts, "layer_maps", torch.float32)
        return cls(maps=maps, maps_normalized=normalize_maps(maps),
                   layer_maps=maps if layer_maps is None else layer_maps,
                   targets=_cat(parts, "targets", torch.long), scores=_cat(parts, "scores", torch.float32),
                   probs=_cat(parts, "probs", torch.float32), all_zero=_all_zero(maps),
                   weights=_cat(parts, "weights", torch.float32), zero_grad=_cat(parts, "zero_grad"),
                   layer=layer, head=head, binary=parts[0].binary,
                   attributions=_cat(parts, "attributions", torch.float32), method=method,
                   extras={k: torch.cat([p.extras[k] for p in parts], 0) for k in parts[0].extras},
                   zero_reason=zero_reason)

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    def notes(self) -> list[str]:
        """Human-readable remarks, one per image whose map needs explaining."""
        out = []
        prefix = ("" if self.head == "class" else f"head {self.head}, ") + f"{self.method or 'map'}: "
        gradient_of = self.layer if self.layer and self.layer != "input" else "the input"
        for i in torch.nonzero(self.all_zero).flatten().tolist():
            if self.zero_grad is not None and bool(self.zero_grad[i]):
                why = f"the gradient of the target score w.r.t. {gradient_of} is zero everywhere"
            else:
                why = self.zero_reason
            out.append(f"{prefix}image {i} (target {int(self.targets[i])}): {why}, map is all zeros")
        flat = self.maps.flatten(1)
        const = (~self.all_zero) & (flat.amax(1) == flat.amin(1))
        for i in torch.nonzero(const).flatten().tolist():
            out.append(f"{prefix}image {i} (target {int(self.targets[i])}): map is constant, "
                       "normalized to all ones")
        return out
