"""Stand-ins for the course's own line images, drawn WITHOUT the pipeline's drawing code.

We do not have the course's JPEG files. To aim at them, these renderers draw the 96 classes
the ways course students drew them (a hard Pillow ``ImageDraw.line``, a bar rotated by Pillow,
a supersampled rectangle), each saved as JPEG the way common writers save it, with sizes and
centres chosen so that the independent geometry checker (``pipeline.data.line_geometry``)
measures them close to the course's files (lengths 8.8 / 16.8 px, widths 2.4 / 4.1 px, brightest
pixel about 175-255, centres x 12.4 +- 3.3, y 10.5 +- 2.9). Only numpy and Pillow are used, so a
model that scores well here has not merely learned the pipeline's renderer.

Every function returns ``(images uint8 [N, 3, 28, 28], labels int64 [N])`` for ``per_class``
images of each class, deterministic for ``seed``.
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

S = 28
LENGTHS = (7.0, 15.0)
WIDTHS = (1.0, 3.0)
COURSE_CENTRE = ((12.4, 3.3), (10.5, 2.9))  # (mean, sd) of x and y in the course's files


def _labels(per_class: int) -> np.ndarray:
    return np.repeat(np.arange(96, dtype=np.int64), per_class)


def _parts(label: int) -> tuple[int, int, int, int]:
    rest, colour = divmod(int(label), 2)
    rest, angle = divmod(rest, 12)
    length, width = divmod(rest, 2)
    return length, width, angle, colour


def _jpeg(img: Image.Image, quality: int, subsampling: int) -> np.ndarray:
    """subsampling: 0 = 4:4:4, 2 = 4:2:0 (Pillow's codes)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, subsampling=subsampling)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1).copy()


def _centre(rng, half_x: float, half_y: float, margin: float = 1.5) -> tuple[float, float]:
    """A centre from the course's distribution, redrawn until the line fits with a margin."""
    (mx, sx), (my, sy) = COURSE_CENTRE
    for _ in range(1000):
        x, y = rng.normal(mx, sx), rng.normal(my, sy)
        if margin + half_x <= x <= S - 1 - margin - half_x and margin + half_y <= y <= S - 1 - margin - half_y:
            return x, y
    return (S - 1) / 2, (S - 1) / 2


def _colour(colour: int, brightness: float = 1.0) -> tuple[int, int, int]:
    v = int(round(255 * brightness))
    return (v, 0, 0) if colour == 0 else (0, 0, v)


def pil_line(per_class: int = 50, seed: int = 0, quality: int = 95, subsampling: int = 2,
             extra_length: float = 1.0, widths=(1, 4)):
    """A hard ``ImageDraw.line`` between float end points (the recipe of many course
    solutions), saved like OpenCV's ``imwrite`` (quality 95, 4:2:0). Pillow's 3-px line is
    narrower than 3 px at shallow angles; 4 px measures like the course's thick lines."""
    rng = np.random.default_rng(seed)
    labels = _labels(per_class)
    out = np.zeros((len(labels), 3, S, S), dtype=np.uint8)
    for i, label in enumerate(labels):
        li, wi, ai, ci = _parts(label)
        length, width = LENGTHS[li] + extra_length, widths[wi]
        a = math.radians(15 * ai)
        dx, dy = length / 2 * math.cos(a), -length / 2 * math.sin(a)
        x, y = _centre(rng, abs(dx) + width / 2 + 0.5, abs(dy) + width / 2 + 0.5)
        im = Image.new("RGB", (S, S))
        ImageDraw.Draw(im).line((x - dx, y - dy, x + dx, y + dy), fill=_colour(ci),
                                width=int(width))
        out[i] = _jpeg(im, quality, subsampling)
    return out, labels


def rotated_bar(per_class: int = 50, seed: int = 0, quality: int = 85, subsampling: int = 0,
                extra_length: float = 2.0, widths=(1.4, 3.8), blur: float = 0.6,
                brightness=(0.85, 1.0), factor: int = 8):
    """A horizontal bar drawn at ``factor`` x resolution, rotated by Pillow (bicubic), box-
    downsampled (area anti-aliasing), blurred by Pillow's Gaussian filter, dimmed, then JPEG."""
    rng = np.random.default_rng(seed)
    labels = _labels(per_class)
    out = np.zeros((len(labels), 3, S, S), dtype=np.uint8)
    big = S * factor
    for i, label in enumerate(labels):
        li, wi, ai, ci = _parts(label)
        length, width = LENGTHS[li] + extra_length, widths[wi]
        a = math.radians(15 * ai)
        hx = abs(length / 2 * math.cos(a)) + abs(width / 2 * math.sin(a)) + 2 * blur
        hy = abs(length / 2 * math.sin(a)) + abs(width / 2 * math.cos(a)) + 2 * blur
        x, y = _centre(rng, hx, hy)
        bar = Image.new("L", (big, big))
        c = (big - 1) / 2
        ImageDraw.Draw(bar).rectangle((c - length * factor / 2, c - width * factor / 2,
                                       c + length * factor / 2, c + width * factor / 2), fill=255)
        bar = bar.rotate(15 * ai, resample=Image.BICUBIC)
        # move the bar's centre from the image centre to (x, y), in big pixels
        shift = ((x - (S - 1) / 2) * factor, (y - (S - 1) / 2) * factor)
        bar = bar.transform(bar.size, Image.AFFINE, (1, 0, -shift[0], 0, 1, -shift[1]), resample=Image.BILINEAR)
        small = bar.resize((S, S), Image.BOX)
        if blur > 0:
            small = small.filter(ImageFilter.GaussianBlur(blur))
        v = np.asarray(small, dtype=np.float64) * rng.uniform(*brightness)
        rgb = np.zeros((S, S, 3), dtype=np.uint8)
        rgb[..., 0 if ci == 0 else 2] = np.clip(np.rint(v), 0, 255).astype(np.uint8)
        out[i] = _jpeg(Image.fromarray(rgb), quality, subsampling)
    return out, labels


def supersampled(per_class: int = 50, seed: int = 0, quality: int = 90, subsampling: int = 2,
                 extra_length: float = 1.5, widths=(1.2, 3.5), brightness=(0.9, 1.0), samples: int = 6):
    """A rectangle whose pixels are the share of ``samples x samples`` sub-pixel points inside
    it (supersampled anti-aliasing, no blur), dimmed, then JPEG with 4:2:0 chroma."""
    rng = np.random.default_rng(seed)
    labels = _labels(per_class)
    out = np.zeros((len(labels), 3, S, S), dtype=np.uint8)
    offs = (np.arange(samples) + 0.5) / samples - 0.5
    grid = np.arange(S)[:, None] + offs[None, :]                  # [S, samples]
    for i, label in enumerate(labels):
        li, wi, ai, ci = _parts(label)
        length, width = LENGTHS[li] + extra_length, widths[wi]
        a = math.radians(15 * ai)
        hx = abs(length / 2 * math.cos(a)) + abs(width / 2 * math.sin(a)) + 0.5
        hy = abs(length / 2 * math.sin(a)) + abs(width / 2 * math.cos(a)) + 0.5
        x, y = _centre(rng, hx, hy)
        py = grid[:, None, :, None] - y                           # [S, 1, samples, 1]
        px = grid[None, :, None, :] - x                           # [1, S, 1, samples]
        along = px * math.cos(a) - py * math.sin(a)
        across = px * math.sin(a) + py * math.cos(a)
        inside = (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)
        cov = inside.mean(axis=(2, 3))
        rgb = np.zeros((S, S, 3), dtype=np.uint8)
        rgb[..., 0 if ci == 0 else 2] = np.clip(np.rint(cov * 255 * rng.uniform(*brightness)), 0, 255)
        out[i] = _jpeg(Image.fromarray(rgb), quality, subsampling)
    return out, labels


#: name -> (function, keyword arguments, what it stands for)
STANDINS = {
    "pil_line_q95_420": (pil_line, {}, "hard ImageDraw.line 1/4 px wide, +1 px long, JPEG 95 4:2:0 (OpenCV's imwrite)"),
    "rotated_bar_q85": (rotated_bar, {}, "bar rotated by Pillow, box-downsampled, blur 0.6, JPEG 85 4:4:4"),
    "supersampled_q90_420": (supersampled, {}, "6x6 supersampled rectangle, JPEG 90 4:2:0"),
    "pil_line_q75_420": (pil_line, {"quality": 75},
                         "hard ImageDraw.line 1/4 px wide, JPEG 75 4:2:0 (Pillow's default): harsher"),
    "rotated_bar_dim_q70": (rotated_bar, {"quality": 70, "subsampling": 2, "brightness": (0.65, 0.8), "blur": 0.8},
                            "rotated bar, dimmer (0.65-0.8), blur 0.8, JPEG 70 4:2:0: harsher"),
}
