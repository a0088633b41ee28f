"""The generated "lines" dataset: 28x28 RGB images of one straight line on black.

Four variations, labelled in this order (the order of :data:`pipeline.data.lines_labels.HEADS`):

==========  ==========================================  =====================
variation   values (as the course sheet defines them)      label index
==========  ==========================================  =====================
length      7 px (short), 15 px (long)                  0, 1
width       1 px (thin), 3 px (thick)                   0, 1
angle       0, 15, ..., 165 degrees with the x-axis     0 .. 11
colour      red, blue                                   0, 1
==========  ==========================================  =====================

96 classes; ``class = ((length * 2 + width) * 12 + angle) * 2 + colour`` and the class
name is ``"length_width_angle_colour"`` (``"1_1_9_0"``: long, thick, red, 135 degrees).
Within a class the only variation is a translation of the line's centre (continuous for the
``sheet`` and ``soft`` styles, by whole pixels for ``course``). The vocabulary (heads, labels, class names, the sheet's sizes) lives in
:mod:`pipeline.data.lines_labels`; the rasterization rule below is
:func:`pipeline.data.line_render.rasterize_lines`; how a style draws (soft edges, blur,
brightness, JPEG, where centres fall) and the training-time randomization live in
:mod:`pipeline.data.line_styles`. This module generates the dataset (:func:`generate_lines`)
and exports it as image files (:func:`export_jpegs`).

Rasterization rule (the ``sheet`` style, and hard-edged lines of any style)
---------------------------------------------------------------------------
Pixel (row ``r``, column ``c``) has its centre at ``x = c``, ``y = r`` (y points down).
A line with centre ``p0``, angle ``a``, length ``L`` and width ``W`` is the rectangle
with direction ``u = (cos a, -sin a)`` and normal ``n = (sin a, cos a)`` (in (x, y);
because y points down, angles are counter-clockwise as seen on screen). A pixel ``p`` is
lit iff ``|(p - p0) . u| <= L / 2`` and ``|(p - p0) . n| <= W / 2``. Lengths are
Euclidean, so a long line at 45 degrees spans about 15 / sqrt(2) pixel columns.

Valid centres: with the rectangle's half-extents ``hx = |L/2 cos a| + |W/2 sin a|`` and
``hy = |L/2 sin a| + |W/2 cos a|``, the centre's x is uniform in
``[margin + hx, S - 1 - margin - hx]`` (y likewise with ``hy``), which keeps every lit
pixel at least ``margin`` away from the border (with the default ``margin=1`` no pixel
of the border rows/columns is ever lit).

Images are ``uint8 [N, 3, S, S]``: the line in its colour's channel, 0 elsewhere (``sheet``:
255 on lit pixels). Samples come in class-major order (all of class 0, then class 1, ...).
Generation is deterministic for a seed (``np.random.default_rng(seed)``) and
independent of the chunking used to vectorize it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.line_styles import draw_params, get_style, render
from pipeline.data.lines_labels import NUM_CLASSES, class_names


@dataclass(frozen=True, eq=False)
class LinesArrays:
    """A generated lines dataset (class-major order)."""

    images: np.ndarray   # uint8 [N, 3, S, S]
    masks: np.ndarray    # bool [N, S, S]: the pixels the line covers
    labels: np.ndarray   # int64 [N]: class index
    centres: np.ndarray  # float32 [N, 2]: line centre (x, y) in pixel coordinates

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.images.ndim != 4 or self.images.shape[:2] != (n, 3):
            raise ValueError(f"images must be [N, 3, S, S], got {self.images.shape}")
        s = self.images.shape[2:]
        if self.masks.shape != (n, *s):
            raise ValueError(f"masks shape {self.masks.shape} != {(n, *s)}")
        if self.centres.shape != (n, 2):
            raise ValueError(f"centres shape {self.centres.shape} != {(n, 2)}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])


def generate_lines(per_class: int = 1000, seed: int = 0, image_size: int = 28,
                   margin: float = 1.0, progress: bool = True, style: str = "sheet",
                   augment=None, augmented=None, pools=None) -> LinesArrays:
    """Generate ``per_class`` translations of each of the 96 classes, drawn in ``style``
    (``"sheet"``: the rule above; ``"course"``: the course's own generator; ``"soft"``: an
    anti-aliased approximation of its files; see :mod:`pipeline.data.line_styles`). ``augment``
    (an :class:`~pipeline.data.line_styles.Augment`) randomizes how the images where ``augmented``
    is True are drawn; ``pools`` (an int per image: train / validation / test) keep the course
    style's whole-pixel positions apart, so no image is in two pools.

    Deterministic for ``seed``; class-major order.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), per_class)
    params = draw_params(labels, get_style(style), seed, image_size, margin, augment, augmented, pools)
    images, masks = render(params, image_size, progress=progress)
    return LinesArrays(images=images, masks=masks, labels=labels, centres=params.centres.astype(np.float32))


def export_jpegs(arrays: LinesArrays, out_dir, limit: int | None = None, layout: str = "folders") -> list[Path]:
    """Write images as JPEG files named like the course's and return the paths.

    ``layout="folders"`` (the default, the course's layout, what ``dataset=lines_folder`` reads):
    ``<out_dir>/<L_W_A_C>/<L_W_A_C>_<ID>.jpg``; ``layout="flat"``: ``<out_dir>/<L_W_A_C>_<ID>.jpg``.
    ``ID`` is the running index of the image within its class (in array order).
    ``limit``: at most this many images of each class (all when None). JPEG quality 95
    without chroma subsampling, so the thin coloured lines keep their colour.
    """
    from PIL import Image

    if layout not in ("folders", "flat"):
        raise ValueError(f"layout={layout!r} is invalid: use 'folders' (<out>/L_W_A_C/L_W_A_C_ID.jpg) "
                         f"or 'flat' (<out>/L_W_A_C_ID.jpg)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = class_names()
    counts = np.zeros(NUM_CLASSES, dtype=np.int64)
    paths: list[Path] = []
    for i, label in enumerate(np.asarray(arrays.labels)):
        label = int(label)
        ident = int(counts[label])
        counts[label] += 1
        if limit is not None and ident >= limit:
            continue
        folder = out / names[label] if layout == "folders" else out
        folder.mkdir(exist_ok=True)
        path = folder / f"{names[label]}_{ident}.jpg"
        hwc = np.ascontiguousarray(np.transpose(arrays.images[i], (1, 2, 0)))
        Image.fromarray(hwc).save(path, format="JPEG", quality=95, subsampling=0)
        paths.append(path)
    return paths


def course_folder_images(per_class: int = 1000, image_size: int = 28, classes=None) -> LinesArrays:
    """The course's own dataset, as its generator wrote it: for each class, every position of
    :func:`~pipeline.data.line_styles.course_positions` in raster order (rows first, from the
    top-left), started over until ``per_class`` images exist, drawn in the ``course`` style
    (JPEG quality 95, 4:2:0). So each image appears ``per_class / positions`` times (4-28 times
    for 1,000). No randomness: the course's folders are what they are."""
    from pipeline.data.line_styles import block_centre, course_positions, render
    from pipeline.data.lines_labels import ANGLES_DEG, LENGTHS_PX, WIDTHS_PX, decode_label

    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    classes = np.arange(NUM_CLASSES) if classes is None else np.asarray(classes, dtype=np.int64)
    labels = np.repeat(classes, per_class)
    style = get_style("course")
    params = draw_params(labels, style, 0, image_size)   # the course style's sizes, angles, colours, JPEG
    parts = decode_label(classes)
    positions = course_positions(np.asarray(LENGTHS_PX)[parts["length"]], np.asarray(WIDTHS_PX)[parts["width"]],
                                 np.asarray(ANGLES_DEG, dtype=np.float64)[parts["angle"]], image_size)
    moves = np.concatenate([pos[np.arange(per_class) % len(pos)] for pos in positions])
    params = params.replace(centres=block_centre(params.angles, image_size) + moves)
    images, masks = render(params, image_size)
    return LinesArrays(images=images, masks=masks, labels=labels, centres=params.centres.astype(np.float32))


def export_course_folder(out_dir, per_class: int = 1000, classes=None) -> list[Path]:
    """Write a folder like the course's: ``<out>/<L_W_A_C>/<L_W_A_C>_<n>.jpeg``, ``n`` = 0 ..
    ``per_class - 1`` in the course's raster order (see :func:`course_folder_images`), each file a
    JPEG at quality 95 with 4:2:0 chroma of the image before compression (the file decodes to the
    ``course`` style's pixels). ``dataset=lines_folder data.root=<out>`` reads it."""
    from PIL import Image

    from pipeline.data.line_styles import block_centre, course_positions
    from pipeline.data.lines_labels import ANGLES_DEG, LENGTHS_PX, WIDTHS_PX, decode_label

    classes = np.arange(NUM_CLASSES) if classes is None else np.asarray(classes, dtype=np.int64)
    style = get_style("course")
    names = class_names()
    out = Path(out_dir)
    paths: list[Path] = []
    parts = decode_label(classes)
    positions = course_positions(np.asarray(LENGTHS_PX)[parts["length"]], np.asarray(WIDTHS_PX)[parts["width"]],
                                 np.asarray(ANGLES_DEG, dtype=np.float64)[parts["angle"]])
    for label, pos in zip(classes, positions):
        # each distinct position is drawn (before JPEG) and encoded once, then written per file
        labels = np.full(len(pos), label, dtype=np.int64)
        params = draw_params(labels, style, 0)
        params = params.replace(centres=block_centre(params.angles) + pos, jpeg_quality=np.zeros(len(pos), np.int64))
        raw, _ = render(params)
        encoded = []
        for img in raw:
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))).save(
                buf, format="JPEG", quality=style.jpeg_quality, subsampling=2)
            encoded.append(buf.getvalue())
        folder = out / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            path = folder / f"{names[label]}_{n}.jpeg"
            path.write_bytes(encoded[n % len(pos)])
            paths.append(path)
    return paths
