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

import hashlib
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
    """Blur float ``[N, H, W]`` images, each with its own sigma (0 = unchanged), separably, with a
    kernel of radius ``max(1, ceil(3 sigma))`` and zero padding; all images in one vectorized pass.
    Returns ``images`` itself when no sigma is positive, else a new tensor."""
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (len(images),))
    if not (sigma > 0).any():
        return images
    out = images.clone()
    idx = np.flatnonzero(sigma > 0)
    s = torch.as_tensor(sigma[idx], dtype=torch.float64)[:, None]
    radius = torch.clamp(torch.ceil(3 * s), min=1)
    r = int(radius.max())
    t = torch.arange(-r, r + 1, dtype=torch.float64)[None, :]
    k = torch.where(t.abs() <= radius, torch.exp(-t ** 2 / (2 * s * s)), torch.zeros(()))
    k = (k / k.sum(dim=1, keepdim=True)).to(images.dtype)                 # [M, K]
    x = images[torch.as_tensor(idx)]
    x = torch.nn.functional.pad(x, (r, r, 0, 0)).unfold(2, 2 * r + 1, 1)   # [M, H, W, K]
    x = torch.einsum("mhwk,mk->mhw", x, k)
    x = torch.nn.functional.pad(x, (0, 0, r, r)).unfold(1, 2 * r + 1, 1)   # [M, H, W, K] (rows)
    out[torch.as_tensor(idx)] = torch.einsum("mhwk,mk->mhw", x, k)
    return out


# -- the course's generator: a block of whole pixels, rotated as OpenCV's warpAffine does ------------
#: OpenCV's bilinear remap works in 1/32 pixel steps (INTER_BITS = 5) ...
INTER_BITS = 5
#: ... with source coordinates computed in 1/1024 steps (AB_BITS = 10) ...
AB_BITS = 10
#: ... and weights that sum to 2^15 (INTER_REMAP_COEF_BITS = 15).
COEF_BITS = 15


def rotation_matrix(centre_xy, angle_deg) -> np.ndarray:
    """OpenCV's ``getRotationMatrix2D(centre, angle, 1)``: ``[N, 2, 3]`` float64 maps source
    (x, y) to destination, counter-clockwise on screen for a positive angle."""
    a = np.deg2rad(np.asarray(angle_deg, dtype=np.float64)).reshape(-1)
    c = np.broadcast_to(np.asarray(centre_xy, dtype=np.float64), (len(a), 2))
    alpha, beta = np.cos(a), np.sin(a)
    m = np.empty((len(a), 2, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = alpha, beta, (1 - alpha) * c[:, 0] - beta * c[:, 1]
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = -beta, alpha, beta * c[:, 0] + (1 - alpha) * c[:, 1]
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """OpenCV's ``invertAffineTransform`` for ``[N, 2, 3]`` matrices (warpAffine samples the source
    through the inverse)."""
    d = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    d = np.where(d != 0, 1.0 / np.where(d != 0, d, 1.0), 0.0)
    a11, a22 = m[:, 1, 1] * d, m[:, 0, 0] * d
    a12, a21 = -m[:, 0, 1] * d, -m[:, 1, 0] * d
    b1 = -a11 * m[:, 0, 2] - a12 * m[:, 1, 2]
    b2 = -a21 * m[:, 0, 2] - a22 * m[:, 1, 2]
    return np.stack([np.stack([a11, a12, b1], 1), np.stack([a21, a22, b2], 1)], 1)


def warp_affine_bilinear(images: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``cv2.warpAffine(image, M, (W, H))`` at its defaults (bilinear, black constant border) for
    uint8 ``[N, H, W]`` images and ``[N, 2, 3]`` (or ``[2, 3]``) matrices, in OpenCV's fixed point:
    the inverse map in 1/1024 px (rounded half to even, as ``saturate_cast``), cut to 1/32 px
    steps, integer weights ``(32 - fx)(32 - fy) x 32`` ... summing to 2^15, rounded half up.
    Vectorized numpy; a test compares it with OpenCV itself."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"images must be uint8 [N, H, W], got {images.dtype} {images.shape}")
    n, h, w = images.shape
    inv = invert_affine(np.broadcast_to(np.asarray(m, dtype=np.float64).reshape(-1, 2, 3), (n, 2, 3)))
    scale = 1 << AB_BITS
    round_delta = scale // (1 << INTER_BITS) // 2
    xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    adelta = np.rint(inv[:, 0, 0, None] * xs * scale).astype(np.int64)              # [N, W]
    bdelta = np.rint(inv[:, 1, 0, None] * xs * scale).astype(np.int64)
    x0 = np.rint((inv[:, 0, 1, None] * ys + inv[:, 0, 2, None]) * scale).astype(np.int64) + round_delta  # [N, H]
    y0 = np.rint((inv[:, 1, 1, None] * ys + inv[:, 1, 2, None]) * scale).astype(np.int64) + round_delta
    shift = AB_BITS - INTER_BITS
    big_x = (x0[:, :, None] + adelta[:, None, :]) >> shift                          # [N, H, W]
    big_y = (y0[:, :, None] + bdelta[:, None, :]) >> shift
    mask = (1 << INTER_BITS) - 1
    sx, sy = big_x >> INTER_BITS, big_y >> INTER_BITS
    fx, fy = big_x & mask, big_y & mask
    one = 1 << INTER_BITS
    unit = 1 << (COEF_BITS - 2 * INTER_BITS)
    padded = np.zeros((n, h + 2, w + 2), dtype=np.int64)   # the black border, one pixel all round
    padded[:, 1:-1, 1:-1] = images
    ni = np.arange(n)[:, None, None]

    def at(yy, xx):
        inside = (yy >= -1) & (yy <= h) & (xx >= -1) & (xx <= w)
        return np.where(inside, padded[ni, np.clip(yy + 1, 0, h + 1), np.clip(xx + 1, 0, w + 1)], 0)

    acc = ((one - fx) * (one - fy) * at(sy, sx) + fx * (one - fy) * at(sy, sx + 1)
           + (one - fx) * fy * at(sy + 1, sx) + fx * fy * at(sy + 1, sx + 1)) * unit
    return np.clip((acc + (1 << (COEF_BITS - 1))) >> COEF_BITS, 0, 255).astype(np.uint8)


def course_block(lengths, widths, image_size: int = 28) -> np.ndarray:
    """The course generator's axis-aligned block, uint8 ``[N, S, S]`` (255 inside): rows
    ``int(c - w/2)`` to ``int(c + 1 + w/2)`` and columns ``int(c - l/2)`` to ``int(c + 1 + l/2)``
    (exclusive), ``c = S // 2`` (14 for 28 px); so l = 7 / 15 gives 8 / 16 columns and w = 1 / 3
    gives 2 / 4 rows, centred on (c - 0.5, c - 0.5)."""
    c = image_size // 2
    lengths = np.asarray(lengths, dtype=np.float64).reshape(-1)
    widths = np.broadcast_to(np.asarray(widths, dtype=np.float64), lengths.shape)
    r0, r1 = np.trunc(c - widths / 2).astype(int), np.trunc(c + 1 + widths / 2).astype(int)
    c0, c1 = np.trunc(c - lengths / 2).astype(int), np.trunc(c + 1 + lengths / 2).astype(int)
    idx = np.arange(image_size)
    rows = (idx[None] >= r0[:, None]) & (idx[None] < r1[:, None])
    cols = (idx[None] >= c0[:, None]) & (idx[None] < c1[:, None])
    return np.where(rows[:, :, None] & cols[:, None, :], 255, 0).astype(np.uint8)


def course_rotated_blocks(lengths, widths, angles_deg, image_size: int = 28) -> np.ndarray:
    """The course's lines before they are moved: the block of :func:`course_block` rotated by
    ``angles_deg`` counter-clockwise about (S/2, S/2) = (14, 14) with OpenCV's bilinear warp.
    uint8 ``[N, S, S]``."""
    lengths = np.asarray(lengths, dtype=np.float64).reshape(-1)
    keys = np.stack([lengths, np.broadcast_to(np.asarray(widths, dtype=np.float64), lengths.shape),
                     np.broadcast_to(np.asarray(angles_deg, dtype=np.float64), lengths.shape)], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)   # each distinct line is warped once
    blocks = course_block(uniq[:, 0], uniq[:, 1], image_size)
    c = image_size // 2
    return warp_affine_bilinear(blocks, rotation_matrix((c, c), uniq[:, 2]))[inverse.reshape(-1)]


def shift_images(images: np.ndarray, dx, dy) -> np.ndarray:
    """Move ``[N, H, W]`` images by whole pixels (``dx`` right, ``dy`` down, ``[N]`` ints), black fill."""
    images = np.asarray(images)
    n, h, w = images.shape
    dx = np.broadcast_to(np.asarray(dx, dtype=np.int64), (n,))
    dy = np.broadcast_to(np.asarray(dy, dtype=np.int64), (n,))
    rows = np.arange(h)[None, :] - dy[:, None]     # the source row of each destination row
    cols = np.arange(w)[None, :] - dx[:, None]
    ok = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    src = images[np.arange(n)[:, None, None], np.clip(rows, 0, h - 1)[:, :, None], np.clip(cols, 0, w - 1)[:, None, :]]
    return np.where(ok, src, 0).astype(images.dtype)


def jpeg_roundtrip_each(images: np.ndarray, quality, subsampling: str = "4:2:0") -> np.ndarray:
    """:func:`jpeg_roundtrip` with one JPEG file per image (exactly what a writer of separate
    files gives, edges included); identical images are encoded once."""
    from PIL import Image

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {images.shape}")
    n = len(images)
    q = np.broadcast_to(np.asarray(quality, dtype=np.int64), (n,))
    if n and (q.min() < 1 or q.max() > 100):
        raise ValueError(f"JPEG quality must lie in 1..100, got {q.min()}..{q.max()}")
    sub = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}.get(subsampling)
    if sub is None:
        raise ValueError(f"subsampling={subsampling!r} is invalid: use 4:2:0, 4:2:2 or 4:4:4")
    if not n:
        return np.empty_like(images)
    h, w = images.shape[2:]
    flat = images.reshape(n, -1)
    slot: dict[bytes, int] = {}
    inverse = np.empty(n, dtype=np.int64)
    first: list[int] = []
    for i in range(n):
        key = hashlib.blake2b(flat[i].tobytes() + bytes([int(q[i])]), digest_size=16).digest()
        k = slot.setdefault(key, len(first))
        if k == len(first):
            first.append(i)
        inverse[i] = k
    decoded = np.empty((len(first),) + images.shape[1:], dtype=np.uint8)
    for k, i in enumerate(first):
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(np.transpose(images[i], (1, 2, 0)))).save(
            buf, format="JPEG", quality=int(q[i]), subsampling=sub)
        # decoded straight from the bytes (Image.open's parsing costs twice the decoding here)
        decoded[k] = np.transpose(np.asarray(Image.frombytes("RGB", (w, h), buf.getvalue(), "jpeg", "RGB", "")), (2, 0, 1))
    return decoded[inverse]
