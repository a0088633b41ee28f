"""Localization scores: does a heatmap point at the object?

Pure, batched functions of attribution maps ``[N, H, W]`` and ground-truth masks
``[N, H, W]`` (bool; e.g. the lines dataset's line masks). Model-agnostic: they only
see tensors. Every score is per image (a tensor ``[N]``) and never NaN: an all-zero
map is a well-defined failure (miss, zero energy, zero IoU), not a division by zero.

* :func:`pointing_game` -- hit iff the map's maximum (first maximal pixel in row-major
  order, ``torch.argmax``) lies on the mask, optionally dilated by a tolerance of a few
  pixels (Zhang et al., 2016, used 15 px on ImageNet; 1 px suits 28x28 images). A map
  whose maximum equals its minimum (all zero, constant) points nowhere: it is a miss, and
  :func:`pointing_game_valid` flags it so a caller can report how many maps were blank.
* :func:`energy_in_mask` -- the share of the map's positive mass on the mask (the
  "energy-based pointing game" of Score-CAM). Chance level: :func:`mask_share`.
* :func:`topk_iou` -- IoU between the k highest pixels of the map and the mask. By
  default k is each mask's own size, where IoU, precision and recall coincide.
  Ties are broken by a stable sort (earlier pixels in row-major order win).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["dilate_masks", "pointing_game", "pointing_game_valid", "energy_in_mask",
           "mask_share", "topk_iou", "localization_scores"]


def _as_maps(maps) -> torch.Tensor:
    maps = torch.as_tensor(maps)
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim != 3:
        raise ValueError(f"maps must be [N, H, W], got shape {tuple(maps.shape)}")
    if not maps.is_floating_point():
        maps = maps.float()
    return maps


def _as_masks(masks, like: torch.Tensor | None = None) -> torch.Tensor:
    masks = torch.as_tensor(masks)
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {tuple(masks.shape)}")
    masks = masks.bool()
    if like is not None:
        if masks.shape != like.shape:
            raise ValueError(f"masks shape {tuple(masks.shape)} != maps shape {tuple(like.shape)}")
        masks = masks.to(like.device)
    return masks


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, else 0 (never NaN)."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def dilate_masks(masks, pixels: int = 1) -> torch.Tensor:
    """Square (Chebyshev-distance) dilation of bool masks ``[N, H, W]`` by ``pixels``.

    A pixel is on the result iff some mask pixel lies within ``pixels`` rows AND columns
    of it (a ``(2p+1) x (2p+1)`` max filter; the image border is not wrapped).
    ``pixels=0`` returns a copy.
    """
    masks = _as_masks(masks)
    pixels = int(pixels)
    if pixels < 0:
        raise ValueError(f"pixels must be >= 0, got {pixels}")
    if pixels == 0:
        return masks.clone()
    k = 2 * pixels + 1
    out = F.max_pool2d(masks[:, None].float(), kernel_size=k, stride=1, padding=pixels)
    return out[:, 0] > 0


def pointing_game_valid(maps) -> torch.Tensor:
    """Bool ``[N]``: the map has a peak at all (finite and ``max > min``)."""
    flat = _as_maps(maps).flatten(1)
    finite = torch.isfinite(flat).all(1)
    return finite & (flat.amax(1) > flat.amin(1))


def pointing_game(maps, masks, dilate: int = 1) -> torch.Tensor:
    """Bool ``[N]``: hit iff the map's argmax (first maximum, row-major) is on the mask
    dilated by ``dilate`` pixels. Maps without a peak (see :func:`pointing_game_valid`)
    are misses."""
    maps = _as_maps(maps)
    masks = _as_masks(masks, maps)
    target = dilate_masks(masks, dilate).flatten(1)
    peak = maps.flatten(1).argmax(1, keepdim=True)
    hit = target.gather(1, peak)[:, 0]
    return hit & pointing_game_valid(maps)


def energy_in_mask(maps, masks) -> torch.Tensor:
    """Float ``[N]``: ``sum(relu(map) * mask) / sum(relu(map))``; 0 for a map with no
    positive mass."""
    maps = _as_maps(maps)
    masks = _as_masks(masks, maps)
    pos = maps.clamp_min(0).flatten(1)
    inside = (pos * masks.flatten(1)).sum(1)
    return _safe_div(inside, pos.sum(1))


def mask_share(masks) -> torch.Tensor:
    """Float ``[N]``: the fraction of the image each mask covers (the chance level of
    :func:`energy_in_mask` for a uniform map)."""
    masks = _as_masks(masks)
    return masks.flatten(1).float().mean(1)


def _topk_sets(maps: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Bool ``[N, P]``: the ``k[n]`` highest pixels of each flattened map (stable ties)."""
    flat = maps.flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    p = flat.shape[1]
    positions = torch.arange(p, device=flat.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions)
    return rank < k.view(-1, 1)


def topk_iou(maps, masks, percent: float | None = None) -> torch.Tensor:
    """Float ``[N]``: IoU between the map's top-k pixels and the mask.

    ``percent=None``: k = the mask's own pixel count (per image), so IoU, precision and
    recall are all equal. Otherwise k = ``round(percent / 100 * H * W)`` for every
    image. NaN maps are not supported. An empty union (empty mask and k = 0) gives 0.
    """
    maps = _as_maps(maps)
    masks = _as_masks(masks, maps)
    m = masks.flatten(1)
    p = m.shape[1]
    if percent is None:
        k = m.sum(1)
    else:
        percent = float(percent)
        if not 0.0 <= percent <= 100.0:
            raise ValueError(f"percent must be in [0, 100], got {percent}")
        k = torch.full((m.shape[0],), int(math.floor(percent * p / 100.0 + 0.5)),
                       device=m.device, dtype=torch.long)
    top = _topk_sets(maps, k)
    inter = (top & m).sum(1).to(maps.dtype)
    union = (top | m).sum(1).to(maps.dtype)
    return _safe_div(inter, union)


def localization_scores(maps, masks, dilate: int = 1, percent: float | None = None) -> dict[str, torch.Tensor]:
    """All scores per image: ``pointing_game`` (bool), ``pointing_valid`` (bool),
    ``energy_in_mask``, ``mask_share`` and ``topk_iou`` (float), each ``[N]``."""
    maps = _as_maps(maps)
    masks = _as_masks(masks, maps)
    return {
        "pointing_game": pointing_game(maps, masks, dilate),
        "pointing_valid": pointing_game_valid(maps),
        "energy_in_mask": energy_in_mask(maps, masks),
        "mask_share": mask_share(masks),
        "topk_iou": topk_iou(maps, masks, percent),
    }
