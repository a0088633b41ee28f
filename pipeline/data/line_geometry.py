"""Measure a line image's geometry from its pixels: an independent check of what a label says.

Nothing here knows how an image was drawn: it reads intensities only, so it measures the
generator's images, exported JPEGs and the course's own files the same way (the tests and
``benchmarks/bench_course_lines.py`` use it as the oracle for the generator).

For each image, the line's colour channel is the one with the most energy; its intensities
above a noise floor (``floor`` x the brightest pixel, which drops JPEG ringing) are the
weights of a second-moment (principal axis) fit:

* ``angle_deg``: the principal axis, in degrees counter-clockwise on screen, in [0, 180);
* ``length`` / ``width``: ``sqrt(12 x second moment)`` along / across that axis, which is the
  side of a uniform bar with the same spread (a 15 x 3 px bar measures 15 x 3);
* ``centre_x`` / ``centre_y``: the intensity-weighted centroid (pixel centres at integers);
* ``peak``: the brightest value of the colour channel (0-255);
* ``colour``: the index of the dominant channel (0 red, 1 green, 2 blue);
* ``touches_border``: a pixel of the outermost rows/columns brighter than ``border_floor`` x
  the brightest pixel (JPEG noise around a line reaches about 12 % of it).
"""
from __future__ import annotations

import numpy as np

#: Weights below this share of the image's brightest value count as background.
DEFAULT_FLOOR = 0.1
#: A border pixel above this share of the brightest value means the line touches the border.
BORDER_FLOOR = 0.25


def measure_lines(images, floor: float = DEFAULT_FLOOR, border_floor: float = BORDER_FLOOR) -> dict[str, np.ndarray]:
    """Geometry of each line in ``images`` (uint8 or float, ``[N, 3, H, W]`` or ``[N, H, W, 3]``
    when the last axis has 3 entries). Returns a dict of ``[N]`` arrays (see the module doc)."""
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"images must be [N, 3, H, W] or [N, H, W, 3], got shape {a.shape}")
    if a.shape[1] != 3 and a.shape[-1] == 3:
        a = np.moveaxis(a, -1, 1)
    a = a.astype(np.float64)
    n, _, h, w = a.shape
    energy = a.sum(axis=(2, 3))                           # [N, 3]
    colour = energy.argmax(axis=1)
    chan = a[np.arange(n), colour]                        # [N, H, W]
    peak = chan.max(axis=(1, 2))
    weights = np.clip(chan - floor * peak[:, None, None], 0, None)
    total = weights.sum(axis=(1, 2))
    total_safe = np.where(total > 0, total, 1.0)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    cx = (weights * xs).sum(axis=(1, 2)) / total_safe
    cy = (weights * ys).sum(axis=(1, 2)) / total_safe
    dx = xs[None] - cx[:, None, None]
    dy = ys[None] - cy[:, None, None]
    sxx = (weights * dx * dx).sum(axis=(1, 2)) / total_safe
    syy = (weights * dy * dy).sum(axis=(1, 2)) / total_safe
    sxy = (weights * dx * dy).sum(axis=(1, 2)) / total_safe
    # eigenvalues of [[sxx, sxy], [sxy, syy]]
    mean = (sxx + syy) / 2
    diff = np.sqrt(((sxx - syy) / 2) ** 2 + sxy ** 2)
    major, minor = mean + diff, np.clip(mean - diff, 0, None)
    # principal axis direction in image coordinates (y down); on screen the angle is -atan2
    theta_img = 0.5 * np.arctan2(2 * sxy, sxx - syy)
    angle = np.mod(-np.degrees(theta_img), 180.0)
    border = np.zeros_like(chan, dtype=bool)
    border[:, 0, :] = border[:, -1, :] = border[:, :, 0] = border[:, :, -1] = True
    touches = ((chan > border_floor * peak[:, None, None]) & border).any(axis=(1, 2))
    return {"length": np.sqrt(12 * major), "width": np.sqrt(12 * minor), "angle_deg": angle,
            "centre_x": cx, "centre_y": cy, "peak": peak, "colour": colour, "touches_border": touches,
            "empty": total <= 0}


def angle_error(measured_deg, expected_deg) -> np.ndarray:
    """Smallest difference between two line angles (mod 180 degrees), in degrees."""
    d = np.mod(np.asarray(measured_deg, dtype=np.float64) - np.asarray(expected_deg, dtype=np.float64), 180.0)
    return np.minimum(d, 180.0 - d)
