"""Lines drawn the way other students draw them: Pillow's ``ImageDraw`` pen.

The course's generator warps a block of whole pixels (:mod:`pipeline.data.line_render`); other
students call a drawing library with the sheet's nominal sizes, a line "7 px long, 3 px wide".
Pillow's pen does not draw what those numbers say at every angle: ``ImageDraw.line(width=3)``
fills a polygon by the pixel-centre rule, so a 3-px line at 15 degrees is only about 2 px thick
(2.2 px of ink per px of length, against 3.2 at 0 degrees and 3.9 at 60), the same ink as the
course's 2-row "1 px" line, and ``width=1`` is a one-pixel staircase. A model that never saw
these pens reads them by the course's convention and calls the 15-degree "3 px" line thin.
The training mixture (``data.augment.pillow``) therefore draws a share of its randomized lines
with the pen itself, labelled by the numbers the pen was given:

* ``PEN_LINE``: ``ImageDraw.line((x0, y0, x1, y1), width=w)`` between end points ``length`` px
  apart (sub-pixel, or rounded to whole pixels as ``int`` coordinates give), ``w`` = 1 or 3;
* ``PEN_POLYGON``: ``ImageDraw.polygon`` of the line's rectangle (``length`` x ``width``).

Both draw 255 on a black ``L`` canvas: the coverage (0 or 1) is also the ground-truth mask.
Brightness, colour and the JPEG round trip are applied afterwards like every other renderer's
(:func:`pipeline.data.line_styles.render`).
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

PEN_NONE, PEN_LINE, PEN_POLYGON = 0, 1, 2


def line_end_points(centre_xy, angle_deg: float, length: float, whole_pixels: bool):
    """``(x0, y0, x1, y1)`` of a line ``length`` px long through ``centre_xy`` at ``angle_deg``
    counter-clockwise on screen (y down); rounded to whole pixels when ``whole_pixels``."""
    a = math.radians(angle_deg)
    dx, dy = length / 2 * math.cos(a), -length / 2 * math.sin(a)
    x, y = float(centre_xy[0]), float(centre_xy[1])
    ends = (x - dx, y - dy, x + dx, y + dy)
    return tuple(float(round(v)) for v in ends) if whole_pixels else ends


def rectangle_corners(centre_xy, angle_deg: float, length: float, width: float):
    """The four corners of the line's ``length`` x ``width`` rectangle, in drawing order."""
    a = math.radians(angle_deg)
    ux, uy = math.cos(a), -math.sin(a)   # along the line (y down)
    nx, ny = math.sin(a), math.cos(a)    # across it
    x, y = float(centre_xy[0]), float(centre_xy[1])
    return [(x + sx * length / 2 * ux + sy * width / 2 * nx, y + sx * length / 2 * uy + sy * width / 2 * ny)
            for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]


def draw_pen_lines(pens, centres, angles, lengths, widths, whole_pixels, image_size: int = 28) -> np.ndarray:
    """Boolean ``[N, S, S]``: each line drawn by Pillow's pen ``pens[i]`` (``PEN_LINE`` or
    ``PEN_POLYGON``). A line's ``widths[i]`` is rounded to a whole pen width (at least 1)."""
    n = len(pens)
    out = np.zeros((n, image_size, image_size), dtype=bool)
    for i in range(n):
        canvas = Image.new("L", (image_size, image_size))
        draw = ImageDraw.Draw(canvas)
        if pens[i] == PEN_LINE:
            ends = line_end_points(centres[i], angles[i], lengths[i], bool(whole_pixels[i]))
            draw.line(ends, fill=255, width=max(1, int(round(widths[i]))))
        elif pens[i] == PEN_POLYGON:
            draw.polygon(rectangle_corners(centres[i], angles[i], lengths[i], widths[i]), fill=255)
        else:
            raise ValueError(f"pen {pens[i]} is not one of PEN_LINE ({PEN_LINE}) or PEN_POLYGON ({PEN_POLYGON})")
        out[i] = np.asarray(canvas) > 0
    return out
