"""Tile a stack of 2-D maps (or RGB images) into one array, for a single ``imshow``.

Drawing one mosaic image instead of one subplot per channel is what keeps the figures fast
for wide layers (64 channels render in a fraction of a second).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["grid_shape", "mosaic", "tile_origins"]


def grid_shape(count: int, ncols: int | None = None) -> tuple[int, int]:
    """(nrows, ncols) of the grid for ``count`` tiles; ncols defaults to ceil(sqrt(count))."""
    count = int(count)
    if count <= 0:
        raise ValueError("need at least one tile")
    if ncols is None:
        ncols = math.ceil(math.sqrt(count))
    ncols = int(ncols)
    if ncols <= 0:
        raise ValueError(f"ncols must be positive, got {ncols}")
    ncols = min(ncols, count)
    return math.ceil(count / ncols), ncols


def mosaic(arr, ncols: int | None = None, pad: int = 1, pad_value: float = np.nan) -> np.ndarray:
    """Tile ``arr`` [C,H,W] (or [C,H,W,3]) row-major into a grid, ``pad`` pixels between tiles.

    Returns [R*H + (R-1)*pad, K*W + (K-1)*pad] (plus a trailing colour axis for RGB tiles),
    where R, K = grid_shape(C, ncols). Gaps and unused grid cells hold ``pad_value`` (NaN by
    default, drawn as the colour map's "bad" colour); integer input is promoted to float when
    the pad value needs it.
    """
    if hasattr(arr, "detach"):
        arr = arr.detach().cpu().numpy()
    arr = np.asarray(arr)
    if arr.ndim not in (3, 4):
        raise ValueError(f"mosaic expects [C,H,W] or [C,H,W,3], got shape {arr.shape}")
    pad = int(pad)
    if pad < 0:
        raise ValueError("pad must be >= 0")
    c, h, w = arr.shape[:3]
    extra = arr.shape[3:]
    nrows, ncols = grid_shape(c, ncols)
    dtype = np.result_type(arr.dtype, np.min_scalar_type(pad_value))
    cells = np.full((nrows * ncols, h + pad, w + pad) + extra, pad_value, dtype=dtype)
    cells[:c, :h, :w] = arr
    out = cells.reshape((nrows, ncols, h + pad, w + pad) + extra)
    out = out.swapaxes(1, 2).reshape((nrows * (h + pad), ncols * (w + pad)) + extra)
    return out[: nrows * (h + pad) - pad, : ncols * (w + pad) - pad]


def tile_origins(C: int, H: int, W: int, ncols: int | None = None, pad: int = 1) -> list[tuple[int, int]]:
    """Top-left pixel (row, col) of each of the C tiles in ``mosaic``'s output."""
    _, ncols = grid_shape(C, ncols)
    idx = np.arange(int(C))
    rows = (idx // ncols) * (int(H) + int(pad))
    cols = (idx % ncols) * (int(W) + int(pad))
    return list(zip(rows.tolist(), cols.tolist()))
