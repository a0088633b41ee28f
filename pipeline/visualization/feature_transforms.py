"""Transformation robustness for feature visualization (``filters.transforms=[jitter,scale,rotate]``).

Each optimization step shows the model a randomly moved copy of every image: a shift of up to
``jitter`` px, a zoom by a factor in [1 - scale, 1 + scale], a rotation by up to ``rotate``
degrees (counter-clockwise on screen), one affine resampling per image (bilinear, border
padding). The draws are made up front, ``[steps, n, 4]`` (dy, dx, zoom, degrees), from a seeded
generator, so a batched run and a one-target-at-a-time run see the same transforms.
A pattern that survives them is a feature of the unit, not of one pixel grid.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["TRANSFORMS", "check_transforms", "draw_transforms", "apply_transforms"]

TRANSFORMS = ("jitter", "scale", "rotate")


def check_transforms(names) -> list[str]:
    """The transform names, checked (a clear error for an unknown one)."""
    names = list(names or [])
    bad = [n for n in names if n not in TRANSFORMS]
    if bad:
        raise ValueError(f"unknown transform {', '.join(map(str, bad))}: the transforms are {', '.join(TRANSFORMS)}")
    return names


def draw_transforms(steps: int, n: int, names, *, jitter: float = 2.0, scale: float = 0.1, rotate: float = 10.0,
                    seed: int = 0) -> torch.Tensor:
    """``[steps, n, 4]``: per step and image (dy px, dx px, zoom factor, degrees); identity where off."""
    names = check_transforms(names)
    g = torch.Generator().manual_seed(int(seed) + 7919)
    u = torch.rand((steps, n, 4), generator=g, dtype=torch.float64) * 2 - 1  # uniform in [-1, 1]
    out = torch.zeros((steps, n, 4), dtype=torch.float64)
    out[..., 2] = 1.0
    if "jitter" in names:
        out[..., :2] = torch.round(u[..., :2] * jitter)
    if "scale" in names:
        out[..., 2] = 1.0 + u[..., 2] * scale
    if "rotate" in names:
        out[..., 3] = u[..., 3] * rotate
    return out


def apply_transforms(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Images ``[n, C, H, W]`` moved by ``t`` [n, 4] (dy, dx, zoom, degrees): the content is shifted by
    (dy, dx) pixels (down, right), zoomed about the centre and rotated counter-clockwise on screen."""
    if bool((t[:, :2] == 0).all() and (t[:, 2] == 1).all() and (t[:, 3] == 0).all()):
        return x
    n, _, h, w = x.shape
    t = t.to(device=x.device, dtype=x.dtype)
    a = t[:, 3] * (math.pi / 180.0)
    z = t[:, 2]
    cos, sin = torch.cos(a) / z, torch.sin(a) / z
    # output pixel (u, v) samples input at R(-a)/z (u - shift); in normalized coords y points down,
    # so a counter-clockwise rotation on screen is clockwise in (x, y)
    ty, tx = 2 * t[:, 0] / h, 2 * t[:, 1] / w
    theta = torch.zeros((n, 2, 3), dtype=x.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    theta[:, 0, 2] = -(cos * tx - sin * ty)
    theta[:, 1, 2] = -(sin * tx + cos * ty)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
