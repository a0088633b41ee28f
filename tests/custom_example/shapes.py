"""A user's image folder: coloured shapes (square, disc, cross), one folder per class, as PNG files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("cross", "disc", "square")


def draw(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    r = rng.uniform(0.18, 0.3) * size
    cx, cy = rng.uniform(r + 1, size - r - 1, 2)
    if kind == "square":
        m = (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
    elif kind == "disc":
        m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    else:
        t = max(1.0, r / 3)
        m = ((abs(xx - cx) <= t) & (abs(yy - cy) <= r)) | ((abs(yy - cy) <= t) & (abs(xx - cx) <= r))
    colour = rng.integers(80, 256, 3)
    img = np.zeros((size, size, 3), np.uint8) + rng.integers(0, 40, 3).astype(np.uint8)
    img[m] = colour
    return img


def make_folder(root: Path, per_class: int = 12, size: int = 64, grey: bool = False, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            im = Image.fromarray(draw(kind, size, rng))
            (im.convert("L") if grey else im).save(root / kind / f"{kind}_{i:03d}.png")
    return root
