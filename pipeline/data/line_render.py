"""Drawing lines the way cameras and JPEG files show them: anti-aliased, blurred, compressed.

Vectorized steps, all pure functions of their arguments:

* :func:`rasterize_lines`: hard-edged lines (the ``sheet`` style), by the rule in
  :mod:`pipeline.data.lines` (a pixel is lit when its centre lies in the line's rectangle);

* :func:`line_coverage` gives each pixel's share of a line: the line's rectangle (centre,
  angle, length, width, as in :mod:`pipeline.data.lines`) filtered by an isotropic Gaussian
  ``sigma = sqrt(1/12 + blur^2)``. The ``1/12`` is the variance of a unit box pixel, so
  ``blur=0`` is plain anti-aliasing (a thin line's centre pixel reaches about 0.9, its
  neighbours fade out within a pixel). A Gaussian is separable in any rotated frame, so the
  coverage is a product of two erf differences, one along the line and one across it,
  exact for every angle.
* :func:`gaussian_blur` blurs hard-edged images, each with its own sigma;
* :func:`jpeg_roundtrip` encodes and decodes images with Pillow's JPEG codec (libjpeg) at a
  given quality per image, with 4:2:0 chroma subsampling by default as most writers use:
  on a pure red or blue line this bleeds colour into the neighbours and dims thin lines,
  as in the course's files. Images are tiled into one mosaic per quality (one encode per
  quality instead of one per image, about 5x faster), each tile padded to whole 16-px MCUs by
  edge replication as libjpeg pads a lone image. With 4:4:4 the result is byte-identical to
  encoding each image alone. With 4:2:0 the decoder's chroma upsampling looks one sample into
  the neighbouring tile, so the outermost ring of pixels can differ by a few levels, and when
  something is lit within 3 px of the bottom or right edge libjpeg's own padding of the
  half-resolution chroma differs from the replicated tile, so those edge blocks can too;
  everything else is identical (a test checks both).
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch

#: Variance (px^2) of a unit box pixel: the footprint the anti-aliasing filter stands for.
PIXEL_VARIANCE = 1.0 / 12.0

_MCU = 16          # 4:2:0 JPEG encodes 16x16 pixel macroblocks
_MOSAIC_COLS = 64  # tiles per mosaic row


def _erf_window(t: torch.Tensor, half: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Mass of N(t, sigma^2) inside [-half, half] (broadcast)."""
    s = sigma * math.sqrt(2.0)
    return 0.5 * (torch.erf((half - t) / s) + torch.erf((half + t) / s))


def line_coverage(centres_xy, angles_deg, lengths, widths, blur, image_size: int) -> torch.Tensor:
    """Anti-aliased, blurred lines: float32 ``[N, S, S]`` in [0, 1].

    ``centres_xy`` ``[N, 2]`` (x, y; pixel centres at integers, y down); ``angles_deg``
    counter-clockwise on screen; ``lengths``, ``widths`` and ``blur`` (Gaussian sigma in px,
    on top of the anti-aliasing) ``[N]`` or scalars.
    """
    c = torch.as_tensor(np.asarray(centres_xy, dtype=np.float32)).reshape(-1, 2)
    n = c.shape[0]

    def per_image(v) -> torch.Tensor:
        return torch.as_tensor(np.broadcast_to(np.asarray(v, dtype=np.float32), (n,)).copy())

    a = torch.deg2rad(per_image(angles_deg))
    half_l, half_w = per_image(lengths)[:, None, None] / 2, per_image(widths)[:, None, None] / 2
    sigma = torch.sqrt(PIXEL_VARIANCE + per_image(blur) ** 2)[:, None, None]
    coords = torch.arange(image_size, dtype=torch.float32)
    dx = coords[None, :] - c[:, 0:1]          # [N, S] columns
    dy = coords[None, :] - c[:, 1:2]          # [N, S] rows
    ux, uy = torch.cos(a)[:, None], -torch.sin(a)[:, None]
    nx, ny = torch.sin(a)[:, None], torch.cos(a)[:, None]
    along = (dy * uy)[:, :, None] + (dx * ux)[:, None, :]
    across = (dy * ny)[:, :, None] + (dx * nx)[:, None, :]
    return _erf_window(along, half_l, sigma) * _erf_window(across, half_w, sigma)


def jpeg_roundtrip(images: np.ndarray, quality, subsampling: str = "4:2:0") -> np.ndarray:
    """Encode and decode uint8 ``[N, 3, H, W]`` images as JPEG; ``quality`` (1-100) is one
    value or one per image. Returns a new uint8 array of the same shape."""
    from PIL import Image

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {images.shape}")
    if subsampling not in ("4:2:0", "4:2:2", "4:4:4"):
        raise ValueError(f"subsampling={subsampling!r} is invalid: use 4:2:0, 4:2:2 or 4:4:4")
    n, _, h, w = images.shape
    q = np.broadcast_to(np.asarray(quality, dtype=np.int64), (n,))
    if n and (q.min() < 1 or q.max() > 100):
        raise ValueError(f"JPEG quality must lie in 1..100, got {q.min()}..{q.max()}")
    th, tw = -(-h // _MCU) * _MCU, -(-w // _MCU) * _MCU
    out = np.empty_like(images)
    hwc = np.transpose(images, (0, 2, 3, 1))
    for quality_value in np.unique(q):
        idx = np.flatnonzero(q == quality_value)
        for start in range(0, len(idx), _MOSAIC_COLS * _MOSAIC_COLS):
            part = idx[start:start + _MOSAIC_COLS * _MOSAIC_COLS]
            tiles = np.pad(hwc[part], ((0, 0), (0, th - h), (0, tw - w), (0, 0)), mode="edge")
            cols = min(len(part), _MOSAIC_COLS)
            rows = -(-len(part) // cols)
            grid = np.zeros((rows * cols, th, tw, 3), dtype=np.uint8)
            grid[:len(part)] = tiles
            mosaic = grid.reshape(rows, cols, th, tw, 3).transpose(0, 2, 1, 3, 4).reshape(rows * th, cols * tw, 3)
            buf = io.BytesIO()
            Image.fromarray(mosaic).save(buf, format="JPEG", quality=int(quality_value), subsampling=subsampling)
            buf.seek(0)
            with Image.open(buf) as im:
                decoded = np.asarray(im.convert("RGB"))
            back = decoded.reshape(rows, th, cols, tw, 3).transpose(0, 2, 1, 3, 4).reshape(rows * cols, th, tw, 3)
            out[part] = np.transpose(back[:len(part), :h, :w], (0, 3, 1, 2))
    return out


def rasterize_lines(centres_xy, angles_deg, lengths, widths, image_size: int) -> np.ndarray:
    """Boolean masks ``[N, S, S]`` of the lines, by the rule in :mod:`pipeline.data.lines`.

    ``centres_xy`` is ``[N, 2]`` (x, y); ``angles_deg``, ``lengths`` and ``widths`` are
    ``[N]`` (or scalars, broadcast). Pure and vectorized.
    """
    centres = np.asarray(centres_xy, dtype=np.float64).reshape(-1, 2)
    n = len(centres)
    a = np.deg2rad(np.broadcast_to(np.asarray(angles_deg, dtype=np.float64), (n,)))
    half_l = np.broadcast_to(np.asarray(lengths, dtype=np.float64), (n,)) / 2
    half_w = np.broadcast_to(np.asarray(widths, dtype=np.float64), (n,)) / 2
    ux, uy = np.cos(a), -np.sin(a)
    nx, ny = np.sin(a), np.cos(a)
    coords = np.arange(image_size, dtype=np.float64)
    dx = coords[None, :] - centres[:, 0:1]  # [N, S] over columns
    dy = coords[None, :] - centres[:, 1:2]  # [N, S] over rows
    # Separable: (p - p0).u = dx*ux + dy*uy; broadcast rows [N, S, 1] with cols [N, 1, S].
    along = (dy * uy[:, None])[:, :, None] + (dx * ux[:, None])[:, None, :]
    across = (dy * ny[:, None])[:, :, None] + (dx * nx[:, None])[:, None, :]
    return (np.abs(along) <= half_l[:, None, None]) & (np.abs(across) <= half_w[:, None, None])


def gaussian_blur(images: torch.Tensor, sigma: np.ndarray) -> torch.Tensor:
    """Blur float ``[N, H, W]`` images, each with its own sigma (0 = unchanged), separably.
    Returns ``images`` itself when no sigma is positive, else a new tensor."""
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (len(images),))
    if not (sigma > 0).any():
        return images
    out = images.clone()
    for s in np.unique(sigma[sigma > 0]):
        idx = torch.as_tensor(np.flatnonzero(sigma == s))
        r = max(1, int(math.ceil(3 * s)))
        k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * s * s))
        k = (k / k.sum()).to(images.dtype)
        x = images[idx][:, None]
        x = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (r, r, 0, 0)), k.view(1, 1, 1, -1))
        x = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 0, r, r)), k.view(1, 1, -1, 1))
        out[idx] = x[:, 0]
    return out
