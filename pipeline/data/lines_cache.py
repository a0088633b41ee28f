"""The generated lines dataset, cached (see :mod:`pipeline.data.array_cache`).

One file per parameter set (:func:`cache_path`): the arrays of :class:`LinesArrays` and, as
attributes, the generation parameters (style, augmentation ranges, which images are
augmented), the generator version and a sha256 of the arrays. A damaged or mismatched file is
reported and regenerated, never used.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from pipeline.data.array_cache import load_or_build, params_digest
from pipeline.data.lines import LinesArrays, generate_lines
from pipeline.data.lines_labels import NUM_CLASSES

#: Bump whenever generate_lines' output for the same parameters changes.
GENERATOR_VERSION = 3

FIELDS = ("images", "masks", "labels", "centres")


def _digest(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def cache_params(per_class: int, seed: int, image_size: int, margin: float, style: str = "sheet",
                 augment=None, augmented=None, pools=None) -> dict:
    """The attributes that identify a generated dataset (flat: numbers and strings)."""
    aug = "none" if augment is None else json.dumps(augment.as_dict(), sort_keys=True)
    if augment is None or augmented is None:
        which = "none"
    else:
        which = hashlib.sha256(np.packbits(np.asarray(augmented, dtype=bool)).tobytes()).hexdigest()
    return {"generator_version": GENERATOR_VERSION, "per_class": int(per_class), "seed": int(seed),
            "image_size": int(image_size), "margin": float(margin), "style": str(style),
            "augment": aug, "augmented": which,
            "pools": "none" if pools is None else _digest(np.asarray(pools, dtype=np.int64))}


def cache_path(cache_dir, params: dict) -> Path:
    """The cache file for these parameters (style, size and seed readable, the rest a digest)."""
    name = (f"lines_v{GENERATOR_VERSION}_{params['style']}_pc{params['per_class']}_seed{params['seed']}"
            f"_{params_digest(params)}.h5")
    return Path(cache_dir) / name


def _check(per_class: int, image_size: int):
    n, s = NUM_CLASSES * per_class, image_size
    layout = {"images": ((n, 3, s, s), np.uint8), "masks": ((n, s, s), np.bool_),
              "labels": ((n,), np.int64), "centres": ((n, 2), np.float32)}

    def check(arrays: dict) -> None:
        for name, (shape, dtype) in layout.items():
            a = arrays[name]
            if a.shape != shape or a.dtype != dtype:
                raise ValueError(f"dataset {name!r} is {a.dtype}{list(a.shape)}, "
                                 f"expected {np.dtype(dtype)}{list(shape)}")
    return check


def load_or_generate_lines(cache_dir, per_class: int = 1000, seed: int = 0, image_size: int = 28,
                           margin: float = 1.0, progress: bool = True, style: str = "sheet",
                           augment=None, augmented=None, pools=None) -> LinesArrays:
    """Load the lines dataset from the cache, generating (and caching) it if needed."""
    params = cache_params(per_class, seed, image_size, margin, style, augment, augmented, pools)

    def build():
        a = generate_lines(per_class=per_class, seed=seed, image_size=image_size, margin=margin,
                           progress=progress, style=style, augment=augment, augmented=augmented, pools=pools)
        return {f: getattr(a, f) for f in FIELDS}

    arrays = load_or_build(cache_path(cache_dir, params), params, FIELDS, build,
                           check=_check(per_class, image_size), what=f"lines dataset ({style})")
    return LinesArrays(**arrays)
