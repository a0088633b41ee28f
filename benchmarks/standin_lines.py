"""A zoo of line renderers: the 96 classes drawn the ways other students draw them, each with its
own library (OpenCV, Pillow, numpy), never with the pipeline's drawing code.

Every renderer draws ``per_class`` images of each class, labelled by construction: a line of
length 7 or 15 px (the distance between its end points, or the side of its rectangle), width 1
or 3 px (OpenCV's / Pillow's thickness, or the rectangle's other side), at 15 x angle degrees
counter-clockwise on screen, pure red or blue on black, at a random position that keeps it
``MARGIN`` px from the border, then written as JPEG (at several qualities, by OpenCV's
``imencode`` or Pillow) or PNG and read back with Pillow, as ``dataset=lines_folder`` reads files.

* ``cv2_line_aa``: ``cv2.line(..., thickness=1|3, lineType=cv2.LINE_AA)`` between sub-pixel end
  points (``shift=4``), JPEG 95 (OpenCV's imwrite defaults);
* ``cv2_line_8``: ``cv2.line(..., lineType=cv2.LINE_8)`` between whole-pixel end points, JPEG 95;
* ``pil_line``: ``ImageDraw.line(..., width=1|3)``, JPEG 75 4:2:0 (Pillow's default);
* ``pil_polygon``: the rectangle's four corners filled by ``ImageDraw.polygon``, PNG;
* ``cv2_rotated_rect``: ``cv2.boxPoints`` of the rotated rectangle filled by ``cv2.fillPoly``
  with ``LINE_AA``, JPEG 95;
* ``cv2_block_q85``: the course's own recipe (a 2/4 x 8/16 block rotated by ``cv2.warpAffine``,
  moved by whole pixels) saved at JPEG 85 instead of 95;
* ``course_cv2``: the course's generator itself (OpenCV, JPEG 95 4:2:0), positions at random.

``STRESS`` holds the same renderers at lower JPEG qualities (OpenCV at 75, JPEG 50), for information.

Every function returns ``(images uint8 [N, 3, 28, 28], labels int64 [N])``, deterministic for
``seed``.
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw

S = 28
LENGTHS = (7, 15)
WIDTHS = (1, 3)
MARGIN = 2.0


def _labels(per_class: int) -> np.ndarray:
    return np.repeat(np.arange(96, dtype=np.int64), per_class)


def _parts(label: int) -> tuple[int, int, int, int]:
    rest, colour = divmod(int(label), 2)
    rest, angle = divmod(rest, 12)
    length, width = divmod(rest, 2)
    return length, width, angle, colour


def _read(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1).copy()


def _pil_file(rgb: np.ndarray, fmt: str, quality: int = 75) -> np.ndarray:
    buf = io.BytesIO()
    if fmt == "PNG":
        Image.fromarray(rgb).save(buf, format="PNG")
    else:
        Image.fromarray(rgb).save(buf, format="JPEG", quality=quality, subsampling=2)
    return _read(buf.getvalue())


def _cv2_file(bgr: np.ndarray, quality: int = 95) -> np.ndarray:
    import cv2

    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    assert ok
    return _read(data.tobytes())


def _geometry(label: int):
    li, wi, ai, ci = _parts(label)
    a = math.radians(15 * ai)
    return LENGTHS[li], WIDTHS[wi], a, ci


def _centre(rng, length: float, width: float, a: float, extra: float = 0.0) -> tuple[float, float]:
    """Uniform over the centres that keep the line's rectangle (+ ``extra``) MARGIN px inside."""
    hx = abs(length / 2 * math.cos(a)) + abs(width / 2 * math.sin(a)) + extra
    hy = abs(length / 2 * math.sin(a)) + abs(width / 2 * math.cos(a)) + extra
    return (rng.uniform(MARGIN + hx, S - 1 - MARGIN - hx), rng.uniform(MARGIN + hy, S - 1 - MARGIN - hy))


def _corners(x, y, length, width, a):
    ux, uy = math.cos(a), -math.sin(a)       # along the line (y down)
    nx, ny = math.sin(a), math.cos(a)        # across
    return [(x + sx * length / 2 * ux + sy * width / 2 * nx, y + sx * length / 2 * uy + sy * width / 2 * ny)
            for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]


def _canvas(ci: int, value: int = 255):
    """A black RGB canvas and the line's colour in RGB and in OpenCV's BGR order."""
    rgb = (value, 0, 0) if ci == 0 else (0, 0, value)
    return np.zeros((S, S, 3), dtype=np.uint8), rgb, rgb[::-1]


def cv2_line(per_class: int = 50, seed: int = 0, line_type: str = "AA", quality: int = 95):
    import cv2

    rng = np.random.default_rng(seed)
    labels = _labels(per_class)
    out = np.zeros((len(labels), 3, S, S), dtype=np.uint8)
    kind = {"AA": cv2.LINE_AA, "8": cv2.LINE_8}[line_type]
    for i, label in enumerate(labels):
        length, width, a, ci = _geometry(label)
        x, y = _centre(rng, length, width, a, extra=width / 2 + 0.5)
        dx, dy = length / 2 * math.cos(a), -length / 2 * math.sin(a)
        canvas, _, bgr = _canvas(ci)
        if line_type == "AA":
            f = 16  # shift=4: end points in 1/16 px
            p1 = (int(round((x - dx) * f)), int(round((y - dy) * f)))
            p2 = (int(round((x + dx) * f)), int(round((y + dy) * f)))
            cv2.line(canvas, p1, p2, bgr, thickness=width, lineType=kind, shift=4)
        else:
            p1 = (int(round(x - dx)), int(round(y - dy)))
            p2 = (int(round(x + dx)), int(round(y + dy)))
            cv2.line(canvas, p1, p2, bgr, thickness=width, lineType=kind)
        out[i] = _cv2_file(canvas, quality)
    return out, labels


def pil_line(per_class: int = 50, seed: int = 0, quality: int = 75):
    rng = np.random.default_rng(seed)
    labels = _labels(per_class)
    out = np.zeros((len(labels), 3, S, S), dtype=np.uint8)
    for i, label in enumerate(labels):
        length, width, a, ci = _geometry(label)
        x, y = _centre(rng, length, width, a, extra=width / 2 + 0.5)
        dx, dy = length / 2 * math.cos(a), -length / 2 * math.sin(a)
        _, rgb, _ = _canvas(ci)
        im = Image.new("RGB", (S, S))
        ImageDraw.Draw(im).line((x - dx, y - dy, x + dx, y + dy), fill=rgb, width=width)
        out[i] = _pil_file(np.asarray(im), "JPEG", quality)
    return out, labels


def pil_polygon(per_class: int = 50, seed: int = 0, fmt: str = "PNG", quality: int = 75):
    rng = np.random.default_rng(seed)
    labels = _labels(per_class)
    out = np.zeros((len(labels), 3, S, S), dtype=np.uint8)
    for i, label in enumerate(labels):
        length, width, a, ci = _geometry(label)
        x, y = _centre(rng, length, width, a, extra=0.5)
        _, rgb, _ = _canvas(ci)
        im = Image.new("RGB", (S, S))
        ImageDraw.Draw(im).polygon(_corners(x, y, length, width, a), fill=rgb)
        out[i] = _pil_file(np.asarray(im), fmt, quality)
    return out, labels


def cv2_rotated_rect(per_class: int = 50, seed: int = 0, quality: int = 50):
    import cv2

    rng = np.random.default_rng(seed)
    labels = _labels(per_class)
    out = np.zeros((len(labels), 3, S, S), dtype=np.uint8)
    for i, label in enumerate(labels):
        length, width, a, ci = _geometry(label)
        x, y = _centre(rng, length, width, a, extra=1.0)
        box = cv2.boxPoints(((x, y), (length, width), -math.degrees(a)))   # OpenCV's angle is clockwise
        canvas, _, bgr = _canvas(ci)
        cv2.fillPoly(canvas, [np.rint(box * 16).astype(np.int32)], bgr, lineType=cv2.LINE_AA, shift=4)
        out[i] = _cv2_file(canvas, quality)
    return out, labels


def cv2_block(per_class: int = 50, seed: int = 0, quality: int = 95, gap: int = 4):
    """The course's recipe with OpenCV: block, ``cv2.warpAffine`` rotation about (14, 14), a
    whole-pixel move keeping ``gap`` black pixels, ``cv2.imencode`` at ``quality``."""
    import cv2

    rng = np.random.default_rng(seed)
    labels = _labels(per_class)
    out = np.zeros((len(labels), 3, S, S), dtype=np.uint8)
    for i, label in enumerate(labels):
        li, wi, ai, ci = _parts(label)
        length, width = LENGTHS[li], WIDTHS[wi]
        canvas, _, bgr = _canvas(ci)
        canvas[int(14 - width / 2):int(15 + width / 2), int(14 - length / 2):int(15 + length / 2)] = bgr
        rot = cv2.warpAffine(canvas, cv2.getRotationMatrix2D((14, 14), 15 * ai, 1), (S, S))
        lit = rot.max(axis=2) >= 10
        rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
        dy = rng.integers(gap - rows[0], S - 1 - gap - rows[-1] + 1)
        dx = rng.integers(gap - cols[0], S - 1 - gap - cols[-1] + 1)
        moved = cv2.warpAffine(rot, np.float32([[1, 0, dx], [0, 1, dy]]), (S, S))
        out[i] = _cv2_file(moved, quality)
    return out, labels


#: name -> (function, keyword arguments, what it stands for). Each renderer saves its files the way its
#: library does when a student gives no options: ``cv2.imwrite`` JPEG 95, Pillow JPEG 75 4:2:0, or PNG.
STANDINS = {
    "cv2_line_aa": (cv2_line, {"line_type": "AA", "quality": 95}, "cv2.line LINE_AA, sub-pixel end points, JPEG 95 (imencode)"),
    "cv2_line_8": (cv2_line, {"line_type": "8", "quality": 95}, "cv2.line LINE_8, whole-pixel end points, JPEG 95 (imencode)"),
    "pil_line": (pil_line, {"quality": 75}, "ImageDraw.line width 1/3, JPEG 75 4:2:0 (Pillow's default)"),
    "pil_polygon": (pil_polygon, {"fmt": "PNG"}, "ImageDraw.polygon of the rectangle, PNG"),
    "cv2_rotated_rect": (cv2_rotated_rect, {"quality": 95}, "cv2.boxPoints + fillPoly LINE_AA, JPEG 95 (imencode)"),
    "cv2_block_q85": (cv2_block, {"quality": 85}, "the course's recipe (warpAffine block), JPEG 85 (imencode)"),
    "course_cv2": (cv2_block, {"quality": 95}, "the course's generator itself, JPEG 95 4:2:0 (imencode)"),
}

#: Stress sets: the same renderers saved at a quality a student has to ask for (JPEG 75 from OpenCV,
#: JPEG 50): printed for information, not held to the bar (at JPEG 50 with 4:2:0 chroma a blue 1-px
#: anti-aliased rectangle carries more ink than Pillow's 3-px line at 15 degrees; docs/course-lines.md).
STRESS = {
    "cv2_line_8_q75": (cv2_line, {"line_type": "8", "quality": 75}, "cv2.line LINE_8, whole-pixel end points, JPEG 75"),
    "pil_line_q50": (pil_line, {"quality": 50}, "ImageDraw.line width 1/3, JPEG 50 4:2:0"),
    "cv2_rotated_rect_q50": (cv2_rotated_rect, {"quality": 50}, "cv2.boxPoints + fillPoly LINE_AA, JPEG 50"),
}
