"""Figures of feature visualization: labelled pattern grids and raw first-layer kernels.

Patterns are in [0, 1] and drawn as they are (no per-tile stretch: what the model saw).
Unit pictures are ranked by score (``#rank``); class pictures stand in class order, each with the model's
probability for its own class, and one below ``reached`` is marked "not reached" (red label, band and frame).
Every tile is labelled with its unit or class and the objective value it reaches; a legend under the grid
says what those numbers are. Titles and legends wrap instead of being clipped. First-layer kernels are drawn
large on one colour scale for the layer, with a colour bar.

Fast by construction: every tile goes into ONE mosaic image drawn by a single ``imshow`` on one axes
(:mod:`~pipeline.rendering.mosaic`), with a white text band above each tile for its label, and the
figure's layout is computed here in inches (no constrained layout, no tight bounding box): a grid of
64 tiles costs one image and 64 short texts instead of 64 axes laid out by the solver.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pipeline.rendering.mosaic import grid_shape, mosaic, tile_origins
from pipeline.rendering.output import save_figure
from pipeline.rendering.style import MIN_FONT_PT

__all__ = ["render_feature_grid", "render_kernel_grid"]

CHAR_EM = 0.62      # a generous mean advance of a DejaVu Sans character, in em: wrap widths never clip
TITLE_PT = 9.0
GAP = 0.8           # grey of the gaps between tiles (label bands are white)
FLAG_COLOUR = "#c00000"                     # a failed tile's label and frame ("not reached")
FLAG_BAND = np.array([1.0, 0.85, 0.85], np.float32)  # ... and its label band
MIN_TILE_PX = 12    # narrower tiles are drawn with each pixel a block of pixels
CBAR_IN = 0.75      # height of a colour bar band (bar, ticks, label), inches
REACHED = 0.5       # a class picture "reaches" its class when the model gives it p >= this


def _np(x, dtype=np.float32) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=dtype)


def _wrap(text: str, width_in: float, size: float) -> str:
    """``text`` wrapped to lines that fit ``width_in`` inches at ``size`` pt (its own line breaks kept)."""
    chars = max(20, int(width_in * 72.0 / (CHAR_EM * size)))
    return "\n".join("\n".join(textwrap.wrap(line, chars)) for line in text.split("\n")) or text


def _lines_in(text: str, size: float) -> float:
    """Height in inches of ``text``'s lines at ``size`` pt (matplotlib's 1.2 line spacing, a little slack)."""
    return (text.count("\n") + 1) * size * 1.25 / 72.0


def _tile_grid(tiles: np.ndarray, labels: list[str], path, title: str, legend: str, *, tile_in: float,
               ncols: int | None, dpi: int, flagged=(), colorbar: tuple | None = None) -> Path:
    """RGB ``tiles`` [N,H,W,3] in [0, 1] as one mosaic, each under its ``label`` (centred in a white band
    above the tile), the wrapped ``title`` above and the wrapped ``legend`` below; a fixed layout.

    ``flagged``: indices of tiles marked as failed (label band tinted :data:`FLAG_BAND`, label in
    :data:`FLAG_COLOUR`, a frame of that colour around the tile). ``colorbar``: ``(cmap, vmin, vmax, label)``
    for a horizontal colour bar between the grid and the legend."""
    up = math.ceil(MIN_TILE_PX / tiles.shape[2])  # a small crop (a 3x3 receptive field): blocks of pixels, so
    if up > 1:                                      # that label bands and gaps keep a sensible size
        tiles = tiles.repeat(up, axis=1).repeat(up, axis=2)
    n, h, w, _ = tiles.shape
    flagged = sorted({int(i) for i in flagged})
    nrows, ncols = grid_shape(n, ncols)
    nlines = max(s.count("\n") + 1 for s in labels)
    longest = max(len(line) for s in labels for line in s.split("\n"))
    tile_in = max(tile_in, CHAR_EM * longest * MIN_FONT_PT / 72.0 + 0.1)  # the labels fit their tile at 8 pt
    px_in = tile_in / w                                                  # inches per picture pixel
    band = max(2, math.ceil((nlines * MIN_FONT_PT * 1.25 + 2.0) / 72.0 / px_in)) + 1  # text rows + the rule
    pad = max(1, round(w / 14))
    cells = np.ones((n, h + band, w, 3), dtype=np.float32)
    cells[:, band:] = tiles
    cells[:, band - 1] = GAP  # a grey rule under the label: a white picture keeps its top edge too
    cells[flagged, : band - 1] = FLAG_BAND
    m = mosaic(cells, ncols=ncols, pad=pad, pad_value=GAP)  # grey gaps: a white picture keeps its edges
    margin = 0.1
    grid_w, grid_h = m.shape[1] * px_in, m.shape[0] * px_in
    fig_w = max(grid_w + 2 * margin, 4.0)
    title = _wrap(title, fig_w - 2 * margin, TITLE_PT)
    legend = _wrap(legend, fig_w - 2 * margin, MIN_FONT_PT)
    title_in, legend_in = _lines_in(title, TITLE_PT) + 0.1, _lines_in(legend, MIN_FONT_PT) + 0.1
    cbar_in = CBAR_IN if colorbar else 0.0
    fig_h = margin + title_in + grid_h + cbar_in + legend_in + margin
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    ax = fig.add_axes(((fig_w - grid_w) / 2 / fig_w, (margin + legend_in + cbar_in) / fig_h, grid_w / fig_w,
                       grid_h / fig_h))
    ax.imshow(m, interpolation="nearest", aspect="equal")
    ax.set_axis_off()
    origins = tile_origins(n, h + band, w, ncols, pad)
    for i, (label, (r, c)) in enumerate(zip(labels, origins)):
        ax.text(c + w / 2 - 0.5, r + (band - 1) / 2 - 0.5, label, fontsize=MIN_FONT_PT, ha="center", va="center",
                linespacing=1.1, color=FLAG_COLOUR if i in flagged else "black")
    for i in flagged:  # a frame around the whole cell (band and picture), on the grey gap
        r, c = origins[i]
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), w, h + band, fill=False, edgecolor=FLAG_COLOUR,
                               linewidth=2.0, clip_on=False))
    if colorbar:
        cmap, vmin, vmax, label = colorbar
        bar_w = min(grid_w, 4.0)
        cax = fig.add_axes(((fig_w - bar_w) / 2 / fig_w, (margin + legend_in + cbar_in - 0.3) / fig_h, bar_w / fig_w,
                            0.14 / fig_h))
        cb = fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap=colormaps[cmap]), cax=cax,
                          orientation="horizontal")
        cb.ax.tick_params(labelsize=MIN_FONT_PT)
        cb.set_label(label, fontsize=MIN_FONT_PT)
    fig.text(0.5, 1 - (margin + title_in / 2) / fig_h, title, ha="center", va="center", fontsize=TITLE_PT)
    fig.text(0.5, (margin + legend_in / 2) / fig_h, legend, ha="center", va="center", fontsize=MIN_FONT_PT)
    return save_figure(fig, path, fig.dpi, facecolor="white")   # render.format / render.dpi (rendering/output.py)


def render_feature_grid(patterns, scores, targets, path, title: str, *, legend: str, names=None, probs=None,
                        top: int | None = None, ncols: int | None = None, dpi: int = 100, order: str = "score",
                        reached: float = REACHED) -> Path:
    """Patterns [T,C,H,W] in [0,1]; the ``top`` best by score when given, else all.

    ``order="score"`` (unit pictures): best first, tile label ``#rank <unit or class name>`` over ``<score>``.
    ``order="class"`` (class pictures): in class order (the targets ascending; copies stay adjacent), tile
    label ``<class name>`` over ``<score>`` -- no rank, which next to a digit's name reads as another digit.
    With ``probs`` (the model's probability for each picture's own class) the label carries ``p=<prob>`` and a
    picture with ``p < reached`` is marked ``not reached`` (red label, tinted band, red frame)."""
    pats, sc, tg = _np(patterns), _np(scores).reshape(-1), _np(targets, np.int64).reshape(-1)
    if pats.ndim != 4 or not len(pats) == len(sc) == len(tg):
        raise ValueError(f"patterns [T,C,H,W] with T scores and targets; got {pats.shape}, {len(sc)}, {len(tg)}")
    if order not in ("score", "class"):
        raise ValueError(f"order must be 'score' or 'class', got {order!r}")
    by_score = np.argsort(-np.nan_to_num(sc, nan=-np.inf), kind="stable")
    if top is not None:
        by_score = by_score[: max(1, int(top))]
    # class order: by target, the copies of one target in their original order
    shown = by_score if order == "score" else np.array(sorted(by_score, key=lambda i: (tg[i], i)), np.int64)
    img = np.clip(pats[shown], 0, 1)
    tiles = np.repeat(img[:, :1], 3, axis=1) if img.shape[1] == 1 else img[:, :3]
    tiles = np.moveaxis(tiles, 1, -1)
    pr = None if probs is None else _np(probs).reshape(-1)
    flagged = [k for k, i in enumerate(shown) if pr is not None and not pr[i] >= reached]  # NaN: not reached
    labels = []
    for k, i in enumerate(shown):
        name = names[tg[i]] if names is not None else f"u{tg[i]}"
        head = f"#{k + 1} {name}" if order == "score" else str(name)
        label = f"{head}\n{sc[i]:.3g}" + (f" p={pr[i]:.2f}" if pr is not None else "")
        labels.append(label + ("\nnot reached" if k in flagged else ""))
    return _tile_grid(tiles, labels, path, title, legend, tile_in=1.3, ncols=ncols, dpi=dpi, flagged=flagged)


def render_kernel_grid(weights, path, title: str, *, legend: str | None = None, ncols: int | None = None,
                       tile_in: float = 1.2, dpi: int = 100) -> Path:
    """Raw kernels [F,C,kh,kw] of a first convolution, large, on ONE colour scale for the layer with a colour bar
    (m = the layer's largest |weight|): one-channel (and other non-RGB) kernels channel 0 on the diverging RdBu_r
    over [-m, m] (blue negative, white 0, red positive); 3-channel kernels in colour, each channel 0.5 + w / 2m
    (grey = 0), the bar showing one channel's scale. ``legend`` is written under the bar (a default says the
    mapping). Each weight is a block of pixels; the tiles are at least ``tile_in`` inches wide."""
    w = _np(weights)
    if w.ndim != 4:
        raise ValueError(f"kernels must be [F,C,kh,kw], got {w.shape}")
    m = float(np.abs(w).max()) or 1.0
    if w.shape[1] == 3:
        tiles = np.moveaxis(0.5 + 0.5 * w / m, 1, -1)
        bar = ("gray", -m, m, "weight, per colour channel (0 = grey)")
        mapping = "colour: each channel 0.5 + w / (2 max|w|), one scale for the layer (grey = 0)"
    else:
        tiles = colormaps["RdBu_r"]((w[:, 0] / m + 1) / 2)[..., :3]
        bar = ("RdBu_r", -m, m, "weight (0 = white)" + ("" if w.shape[1] == 1 else "; input channel 0"))
        mapping = "red positive, blue negative, one scale for the layer"
    up = max(1, math.ceil(28 / max(w.shape[-2:])))  # each weight a block of up x up mosaic pixels: finer spacing
    tiles = tiles.repeat(up, axis=1).repeat(up, axis=2)
    return _tile_grid(np.clip(tiles, 0, 1).astype(np.float32), [f"k{f}" for f in range(len(w))], path, title,
                      legend or mapping, tile_in=tile_in, ncols=ncols, dpi=dpi, colorbar=bar)
