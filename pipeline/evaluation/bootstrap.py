"""Bootstrap confidence intervals over images for job=evaluate's scores, and what they settle.

Every score of job=evaluate is a mean over the sampled test images (the sanity correlation: over
images and re-initializations). :func:`bootstrap_ci` resamples the images with replacement
(``resamples`` times, seeded) and returns the percentile interval of the mean at ``level`` (95 %
by default). Values measured several times per image (``[R, N]``: the sanity check's R random
re-initializations) are resampled by image, their R values kept together. A difference of two
scores on the same images (map order vs random order) is one per-image array: the pairing is kept.

:func:`verdict` says whether an interval settles a pass/fail verdict at a threshold: "settled"
when the whole interval lies on one side, else "not settled by this sample".
"""
from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_ci", "settled", "verdict", "RESAMPLES", "LEVEL"]

RESAMPLES = 1000
LEVEL = 0.95


def _indices(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_ci(values, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0) -> tuple[float, float]:
    """``(low, high)``: the percentile bootstrap interval of ``mean(values)``, resampling images.

    ``values``: ``[N]`` per image, or ``[R, N]`` (R values per image, resampled together). NaNs
    are not supported (scores of job=evaluate are never NaN). One image gives ``(v, v)``; none
    gives ``(nan, nan)``."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2:
        raise ValueError(f"values must be [N] or [R, N], got shape {v.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if int(resamples) < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    n = v.shape[1]
    if n == 0:
        return float("nan"), float("nan")
    per_image = v.mean(0)  # every image has R values: the mean over all is the mean of these
    means = per_image[_indices(n, int(resamples), seed)].mean(1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def settled(ci: tuple[float, float], threshold: float) -> bool:
    """Whether the interval lies wholly on one side of ``threshold`` (touching it is not)."""
    low, high = ci
    return bool(high < threshold or low > threshold)


def verdict(ci: tuple[float, float], threshold: float) -> str:
    return "settled" if settled(ci, threshold) else "not settled by this sample"
