"""The figure of ``job=units``: one row per unit -- its optimized picture (``job=filters``, when the
run has one) and then the receptive-field crops of its top test images, each labelled with the
image's class and the unit's value there. Long layers are laid out in side-by-side blocks of rows.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

from .figures import _labelled_grid

__all__ = ["render_unit_figure", "upscale"]

ROWS_PER_BLOCK = 32


def upscale(tile: np.ndarray, side: int) -> np.ndarray:
    """[H, W, 3] -> [side, side, 3] by nearest neighbour (a 3-pixel crop stays three blocks)."""
    h, w = tile.shape[:2]
    ys = np.minimum((np.arange(side) * h) // side, h - 1)
    xs = np.minimum((np.arange(side) * w) // side, w - 1)
    return tile[ys][:, xs]


def _rgb(chw: np.ndarray) -> np.ndarray:
    """[C, H, W] in [0, 1] -> [H, W, 3]."""
    img = np.clip(np.asarray(chw, np.float32), 0, 1)
    return np.repeat(img[0][..., None], 3, axis=2) if img.shape[0] != 3 else np.moveaxis(img, 0, -1)


def _short(name: str, width: int = 10) -> str:
    return "\n".join(textwrap.wrap(str(name), width)[:2]) or str(name)


def render_unit_figure(crops, values, labels, class_names: Sequence[str], path, title: str, *,
                       pictures: dict[int, np.ndarray] | None = None, unit_names: Sequence[str] | None = None,
                       side: int = 28, dpi: int = 90) -> Path:
    """``crops`` uint8 [U, k, C, s, s] (or float in [0, 1]), ``values`` / ``labels`` [U, k];
    ``pictures`` {unit: [C, H, W] in [0, 1]} the optimized pictures (a blank tile where none)."""
    crops = np.asarray(crops)
    crops = crops.astype(np.float32) / 255.0 if crops.dtype == np.uint8 else crops.astype(np.float32)
    u, k = crops.shape[:2]
    names = list(unit_names) if unit_names is not None else [f"u{i}" for i in range(u)]
    blocks = max(1, math.ceil(u / ROWS_PER_BLOCK))
    rows = math.ceil(u / blocks)
    cols = (k + 1) * blocks + (blocks - 1)  # a white column between the blocks
    blank = np.ones((side, side, 3), np.float32)
    tiles, tile_labels = [], []
    for r in range(rows):
        for b in range(blocks):
            if b:
                tiles.append(blank)
                tile_labels.append("")
            unit = b * rows + r
            if unit >= u:
                tiles += [blank] * (k + 1)
                tile_labels += [""] * (k + 1)
                continue
            pic = (pictures or {}).get(unit)
            tiles.append(upscale(_rgb(pic), side) if pic is not None else blank * 0.85)
            tile_labels.append(f"{names[unit]}\n{'picture' if pic is not None else '(no picture)'}")
            for j in range(k):
                tiles.append(upscale(_rgb(crops[unit, j]), side))
                lab = int(labels[unit, j])
                cname = class_names[lab] if 0 <= lab < len(class_names) else "?"
                tile_labels.append(f"{_short(cname)}\n{float(values[unit, j]):.3g}")
    return _labelled_grid(np.stack(tiles), tile_labels, Path(path), title, dpi, tile_in=0.62, ncols=cols)
