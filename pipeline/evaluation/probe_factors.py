"""The shortcut probe's factors: which exist, their levels checked, named and described, and
what each does to the test images (job=probe, :mod:`pipeline.jobs.probe`).

* lines (a datamodule with ``render_params``): the scored test images are **redrawn** from their
  drawing parameters (:class:`~pipeline.data.line_styles.RenderParams`) with one field changed:
  ``brightness`` (x level on the drawn brightness, before the JPEG round trip), ``blur`` (the
  Gaussian sigma in px, replacing the style's), ``jpeg`` (the JPEG quality, replacing the
  style's; chroma subsampling kept, 4:4:4 for the sheet style), ``width`` / ``length`` (px added
  to the line's core width / length) and ``centre`` (0 = as drawn, 1 = the centre moved to a
  corner of its valid range, image ``i`` to corner ``i mod 4``; levels in between move it part
  of the way);
* any other dataset: the image-level factors ``brightness`` (pixel values x level, clipped to 1),
  ``blur`` (Gaussian sigma on the image) and ``shift`` (translation by level px towards a corner,
  image ``i`` to corner ``i mod 4``, zero fill).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from omegaconf import OmegaConf

from pipeline.errors import CnnvisError

#: Factors that redraw a line from its drawing parameters (datasets with ``render_params``).
LINE_FACTORS = ("brightness", "blur", "jpeg", "width", "length", "centre")
#: Factors applied to the stored images themselves (every other dataset).
IMAGE_FACTORS = ("brightness", "blur", "shift")
FACTORS = tuple(dict.fromkeys(LINE_FACTORS + IMAGE_FACTORS))
#: A size change of at least this share of the gap between the two classes of the same head
#: (thin/thick, short/long) measures where the head puts its class boundary, not a shortcut.
BOUNDARY_SHARE = 0.25
#: Corners, in the order images are sent to them: (x at its high end?, y at its high end?).
_CORNERS = ((0, 0), (1, 0), (0, 1), (1, 1))


# -- config checks ---------------------------------------------------------------------------
def _number(factor: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CnnvisError(f"probe.factors.{factor}: level {value!r} is invalid: levels must be numbers")
    return float(value)


def check_factors(spec, renderable: bool, style=None, image_size: int = 28,
                  only=None) -> tuple[dict[str, list[float]], list[str]]:
    """``probe.factors`` (factor -> levels) checked: (the factors to run with their levels, the
    configured factors that do not apply to this dataset). Raises :class:`CnnvisError`."""
    if spec is None:
        raise CnnvisError("probe.factors is missing: give each factor a list of levels (see conf/visualize.yaml)")
    spec = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else dict(spec)
    applicable = LINE_FACTORS if renderable else IMAGE_FACTORS
    unknown = [f for f in spec if f not in FACTORS]
    if unknown:
        raise CnnvisError(f"probe.factors: unknown factor {', '.join(map(str, unknown))}; valid factors: "
                          f"{', '.join(LINE_FACTORS)} (lines, redrawn) and {', '.join(IMAGE_FACTORS)} (other datasets)")
    if only is not None:
        only = [str(f) for f in (OmegaConf.to_container(only) if OmegaConf.is_config(only) else only)]
        bad = [f for f in only if f not in spec or f not in applicable]
        if bad or not only:
            raise CnnvisError(f"probe.only={only} is invalid: choose among the factors that apply to this dataset "
                              f"and have levels in probe.factors: {', '.join(f for f in spec if f in applicable)}")
    out: dict[str, list[float]] = {}
    for factor, levels in spec.items():
        if not isinstance(levels, (list, tuple)) or not levels:
            raise CnnvisError(f"probe.factors.{factor}={levels!r} is invalid: give a non-empty list of levels, "
                              f"e.g. probe.factors.{factor}=[{_EXAMPLES[factor]}]")
        values = [_number(factor, v) for v in levels]
        _check_levels(factor, values, style, image_size)
        if factor in applicable and (only is None or factor in only):
            out[factor] = values
    skipped = [f for f in spec if f not in applicable]
    return out, skipped


_EXAMPLES = {"brightness": "1,0.85,0.7", "blur": "0,0.5,1", "jpeg": "95,75,50", "width": "0,1", "length": "0,1",
             "centre": "0,1", "shift": "0,2,4"}


def _check_levels(factor: str, values: list[float], style, image_size: int) -> None:
    def fail(why: str):
        raise CnnvisError(f"probe.factors.{factor}={_fmt_list(values)} is invalid: {why}")

    if factor == "brightness" and min(values) <= 0:
        fail("a brightness factor must be > 0 (1 = as drawn, 0.7 = dimmed)")
    if factor == "blur" and (min(values) < 0 or max(values) > 5):
        fail("a blur sigma must lie in [0, 5] px")
    if factor == "jpeg" and any(v != int(v) or not 1 <= v <= 100 for v in values):
        fail("a JPEG quality must be an integer in 1..100")
    if factor == "centre" and (min(values) < 0 or max(values) > 1):
        fail("levels are the share of the way to a corner, in [0, 1] (0 = as drawn, 1 = at the corner)")
    if factor == "shift" and any(v != int(v) or not 0 <= v < image_size / 2 for v in values):
        fail(f"a shift must be a whole number of pixels in 0..{math.ceil(image_size / 2) - 1}")
    if factor in ("width", "length") and style is not None:
        from pipeline.data.line_styles import MIN_SOFT_WIDTH

        sizes = style.widths if factor == "width" else style.lengths
        least = (MIN_SOFT_WIDTH if style.anti_alias else 1.0) if factor == "width" else 1.0
        if min(sizes) + min(values) < least:
            fail(f"the {style.name} style's {min(sizes):g} px {factor} would drop below {least:g} px")
        if max(values) > 10:
            fail(f"at most 10 px can be added to the {factor}")


def _fmt_list(values) -> str:
    return "[" + ",".join(f"{v:g}" for v in values) + "]"


# -- levels: names and what they do ----------------------------------------------------------
_LEVEL_NAMES = {
    "brightness": lambda v: f"x{v:g}",
    "blur": lambda v: f"sigma {v:g}",
    "jpeg": lambda v: f"q{int(v)}",
    "width": lambda v: f"{v:+g} px",
    "length": lambda v: f"{v:+g} px",
    "centre": lambda v: "as drawn" if v == 0 else "corner" if v == 1 else f"{v:.0%} to a corner",
    "shift": lambda v: f"{int(v)} px",
}


def level_name(factor: str, level: float) -> str:
    """How a level reads in tables and figures ("x0.7", "sigma 1", "q50", "+1 px", "corner")."""
    return _LEVEL_NAMES.get(factor, lambda v: f"{v:g}")(level)


def describe(factor: str, renderable: bool, style=None) -> str:
    if factor == "brightness":
        return ("x the drawn brightness, before the JPEG round trip" if renderable
                else "pixel values x level, clipped to 1")
    if factor == "blur":
        if renderable:
            base = f" (the {style.name} style's: {style.blur:g})" if style is not None else ""
            return f"Gaussian sigma in px, replacing the drawn blur{base}"
        return "Gaussian sigma in px, on the image"
    if factor == "jpeg":
        base = (f" (the {style.name} style's: {style.jpeg_quality or 'none'}, {style.jpeg_subsampling})"
                if style is not None else "")
        return f"JPEG quality, replacing the drawn one{base}; chroma subsampling kept (4:4:4 when none)"
    if factor == "width":
        return "px added to the line's width" + (f" (thin / thick: {style.widths[0]:g} / {style.widths[1]:g} px)"
                                                 if style is not None else "")
    if factor == "length":
        return "px added to the line's length" + (f" (short / long: {style.lengths[0]:g} / {style.lengths[1]:g} px)"
                                                  if style is not None else "")
    if factor == "centre":
        return "0 = as drawn, 1 = moved to a corner of the positions that keep the line inside (round robin)"
    if factor == "shift":
        return "image translated by level px towards a corner (round robin), zero fill"
    return "the images as drawn" if renderable else "the images as stored"


def corner_centres(params, level: float, image_size: int, margin: float) -> np.ndarray:
    """Centres moved ``level`` of the way to a corner of their valid range, image ``i`` to corner ``i mod 4``."""
    from pipeline.data.line_styles import centre_range

    lo, hi = centre_range(params, image_size, margin)   # the course's blocks move by whole pixels
    pick = np.asarray(_CORNERS)[np.arange(len(params)) % 4]        # [N, 2] 0 = low end, 1 = high end
    corner = np.where(pick == 1, hi, lo)
    return params.centres + float(level) * (corner - params.centres)


def changed_params(params, factor: str, level: float, image_size: int, margin: float):
    """The drawing parameters with one factor changed (see the module docstring)."""
    n = len(params)
    if factor == "brightness":
        return params.replace(brightness=params.brightness * level)
    if factor == "blur":
        return params.replace(blur=np.full(n, float(level)))
    if factor == "jpeg":
        return params.replace(jpeg_quality=np.full(n, int(level), dtype=np.int64))
    if factor == "width":
        return params.replace(widths=params.widths + level)
    if factor == "length":
        return params.replace(lengths=params.lengths + level)
    if factor == "centre":
        return params.replace(centres=corner_centres(params, level, image_size, margin))
    raise ValueError(f"{factor} is not a drawing factor")


def shift_images(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Translate ``[N, C, H, W]`` images by ``pixels`` in x and y towards a corner (image ``i``
    to corner ``i mod 4``: up-left, up-right, down-left, down-right), zero fill."""
    s = int(pixels)
    if s == 0:
        return x.clone()
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    for k, (right, down) in enumerate(_CORNERS):
        idx = torch.arange(k, len(x), 4)
        dx, dy = (s if right else -s), (s if down else -s)
        src = x[idx][..., max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
        out[idx, :, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)] = src
    return out


def transform_images(images: torch.Tensor, factor: str, level: float) -> torch.Tensor:
    """Image-level factors on uint8 ``[N, C, H, W]``: float images in [0, 1]."""
    from pipeline.data.line_render import gaussian_blur

    x = images.float() / 255
    if factor == "brightness":
        return (x * level).clamp(0, 1)
    if factor == "blur":
        n, c, h, w = x.shape
        return gaussian_blur(x.reshape(n * c, h, w), np.full(n * c, float(level))).reshape(n, c, h, w)
    if factor == "shift":
        return shift_images(x, int(level))
    raise ValueError(f"{factor} is not an image factor")
