"""How a line is drawn: the styles, the training-time randomization, per-image parameters.

A :class:`LineStyle` is a nominal way of drawing the 96 classes:

* ``course``: the course's own generator, exactly (docs/course-lines.md): an axis-aligned block
  of whole pixels (rows ``int(14 - w/2)`` to ``int(15 + w/2)``, columns ``int(14 - l/2)`` to
  ``int(15 + l/2)``, exclusive, w = 1 / 3, l = 7 / 15: 2 / 4 rows, 8 / 16 columns) at full
  brightness, rotated by the angle counter-clockwise about (14, 14) with OpenCV's fixed-point
  bilinear warp (:func:`~pipeline.data.line_render.warp_affine_bilinear`, equal to
  ``cv2.warpAffine``), moved by whole pixels to a position that keeps the line's extent
  (pixels >= :data:`BLOCK_EXTENT_FLOOR`) :data:`BLOCK_GAP` px from the border, and saved as one
  JPEG file per image at quality 95 with 4:2:0 chroma (Pillow; the same pixels as ``cv2.imwrite``).
  A class has only 36-247 distinct positions, so images repeat: ``pools`` (train / validation /
  test) give each split its own positions, so no image is in two splits.

* ``sheet``: the course sheet taken literally: 7 / 15 px long, 1 / 3 px wide, hard edges
  (a pixel is lit when its centre lies inside the line's rectangle), full brightness, no
  compression, the centre uniform over the positions that keep the line ``margin`` px from
  the border. Exact masks; byte-identical to the generator before styles existed.
* ``soft`` (called ``course`` before the course's generator was known): an approximation of
  the course's files measured from their pixels (lengths 8.8 / 16.8 px, widths 2.4 / 4.1 px as ``sqrt(12 x second moment)``, soft
  edges, brightest pixel about 175-255, centres biased up and left: x 12.4 +- 3.3, y 10.5 +- 2.9).
  Reproduced here by anti-aliased cores of 9 / 17 px by 1.4 / 3.8 px with a 0.6 px Gaussian
  blur, brightness 0.85-1.0 and a JPEG round trip at quality 85 (the benchmark
  ``bench_course_lines.py`` prints the same measurements for both).

:class:`Augment` is the domain randomization for training images: every factor that differs
between ways of drawing "a thin short red line at 30 degrees" (brightness, blur, hard or soft
edges, JPEG quality and chroma subsampling, sub-pixel length/width/angle, position) is drawn
per image from a documented range, so a model cannot lean on any one of them (a model trained
on ``sheet`` alone judges length by total brightness). ``share`` of the training images are
randomized, the rest drawn in the style itself; of the randomized ones ``blocks`` are drawn by the
course's block renderer, the others as soft or hard-edged lines (with the ``line_sizes`` of the
style).

:func:`draw_params` turns labels + style (+ augmentation) into :class:`RenderParams`, one
value per image; :func:`render` draws them. Both are vectorized and deterministic for a seed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

import numpy as np
import torch

from pipeline.data.line_render import PIXEL_VARIANCE, gaussian_blur, jpeg_roundtrip, line_coverage, rasterize_lines
from pipeline.data.lines_labels import ANGLES_DEG, COLOUR_RGB, COLOURS, LENGTHS_PX, WIDTHS_PX, decode_label
from pipeline.data.pen_render import PEN_LINE, PEN_NONE, PEN_POLYGON, draw_pen_lines

#: An anti-aliased pixel belongs to the ground-truth mask when the line covers at least this share of it.
MASK_COVERAGE = 0.25
#: The narrowest anti-aliased line drawn (px); hard-edged lines are at least 1 px wide.
MIN_SOFT_WIDTH = 0.6
#: Anti-aliased lines keep this many filter sigmas of their soft edge inside the margin.
_EDGE_SIGMAS = 1.0
_CHUNK = 4096  # images rendered per vectorized step
#: The course's generator keeps this many black pixels between the line's extent and the border
#: (its published rule says 3 px; 4 reproduces its 27-247 positions per class, median 119 and max 247,
#: here 36-247, median 119) ...
BLOCK_GAP = 4
#: ... where the extent is the bounding box of the pixels at least this bright (of 255).
BLOCK_EXTENT_FLOOR = 10
#: The course's JPEG settings (OpenCV's imwrite defaults).
COURSE_JPEG_QUALITY = 95
#: The widest hard-edged thin line of the randomized lines (px): wider ones have the ink of pens' thick lines.
HARD_THIN_MAX = 1.5
#: Pillow-drawn training lines (``data.augment.pillow``): this share are ``ImageDraw.line``, the rest polygons;
PEN_LINE_SHARE = 0.6
#: their length is the sheet's 7 / 15 px plus this (px: a student's line may run 7 or 8 px end to end) ...
PEN_LENGTH_JITTER = (-0.5, 1.0)
#: ... and a polygon's width the sheet's 1 / 3 px plus this (a line's pen width is the whole 1 or 3).
PEN_POLYGON_WIDTH_JITTER = (-0.25, 0.25)


@dataclass(frozen=True)
class LineStyle:
    name: str
    lengths: tuple[float, float]              # core length (px) of short, long
    widths: tuple[float, float]               # core width (px) of thin, thick
    anti_alias: bool                          # soft (area-filtered) edges, else hard pixel-centre rule
    blur: float                               # Gaussian sigma (px) on top of the anti-aliasing
    brightness: tuple[float, float]           # intensity scale, uniform in [lo, hi]
    jpeg_quality: int | None                  # JPEG round trip at this quality (None: no compression)
    jpeg_subsampling: str = "4:4:4"
    centre_mean: tuple[float, float] | None = None   # (x, y) of a normal centre distribution, truncated
    centre_sd: tuple[float, float] | None = None     # to the valid positions; None: uniform over them
    augment_by_default: bool = False          # data.augment.enabled=null randomizes training images
    block: bool = False                       # the course's generator: a rotated block moved by whole pixels
    line_sizes: tuple | None = None           # ((short, long), (thin, thick)) of randomized lines; None: as drawn


STYLES: dict[str, LineStyle] = {
    "sheet": LineStyle("sheet", lengths=LENGTHS_PX, widths=WIDTHS_PX, anti_alias=False, blur=0.0,
                       brightness=(1.0, 1.0), jpeg_quality=None),
    "course": LineStyle("course", lengths=LENGTHS_PX, widths=WIDTHS_PX, anti_alias=False, blur=0.0,
                        brightness=(1.0, 1.0), jpeg_quality=COURSE_JPEG_QUALITY, jpeg_subsampling="4:2:0",
                        augment_by_default=True, block=True, line_sizes=((9.0, 17.0), (1.4, 3.8))),
    "soft": LineStyle("soft", lengths=(9.0, 17.0), widths=(1.4, 3.8), anti_alias=True, blur=0.6,
                      brightness=(0.85, 1.0), jpeg_quality=85, jpeg_subsampling="4:4:4",
                      centre_mean=(11.6, 8.6), centre_sd=(4.5, 3.6), augment_by_default=True),
}


def get_style(name: str) -> LineStyle:
    if name not in STYLES:
        raise ValueError(f"data.style={name!r} is invalid: valid styles are {', '.join(STYLES)}")
    return STYLES[name]


@dataclass(frozen=True)
class Augment:
    """Per-image randomization ranges for training images (``data.augment.*``)."""

    enabled: bool | None = None                      # None: the style decides (course, soft: on; sheet: off)
    share: float = 1.0                               # share of the training images randomized (else the style)
    blocks: float = 0.0                              # share of randomized images drawn as the course's blocks
    brightness: tuple[float, float] = (0.55, 1.0)    # intensity scale (replaces the style's range)
    blur: tuple[float, float] = (0.0, 0.9)           # Gaussian sigma, px (replaces the style's blur)
    hard_edges: float = 0.4                          # share of images drawn with hard edges
    jpeg_quality: tuple[int, int] = (55, 98)         # JPEG quality, uniform integers
    jpeg_420: float = 0.5                            # share of JPEGs with 4:2:0 chroma subsampling (else 4:4:4)
    no_jpeg: float = 0.1                             # share of images left uncompressed
    width_jitter: tuple[float, float] = (-0.8, 0.5)  # px added to the style's core width
    length_jitter: tuple[float, float] = (-1.5, 1.0)  # px added to the style's core length
    angle_jitter: float = 1.5                        # degrees, uniform in [-a, a]
    uniform_position: float = 0.5                    # share of centres uniform over the valid positions
    pillow: float = 0.7                              # share of randomized lines drawn by Pillow's pen (pen_render.py)
    whole_pixel_ends: float = 0.5                    # share of Pillow's lines with end points on whole pixels

    def __post_init__(self) -> None:
        def check_range(name, lo_min, hi_max):
            lo, hi = getattr(self, name)
            if not (lo_min <= lo <= hi <= hi_max):
                raise ValueError(f"data.augment.{name}=[{lo}, {hi}] is invalid: it must be a range "
                                 f"[lo, hi] with {lo_min} <= lo <= hi <= {hi_max}")

        check_range("brightness", 0.05, 1.0)
        check_range("blur", 0.0, 3.0)
        check_range("jpeg_quality", 1, 100)
        check_range("width_jitter", -0.9, 3.0)
        check_range("length_jitter", -5.0, 5.0)
        for name in ("share", "blocks", "hard_edges", "jpeg_420", "no_jpeg", "uniform_position", "pillow",
                     "whole_pixel_ends"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"data.augment.{name}={v} is invalid: it must be a share in [0, 1]")
        if not 0.0 <= self.angle_jitter <= 7.5:
            raise ValueError(f"data.augment.angle_jitter={self.angle_jitter} is invalid: it must lie in "
                             f"[0, 7.5] degrees (half the 15-degree step between angle classes)")

    @classmethod
    def from_config(cls, cfg, style: LineStyle | None = None) -> "Augment | None":
        """From a mapping (``data.augment``), or None when the training images are not to be
        randomized: ``cfg`` None, ``enabled: false``, or ``enabled: null`` and a ``style`` that
        is drawn as it is by default (``sheet``)."""
        if cfg is None:
            return None
        if isinstance(cfg, Augment):
            return cfg if cfg.on(style) else None
        from omegaconf import OmegaConf

        values = dict(OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg)
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown data.augment keys {sorted(unknown)}; valid: {[f.name for f in fields(cls)]}")
        for key, value in values.items():
            if isinstance(value, (list, tuple)):
                values[key] = tuple(value)
        aug = cls(**values)
        return aug if aug.on(style) else None

    def on(self, style: LineStyle | None = None) -> bool:
        if self.enabled is None:
            return bool(style is not None and style.augment_by_default)
        return bool(self.enabled)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class RenderParams:
    """Everything needed to draw each image (``[N]`` arrays; centres ``[N, 2]``)."""

    labels: np.ndarray
    centres: np.ndarray        # float64 (x, y)
    angles: np.ndarray         # degrees
    lengths: np.ndarray        # core length, px
    widths: np.ndarray         # core width, px
    blur: np.ndarray           # Gaussian sigma, px
    anti_alias: np.ndarray     # bool
    brightness: np.ndarray     # intensity scale
    jpeg_quality: np.ndarray   # int, 0 = no JPEG round trip
    jpeg_420: np.ndarray       # bool: 4:2:0 chroma subsampling
    channels: np.ndarray       # int: RGB channel of the colour
    block: np.ndarray = None   # bool: drawn by the course's generator (a rotated block moved by whole pixels)
    exact_jpeg: np.ndarray = None  # bool: one JPEG file per image (else tiled with others: faster, edges may differ)
    pen: np.ndarray = None     # int: drawn by Pillow's pen (pen_render.PEN_LINE / PEN_POLYGON), 0 = not
    whole_px: np.ndarray = None  # bool: a Pillow line's end points rounded to whole pixels

    def __post_init__(self) -> None:
        n = len(self.labels)
        for name, dtype in (("block", bool), ("exact_jpeg", bool), ("pen", np.int64), ("whole_px", bool)):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(n, dtype=dtype))

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> "RenderParams":
        return RenderParams(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def replace(self, **changes) -> "RenderParams":
        return dataclasses.replace(self, **changes)


def edge_extent(anti_alias, blur) -> np.ndarray:
    """How far (px) a line's visible edge reaches beyond its rectangle."""
    sigma = np.sqrt(PIXEL_VARIANCE + np.asarray(blur, dtype=np.float64) ** 2)
    return np.where(np.asarray(anti_alias), _EDGE_SIGMAS * sigma, 0.0)


def valid_centre_range(angles, lengths, widths, extent, image_size: int, margin: float):
    """(lo, hi) ``[N, 2]``: the centres that keep the line's visible extent ``margin`` px inside."""
    a = np.deg2rad(np.asarray(angles, dtype=np.float64))
    hx = np.abs(lengths / 2 * np.cos(a)) + np.abs(widths / 2 * np.sin(a)) + extent
    hy = np.abs(lengths / 2 * np.sin(a)) + np.abs(widths / 2 * np.cos(a)) + extent
    lo = np.stack([margin + hx, margin + hy], axis=1)
    hi = np.stack([image_size - 1 - margin - hx, image_size - 1 - margin - hy], axis=1)
    return lo, hi


def centre_range(params: "RenderParams", image_size: int = 28, margin: float = 1.0):
    """(lo, hi) ``[N, 2]``: the centres each image of ``params`` may take, by its renderer: the
    lines' :func:`valid_centre_range`, the course blocks' whole-pixel moves of :func:`block_shift_range`."""
    lo, hi = valid_centre_range(params.angles, params.lengths, params.widths,
                                edge_extent(params.anti_alias, params.blur), image_size, margin)
    b = np.flatnonzero(params.block)
    if len(b):
        blo, bhi = block_shift_range(params.lengths[b], params.widths[b], params.angles[b], image_size)
        base = block_centre(params.angles[b], image_size)
        lo[b], hi[b] = base + blo, base + bhi
    return lo, hi


def _truncated_normal(u, lo, hi, mean, sd):
    """Map uniforms ``u`` in [0, 1) to a normal(mean, sd) truncated to [lo, hi] (inverse CDF)."""
    t = torch.as_tensor
    a = torch.special.ndtr(t((lo - mean) / sd))
    b = torch.special.ndtr(t((hi - mean) / sd))
    z = torch.special.ndtri((a + t(u) * (b - a)).clamp(1e-12, 1 - 1e-12))
    return np.clip((mean + sd * z.numpy()), lo, hi)


def block_centre(angles, image_size: int = 28) -> np.ndarray:
    """``[N, 2]`` (x, y) where the course's block (centred on (c - 0.5, c - 0.5), c = S // 2) lies
    after the rotation about (c, c), before it is moved."""
    c = image_size // 2
    a = np.deg2rad(np.asarray(angles, dtype=np.float64))
    ox = oy = -0.5
    # counter-clockwise on screen (y down): x' = x cos + y sin, y' = -x sin + y cos
    return np.stack([c + ox * np.cos(a) + oy * np.sin(a), c - ox * np.sin(a) + oy * np.cos(a)], axis=1)


def block_shift_range(lengths, widths, angles, image_size: int = 28, gap: int = BLOCK_GAP):
    """(lo, hi) ``[N, 2]`` int: the whole-pixel moves (dx, dy) of the course's rotated block that
    keep its extent (pixels >= :data:`BLOCK_EXTENT_FLOOR`) ``gap`` px from the border."""
    from pipeline.data.line_render import course_rotated_blocks

    lengths = np.asarray(lengths, dtype=np.float64).reshape(-1)
    keys = np.stack([lengths, np.broadcast_to(widths, lengths.shape), np.broadcast_to(angles, lengths.shape)], 1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    lit = course_rotated_blocks(uniq[:, 0], uniq[:, 1], uniq[:, 2], image_size) >= BLOCK_EXTENT_FLOOR
    rows, cols = lit.any(axis=2), lit.any(axis=1)
    idx = np.arange(image_size)
    first = lambda m: np.where(m, idx, image_size).min(axis=1)  # noqa: E731
    last = lambda m: np.where(m, idx, -1).max(axis=1)           # noqa: E731
    lo = np.stack([gap - first(cols), gap - first(rows)], axis=1)
    hi = np.stack([image_size - 1 - gap - last(cols), image_size - 1 - gap - last(rows)], axis=1)
    inverse = inverse.reshape(-1)
    return lo[inverse], hi[inverse]


def course_positions(lengths, widths, angles, image_size: int = 28) -> list[np.ndarray]:
    """The course's positions of each line, in its raster order (rows first, then columns, from
    the top-left): ``[K, 2]`` int moves (dx, dy) per line."""
    lo, hi = block_shift_range(lengths, widths, angles, image_size)
    out = []
    for (x0, y0), (x1, y1) in zip(lo, hi):
        dy, dx = np.meshgrid(np.arange(y0, y1 + 1), np.arange(x0, x1 + 1), indexing="ij")
        out.append(np.stack([dx.ravel(), dy.ravel()], axis=1))
    return out


def _pool_moves(labels, style: LineStyle, pools, seed: int, image_size: int) -> np.ndarray:
    """Whole-pixel moves ``[N, 2]`` of the course-style images: each class's positions are shuffled
    (seeded) and dealt to the pools (``pools[i]`` in 0..P-1, e.g. train / validation / test) in
    proportion to their images, every pool that has images getting at least one position; the
    images of a pool then take their pool's positions in turn (as the course cycles through its
    positions), so no position, hence no image, is in two pools."""
    labels = np.asarray(labels)
    pools = np.zeros(len(labels), dtype=np.int64) if pools is None else np.asarray(pools, dtype=np.int64)
    moves = np.zeros((len(labels), 2), dtype=np.int64)
    classes = np.unique(labels)
    parts = decode_label(classes)
    every = course_positions(np.asarray(style.lengths)[parts["length"]], np.asarray(style.widths)[parts["width"]],
                             np.asarray(ANGLES_DEG, dtype=np.float64)[parts["angle"]], image_size)
    for label, positions in zip(classes, every):
        rng = np.random.default_rng([seed, int(label)])
        positions = positions[rng.permutation(len(positions))]
        members = np.flatnonzero(labels == label)
        names, counts = np.unique(pools[members], return_counts=True)
        if len(names) > len(positions):
            raise ValueError(f"class {label} has {len(positions)} positions, fewer than its {len(names)} splits")
        share = counts * len(positions)                   # in integers: no rounding noise decides a tie
        quota = np.maximum(share // counts.sum(), 1)
        while quota.sum() > len(positions):
            quota[np.argmax(quota)] -= 1
        for i in np.argsort(-(share % counts.sum()), kind="stable"):
            if quota.sum() >= len(positions):
                break
            quota[i] += 1
        bounds = np.concatenate([[0], np.cumsum(quota)])
        for j, name in enumerate(names):
            own = positions[bounds[j]:bounds[j + 1]]
            idx = members[pools[members] == name]
            moves[idx] = own[np.arange(len(idx)) % len(own)]
    return moves


def draw_params(labels, style: LineStyle, seed: int, image_size: int = 28, margin: float = 1.0,
                augment: Augment | None = None, augmented=None, pools=None) -> RenderParams:
    """Per-image drawing parameters for ``labels`` in ``style``; of the images where ``augmented``
    is True (default: none), ``augment.share`` draw their factors from ``augment`` instead.
    ``pools`` (int per image, e.g. 0 train, 1 validation, 2 test) keep the course style's
    positions apart (see :func:`_pool_moves`). Deterministic for ``seed``."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    parts = decode_label(labels)
    rng = np.random.default_rng(seed)
    u_centre = rng.random((n, 2))  # drawn first: the sheet style's centres are exactly the original generator's
    aug = np.zeros(n, dtype=bool) if augment is None or augmented is None else np.asarray(augmented, dtype=bool)
    if aug.shape != (n,):
        raise ValueError(f"augmented must be a boolean array of {n} entries, got shape {aug.shape}")
    if pools is not None and np.shape(pools) != (n,):
        raise ValueError(f"pools must hold one integer per image ({n}), got shape {np.shape(pools)}")

    lengths = np.asarray(style.lengths, dtype=np.float64)[parts["length"]]
    widths = np.asarray(style.widths, dtype=np.float64)[parts["width"]]
    angles = np.asarray(ANGLES_DEG, dtype=np.float64)[parts["angle"]]
    blur = np.full(n, style.blur)
    anti_alias = np.full(n, style.anti_alias)
    brightness = np.full(n, style.brightness[0])
    quality = np.full(n, style.jpeg_quality or 0, dtype=np.int64)
    j420 = np.full(n, style.jpeg_subsampling == "4:2:0")
    uniform_pos = np.full(n, style.centre_mean is None)
    block = np.full(n, style.block)
    pen = np.zeros(n, dtype=np.int64)
    whole_px = np.zeros(n, dtype=bool)
    channels = np.asarray([int(np.argmax(COLOUR_RGB[c])) for c in COLOURS])[parts["colour"]]

    if style.brightness[1] > style.brightness[0]:
        brightness = rng.uniform(*style.brightness, n)
    if aug.any():
        a = augment
        if a.share < 1.0:  # the rest of the marked images are drawn in the style itself
            aug = aug & (np.random.default_rng([seed, 1]).random(n) < a.share)
    if aug.any():
        k = int(aug.sum())
        brightness[aug] = rng.uniform(*a.brightness, k)
        blur[aug] = rng.uniform(*a.blur, k)
        anti_alias[aug] = rng.random(k) >= a.hard_edges
        q = rng.integers(a.jpeg_quality[0], a.jpeg_quality[1] + 1, k)
        quality[aug] = np.where(rng.random(k) < a.no_jpeg, 0, q)
        j420[aug] = rng.random(k) < a.jpeg_420
        w_jit, l_jit = rng.uniform(*a.width_jitter, k), rng.uniform(*a.length_jitter, k)
        angles[aug] = angles[aug] + rng.uniform(-a.angle_jitter, a.angle_jitter, k)
        uniform_pos[aug] = (rng.random(k) < a.uniform_position) | (style.centre_mean is None)
        if a.blocks > 0 or style.block:
            block[aug] = np.random.default_rng([seed, 2]).random(k) < a.blocks
        lines, blocks = aug & ~block, aug & block
        (ls, ws) = style.line_sizes or (style.lengths, style.widths)
        lengths[lines] = np.asarray(ls, dtype=np.float64)[parts["length"][lines]]
        widths[lines] = np.asarray(ws, dtype=np.float64)[parts["width"][lines]]
        lengths[blocks] = np.asarray(LENGTHS_PX)[parts["length"][blocks]]   # the course generator's l and w
        widths[blocks] = np.asarray(WIDTHS_PX)[parts["width"][blocks]]
        widths[aug] = widths[aug] + w_jit
        lengths[aug] = np.maximum(lengths[aug] + l_jit, 1.0)
        anti_alias[block] = False
        if a.pillow > 0:  # other students' pens at the sheet's nominal sizes (pen_render.py)
            pen_rng = np.random.default_rng([seed, 3])
            drawn = lines & (pen_rng.random(n) < a.pillow)
            k = int(drawn.sum())
            pen[drawn] = np.where(pen_rng.random(k) < PEN_LINE_SHARE, PEN_LINE, PEN_POLYGON)
            whole_px[drawn] = (pen[drawn] == PEN_LINE) & (pen_rng.random(k) < a.whole_pixel_ends)
            lengths[drawn] = np.asarray(LENGTHS_PX, dtype=np.float64)[parts["length"][drawn]] + pen_rng.uniform(*PEN_LENGTH_JITTER, k)
            widths[drawn] = np.asarray(WIDTHS_PX, dtype=np.float64)[parts["width"][drawn]] + np.where(
                pen[drawn] == PEN_POLYGON, pen_rng.uniform(*PEN_POLYGON_WIDTH_JITTER, k), 0.0)
            anti_alias[drawn], blur[drawn] = False, 0.0
        # hard-edged lines narrower than a pixel break into dots: no drawing program makes those;
        # a hard-edged thin line is a 1-px pen (Pillow's 3-px line at 15 degrees is 2.2 px of ink)
        hard_thin = ~anti_alias & ~block & (pen == PEN_NONE) & (parts["width"] == 0)
        widths = np.where(anti_alias, np.maximum(widths, MIN_SOFT_WIDTH), np.maximum(widths, 1.0))
        widths[hard_thin] = np.minimum(widths[hard_thin], HARD_THIN_MAX)

    lo, hi = valid_centre_range(angles, lengths, widths, edge_extent(anti_alias, blur), image_size, margin)
    if np.any((hi < lo)[~block]):
        raise ValueError(f"a line does not fit in a {image_size}px image with margin {margin}")
    centres = lo + u_centre * (hi - lo)
    normal = ~uniform_pos & ~block
    if normal.any():
        mean, sd = np.asarray(style.centre_mean), np.asarray(style.centre_sd)
        centres[normal] = _truncated_normal(u_centre[normal], lo[normal], hi[normal], mean, sd)
    if block.any():
        exact = block & ~aug   # the style's own images: the course's positions, kept apart by pool
        moves = np.zeros((n, 2), dtype=np.int64)
        if exact.any():  # every image's pool counts, so a split's positions do not depend on the augmentation
            moves[exact] = _pool_moves(labels, style, pools, seed, image_size)[exact]
        jittered = block & aug
        if jittered.any():
            blo, bhi = block_shift_range(lengths[jittered], widths[jittered], angles[jittered], image_size)
            moves[jittered] = blo + np.floor(u_centre[jittered] * (bhi - blo + 1)).astype(np.int64)
        centres[block] = block_centre(angles[block], image_size) + moves[block]
    if style.name == "sheet" and not aug.any():
        centres = centres.astype(np.float32).astype(np.float64)  # the original generator's float32 centres
    return RenderParams(labels=labels, centres=centres, angles=angles, lengths=lengths, widths=widths,
                        blur=blur, anti_alias=anti_alias, brightness=brightness, jpeg_quality=quality,
                        jpeg_420=j420, channels=channels, block=block, exact_jpeg=block & ~aug, pen=pen,
                        whole_px=whole_px)


def _draw_blocks(p: RenderParams, image_size: int) -> tuple[torch.Tensor, np.ndarray]:
    """Coverage (float [0, 1]) and masks of images drawn by the course's generator: the rotated
    block moved by the whole pixels that bring its centre to ``p.centres``, blurred when ``blur`` > 0."""
    from pipeline.data.line_render import course_rotated_blocks, shift_images

    rotated = course_rotated_blocks(p.lengths, p.widths, p.angles, image_size)
    moves = np.rint(p.centres - block_centre(p.angles, image_size)).astype(np.int64)
    moved = shift_images(rotated, moves[:, 0], moves[:, 1])
    cov = torch.from_numpy(moved.astype(np.float32) / 255.0)
    mask = cov.numpy() >= MASK_COVERAGE
    return gaussian_blur(cov, p.blur), mask


def render(params: RenderParams, image_size: int = 28, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Draw the images: uint8 ``[N, 3, S, S]`` and their ground-truth masks bool ``[N, S, S]``.

    Anti-aliased images: the coverage of :func:`~pipeline.data.line_render.line_coverage`,
    mask = coverage >= :data:`MASK_COVERAGE`. Hard-edged images: the pixel-centre rule of
    :func:`~pipeline.data.lines.rasterize_lines` (that is the mask), blurred afterwards when
    their ``blur`` > 0. Course blocks: the course's generator (:func:`_draw_blocks`), mask =
    the warped block >= :data:`MASK_COVERAGE`. Then brightness, the colour channel, and the JPEG
    round trip (one file per image where ``exact_jpeg``).
    """
    n, s = len(params), image_size
    images = np.zeros((n, 3, s, s), dtype=np.uint8)
    masks = np.zeros((n, s, s), dtype=bool)
    from tqdm.auto import tqdm

    from pipeline.data.line_render import jpeg_roundtrip_each

    bar = tqdm(total=n, desc="Drawing lines", unit="img", disable=not progress)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        p = params.subset(sl)
        cov = torch.zeros((len(p), s, s))
        mask = np.zeros((len(p), s, s), dtype=bool)
        blocks = np.flatnonzero(p.block)
        soft = np.flatnonzero(p.anti_alias & ~p.block)
        hard = np.flatnonzero(~p.anti_alias & ~p.block & (p.pen == PEN_NONE))
        pens = np.flatnonzero((p.pen != PEN_NONE) & ~p.block)
        if len(soft):
            cov[soft] = line_coverage(p.centres[soft], p.angles[soft], p.lengths[soft], p.widths[soft],
                                      p.blur[soft], s)
            mask[soft] = (cov[soft] >= MASK_COVERAGE).numpy()
        if len(hard):
            m = rasterize_lines(p.centres[hard], p.angles[hard], p.lengths[hard], p.widths[hard], s)
            cov[hard] = gaussian_blur(torch.from_numpy(m).float(), p.blur[hard])
            mask[hard] = m
        if len(blocks):
            cov[blocks], mask[blocks] = _draw_blocks(p.subset(blocks), s)
        if len(pens):
            m = draw_pen_lines(p.pen[pens], p.centres[pens], p.angles[pens], p.lengths[pens], p.widths[pens],
                               p.whole_px[pens], s)
            cov[pens] = gaussian_blur(torch.from_numpy(m).float(), p.blur[pens])
            mask[pens] = m
        masks[sl] = mask
        value = np.rint(cov.numpy() * p.brightness[:, None, None] * 255).clip(0, 255).astype(np.uint8)
        images[np.arange(sl.start, sl.stop), p.channels] = value
        bar.update(len(p))
    bar.close()
    coded = params.jpeg_quality > 0
    exact = coded & params.exact_jpeg
    if exact.any():
        for sub, flag in (("4:2:0", True), ("4:4:4", False)):
            idx = np.flatnonzero(exact & (params.jpeg_420 == flag))
            if len(idx):
                images[idx] = jpeg_roundtrip_each(images[idx], params.jpeg_quality[idx], subsampling=sub)
    for sub, flag in (("4:2:0", True), ("4:4:4", False)):
        idx = np.flatnonzero(coded & ~exact & (params.jpeg_420 == flag))
        if len(idx):
            images[idx] = jpeg_roundtrip(images[idx], params.jpeg_quality[idx], subsampling=sub)
    return images, masks
