"""Figures of feature visualization: labelled pattern grids and raw first-layer kernels.

Patterns are in [0, 1] and drawn as they are (no per-tile stretch: what the model saw).
Every tile is labelled with its unit or class, the objective value it reaches and its rank;
a legend under the grid says what those numbers are. Titles and legends wrap instead of being clipped.

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
from matplotlib.figure import Figure

from pipeline.rendering.mosaic import grid_shape, mosaic, tile_origins
from pipeline.rendering.output import save_figure
from pipeline.rendering.style import MIN_FONT_PT

__all__ = ["render_feature_grid", "render_kernel_grid"]

CHAR_EM = 0.62      # a generous mean advance of a DejaVu Sans character, in em: wrap widths never clip
TITLE_PT = 9.0
GAP = 0.8           # grey of the gaps between tiles (label bands are white)


def _np(x, dtype=np.float32) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=dtype)


def _wrap(text: str, width_in: float, size: float) -> str:
    """``text`` wrapped to lines that fit ``width_in`` inches at ``size`` pt."""
    chars = max(20, int(width_in * 72.0 / (CHAR_EM * size)))
    return "\n".join(textwrap.wrap(text, chars)) or text


def _lines_in(text: str, size: float) -> float:
    """Height in inches of ``text``'s lines at ``size`` pt (matplotlib's 1.2 line spacing, a little slack)."""
    return (text.count("\n") + 1) * size * 1.25 / 72.0


def _tile_grid(tiles: np.ndarray, labels: list[str], path, title: str, legend: str, *, tile_in: float,
               ncols: int | None, dpi: int) -> Path:
    """RGB ``tiles`` [N,H,W,3] in [0, 1] as one mosaic, each under its ``label`` (centred in a white band
    above the tile), the wrapped ``title`` above and the wrapped ``legend`` below; a fixed layout."""
    n, h, w, _ = tiles.shape
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
    m = mosaic(cells, ncols=ncols, pad=pad, pad_value=GAP)  # grey gaps: a white picture keeps its edges
    margin = 0.1
    grid_w, grid_h = m.shape[1] * px_in, m.shape[0] * px_in
    fig_w = max(grid_w + 2 * margin, 4.0)
    title = _wrap(title, fig_w - 2 * margin, TITLE_PT)
    legend = _wrap(legend, fig_w - 2 * margin, MIN_FONT_PT)
    title_in, legend_in = _lines_in(title, TITLE_PT) + 0.1, _lines_in(legend, MIN_FONT_PT) + 0.1
    fig_h = margin + title_in + grid_h + legend_in + margin
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    ax = fig.add_axes(((fig_w - grid_w) / 2 / fig_w, (margin + legend_in) / fig_h, grid_w / fig_w, grid_h / fig_h))
    ax.imshow(m, interpolation="nearest", aspect="equal")
    ax.set_axis_off()
    for label, (r, c) in zip(labels, tile_origins(n, h + band, w, ncols, pad)):
        ax.text(c + w / 2 - 0.5, r + (band - 1) / 2 - 0.5, label, fontsize=MIN_FONT_PT, ha="center", va="center",
                linespacing=1.1)
    fig.text(0.5, 1 - (margin + title_in / 2) / fig_h, title, ha="center", va="center", fontsize=TITLE_PT)
    fig.text(0.5, (margin + legend_in / 2) / fig_h, legend, ha="center", va="center", fontsize=MIN_FONT_PT)
    return save_figure(fig, path, fig.dpi, facecolor="white")   # render.format / render.dpi (rendering/output.py)


def render_feature_grid(patterns, scores, targets, path, title: str, *, legend: str, names=None, probs=None,
                        top: int | None = None, ncols: int | None = None, dpi: int = 100) -> Path:
    """Patterns [T,C,H,W] in [0,1] ranked by score (best first; the ``top`` best when given).

    Tile label: ``#rank <unit or class name>`` over ``<score>`` (and ``p=<prob>`` for class pictures)."""
    pats, sc, tg = _np(patterns), _np(scores).reshape(-1), _np(targets, np.int64).reshape(-1)
    if pats.ndim != 4 or not len(pats) == len(sc) == len(tg):
        raise ValueError(f"patterns [T,C,H,W] with T scores and targets; got {pats.shape}, {len(sc)}, {len(tg)}")
    order = np.argsort(-np.nan_to_num(sc, nan=-np.inf), kind="stable")
    if top is not None:
        order = order[: max(1, int(top))]
    img = np.clip(pats[order], 0, 1)
    tiles = np.repeat(img[:, :1], 3, axis=1) if img.shape[1] == 1 else img[:, :3]
    tiles = np.moveaxis(tiles, 1, -1)
    pr = None if probs is None else _np(probs).reshape(-1)
    labels = [f"#{rank} {names[tg[i]] if names is not None else f'u{tg[i]}'}\n{sc[i]:.3g}"
              + (f" p={pr[i]:.2f}" if pr is not None else "") for rank, i in enumerate(order, 1)]
    return _tile_grid(tiles, labels, path, title, legend, tile_in=1.3, ncols=ncols, dpi=dpi)


def render_kernel_grid(weights, path, title: str, *, ncols: int | None = None, dpi: int = 100) -> Path:
    """Raw kernels [F,C,kh,kw] of a first convolution: 3-channel kernels in colour (0 = grey,
    each kernel scaled by its own largest |weight|), other channel counts channel 0 on a diverging map
    (blue negative, red positive, symmetric per kernel)."""
    w = _np(weights)
    if w.ndim != 4:
        raise ValueError(f"kernels must be [F,C,kh,kw], got {w.shape}")
    scale = np.abs(w).reshape(len(w), -1).max(1).clip(1e-12)
    k = w / scale[:, None, None, None]
    if w.shape[1] == 3:
        tiles = np.moveaxis(0.5 + 0.5 * k, 1, -1)
        legend = "colour: 0.5 + w / (2 max|w|) per kernel (grey = 0)"
    else:
        tiles = colormaps["RdBu_r"]((k[:, 0] + 1) / 2)[..., :3]
        legend = "red positive, blue negative, scaled by each kernel's max |w|"
    up = max(1, math.ceil(24 / max(w.shape[-2:])))  # each weight a block of up x up mosaic pixels: finer spacing
    tiles = tiles.repeat(up, axis=1).repeat(up, axis=2)
    return _tile_grid(np.clip(tiles, 0, 1).astype(np.float32), [f"k{f}" for f in range(len(w))], path, title,
                      legend, tile_in=0.8, ncols=ncols, dpi=dpi)
