"""Figures of the visualize jobs: activation mosaics, filter-pattern grids, Grad-CAM overlays.

Every grid is drawn as ONE ``imshow`` of a mosaic (see :mod:`pipeline.rendering.mosaic`), never
as one subplot per channel, so a 64-channel layer renders in a fraction of a second. Figures are
plain :class:`matplotlib.figure.Figure` objects on the Agg canvas: no pyplot, no global state,
nothing left open after a call. Each ``render_*`` function returns the ``Path`` it wrote.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # harmless when pyplot is never imported; keeps headless runs safe

import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .mosaic import grid_shape, mosaic, tile_origins  # noqa: E402
from .output import save_figure  # noqa: E402
from .style import MIN_FONT_PT  # noqa: E402

__all__ = [
    "to_display_rgb",
    "display_base",
    "shared_limits",
    "normalize_each",
    "overlay_heatmap",
    "render_activation_figure",
    "render_filter_grid",
    "render_gradcam_figure",
    "render_gradcam_sheet",
    "OUTLINE_COLOUR",
]

_LABEL_EFFECTS = [patheffects.withStroke(linewidth=1.5, foreground="black")]
OUTLINE_COLOUR = "#ff00ff"  # the ground-truth mask's outline: magenta, a colour no jet/turbo/inferno heat takes
OUTLINE_NOTE = "magenta outline: the ground-truth mask"


# --------------------------------------------------------------------------- array helpers
def _np(x, dtype=np.float32) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def to_display_rgb(image) -> np.ndarray:
    """[C,H,W] (or [H,W]) image in [0,1] -> [H,W,3] float32 in [0,1]; grey is repeated to 3 channels."""
    img = _np(image)
    if img.ndim == 2:
        img = img[None]
    if img.ndim != 3:
        raise ValueError(f"expected an image [C,H,W], got shape {img.shape}")
    c = img.shape[0]
    if c == 3:
        rgb = img.transpose(1, 2, 0)
    elif c == 4:  # RGBA: drop alpha
        rgb = img[:3].transpose(1, 2, 0)
    else:  # 1 channel (grey) or an unusual count: show the mean as grey
        grey = img[0] if c == 1 else img.mean(axis=0)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
    return np.clip(np.nan_to_num(rgb, nan=0.0), 0.0, 1.0).astype(np.float32)


def shared_limits(values) -> tuple[float, float]:
    """One (vmin, vmax) for a whole figure: min and max over all finite values.

    A constant array gets (v, v + 1) so it is drawn in the colour map's lowest colour (a dead
    ReLU layer looks "off", not mid-scale); an array with no finite value gets (0, 1).
    """
    arr = _np(values)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return 0.0, 1.0
    vmin, vmax = float(finite.min()), float(finite.max())
    if vmax <= vmin:
        vmax = vmin + 1.0
    return vmin, vmax


def normalize_each(stack) -> np.ndarray:
    """Min-max normalize each item of a stack [N,...] to [0,1] independently (constant -> 0.5)."""
    arr = _np(stack)
    flat = arr.reshape(arr.shape[0], -1)
    lo = np.nanmin(flat, axis=1, keepdims=True)
    hi = np.nanmax(flat, axis=1, keepdims=True)
    span = hi - lo
    safe = np.where(span > 0, span, 1.0)
    out = np.where(span > 0, (flat - lo) / safe, 0.5)
    return out.reshape(arr.shape).astype(np.float32)


def display_base(rgb: np.ndarray) -> np.ndarray:
    """The grey image under a heatmap, [H,W] in [0,1]: each pixel's maximum over the channels,
    contrast-stretched to the image's [min, max]. Luma (0.299 R + 0.587 G + 0.114 B) would turn a
    blue line at 0.85 into 0.10, black on black; the maximum keeps every colour as bright as it is
    drawn (a constant image stays as it is)."""
    v = np.asarray(rgb, np.float32).max(axis=2)
    lo, hi = float(v.min()), float(v.max())
    return ((v - lo) / (hi - lo) if hi > lo else v).astype(np.float32)


def overlay_heatmap(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """The colour-mapped ``heat`` [H,W] (in [0,1]) over ``rgb`` [H,W,3] shown in grey (:func:`display_base`),
    each pixel's opacity ``alpha * heat`` (low values fade out, as torchcam's overlay): a zero map leaves
    the grey image."""
    heat = np.clip(np.nan_to_num(_np(heat), nan=0.0), 0.0, 1.0)
    if heat.shape != rgb.shape[:2]:
        raise ValueError(f"heatmap {heat.shape} does not match the image {rgb.shape[:2]}")
    grey = np.repeat(display_base(rgb)[..., None], 3, axis=2)
    coloured = colormaps[cmap](heat)[..., :3].astype(np.float32)
    a = (alpha * heat)[..., None]
    return np.clip((1.0 - a) * grey + a * coloured, 0.0, 1.0).astype(np.float32)


def _outline(ax, mask, x0: float = 0.0, y0: float = 0.0) -> None:
    """The ground-truth ``mask`` [H,W]'s outline, on the pixel edges, drawn at ``(x0, y0)`` of ``ax``'s image."""
    m = np.asarray(mask, np.float32)
    if m.ndim != 2 or not m.any():
        return
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    ax.contour(x0 + np.arange(m.shape[1]), y0 + np.arange(m.shape[0]), m, levels=[0.5],
               colors=OUTLINE_COLOUR, linewidths=1.0)
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)


def _cmap(name: str, bad: str = "white"):
    return colormaps[name].with_extremes(bad=bad)


def _save(fig: Figure, path, dpi: int) -> Path:
    try:
        return save_figure(fig, path, dpi, facecolor="white")
    finally:
        fig.clear()


# --------------------------------------------------------------------------- activations
def render_activation_figure(image, acts, path, title: str, cmap: str = "viridis", dpi: int = 100,
                             ncols: int | None = None, limits: tuple[float, float] | None = None,
                             image_name: str | None = None) -> Path:
    """Input image (left) and a mosaic of all channels of ``acts`` [C,h,w] (right).

    One colour scale for the whole mosaic (:func:`shared_limits`), with a colour bar; each
    tile carries its channel index. A linear layer's vector [F] is drawn as a grid of 1x1
    tiles (row-major, unlabelled). ``limits``: the scale shared by all images of the layer; values
    of both signs are drawn with the diverging RdBu_r centred on 0, non-negative ones with ``cmap``.
    ``image_name``: the image's class in words ("short thin 45° red", "digit 7"), written over the input.
    """
    rgb = to_display_rgb(image)
    a = _np(acts)
    dense = a.ndim == 1
    if dense:
        a = a[:, None, None]
    elif a.ndim == 2:
        a = a[:, None, :]
    if a.ndim != 3:
        raise ValueError(f"activations must be [C,h,w] (or [F]), got shape {a.shape}")
    c, h, w = a.shape
    pad = 0 if (h == 1 and w == 1) else max(1, round(max(h, w) / 16))
    nrows, ncols = grid_shape(c, ncols)
    m = mosaic(a, ncols=ncols, pad=pad)
    vmin, vmax = limits if limits is not None else shared_limits(a)
    signed = vmin < 0 < vmax
    if signed:
        vmax = max(-vmin, vmax)
        vmin, cmap = -vmax, "RdBu_r"

    # Fixed geometry in inches (no layout engine: constrained layout cost a second draw per figure):
    # a title band, then the input (left), the mosaic at its own aspect, and the colour bar beside it.
    aspect = m.shape[1] / m.shape[0]
    img_w, panel_h = 2.6, 6.0
    mosaic_w = float(np.clip(panel_h * aspect, 3.0, 13.0))
    fig_w, fig_h = img_w + mosaic_w + 1.6, panel_h + 0.9
    top, bottom = 0.6, 0.15                          # suptitle + panel titles; bottom margin
    box_h = fig_h - top - bottom
    mw = min(mosaic_w, box_h * aspect)
    mh = mw / aspect
    mx, my = img_w + 0.1, bottom + (box_h - mh) / 2
    iw = min(img_w - 0.4, box_h)
    fig = Figure(figsize=(fig_w, fig_h))
    ax_img = fig.add_axes((0.2 / fig_w, (bottom + (box_h - iw) / 2) / fig_h, iw / fig_w, iw / fig_h))
    ax_m = fig.add_axes((mx / fig_w, my / fig_h, mw / fig_w, mh / fig_h))
    cax = fig.add_axes(((mx + mw + 0.12) / fig_w, (my + 0.075 * mh) / fig_h, 0.2 / fig_w, 0.85 * mh / fig_h))

    ax_img.imshow(rgb, interpolation="nearest")
    size = f"input {rgb.shape[0]}x{rgb.shape[1]}"
    name = textwrap.fill(image_name, 28) if image_name else ""
    ax_img.set_title(f"{name}\n{size}" if name else size, fontsize=9)
    ax_img.set_axis_off()

    im = ax_m.imshow(m, cmap=_cmap(cmap), vmin=vmin, vmax=vmax, interpolation="nearest", aspect="auto")
    ax_m.set_axis_off()
    if dense:
        ax_m.set_title(f"{c} units (row-major, {ncols} per row)", fontsize=9)
    else:
        ax_m.set_title(f"{c} channels, {h}x{w} each", fontsize=9)
        if c <= 256:
            tile_pts = mw * 72.0 / ncols
            fs = MIN_FONT_PT  # channel numbers only where they fit a tile at a readable size
            off = 0.04 * max(h, w)
            for i, (r, col) in enumerate(tile_origins(c, h, w, ncols, pad) if len(str(c - 1)) * 0.62 * fs <= 0.45 * tile_pts else []):
                ax_m.text(col - 0.5 + off, r - 0.5 + off, str(i), fontsize=fs, color="white",
                          ha="left", va="top", path_effects=_LABEL_EFFECTS)
    cb = fig.colorbar(im, cax=cax)
    cb.ax.tick_params(labelsize=8)
    cb.set_label(("signed activation, 0 = white" if signed else "activation") +
                 (" (scale shared by the layer's images)" if limits is not None else ""), fontsize=8)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------- labelled grids
def _labelled_grid(tiles: np.ndarray, labels: Sequence[str], path, title: str, dpi: int,
                   tile_in: float, ncols: int | None = None, colorbar: tuple | None = None,
                   outlines: Sequence | None = None) -> Path:
    """Draw RGB ``tiles`` [N,H,W,3] (in [0,1]) as one mosaic, each with a text band above it;
    ``outlines``: per tile a mask [H,W] whose outline is drawn on it, or None."""
    n, h, w, _ = tiles.shape
    nrows, ncols = grid_shape(n, ncols)
    labels = [str(s) for s in labels]
    nlines = max((s.count("\n") + 1 for s in labels), default=1)
    longest = max((len(line) for s in labels for line in s.split("\n")), default=1)
    tile_in = max(tile_in, 0.62 * longest * MIN_FONT_PT / 72.0)  # wide enough for its labels at >= 8 pt
    tile_pts = tile_in * 72.0
    fs = float(np.clip(tile_pts / (0.62 * max(longest, 1)), MIN_FONT_PT, 9.0))
    band = max(2, math.ceil(h * (nlines * fs * 1.3 + 3.0) / tile_pts))
    pad = max(1, round(h / 14))

    cells = np.ones((n, h + band, w, 3), dtype=np.float32)
    cells[:, band:] = tiles
    m = mosaic(cells, ncols=ncols, pad=pad, pad_value=1.0)

    cbar_in, margin = (0.75 if colorbar else 0.0), 0.1
    grid_w = ncols * tile_in
    grid_h = grid_w * m.shape[0] / m.shape[1]
    fig_w = max(grid_w + 2 * margin, 4.0)
    title = "\n".join(textwrap.wrap(title, max(20, int(fig_w * 72 / (0.6 * 11))))) or title  # never clipped
    title_in = 0.35 + 0.2 * (title.count("\n") + 1)
    fig_h = grid_h + title_in + cbar_in + 2 * margin
    fig = Figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((margin / fig_w, (margin + cbar_in) / fig_h,
                       1 - 2 * margin / fig_w, grid_h / fig_h))
    ax.imshow(m, interpolation="nearest")
    ax.set_axis_off()
    for k, (label, (r, col)) in enumerate(zip(labels, tile_origins(n, h + band, w, ncols, pad))):
        ax.text(col + w / 2 - 0.5, r + band / 2 - 0.5, label, fontsize=fs,
                ha="center", va="center", linespacing=1.1)
        if outlines is not None and outlines[k] is not None:
            _outline(ax, outlines[k], col, r + band)
    fig.text(0.5, 1 - (title_in / 2) / fig_h, title, ha="center", va="center", fontsize=11)
    if colorbar:
        cmap, label = colorbar
        cax = fig.add_axes((0.25, (margin + 0.42) / fig_h, 0.5, 0.12 / fig_h))
        cb = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap=colormaps[cmap]), cax=cax,
                          orientation="horizontal")
        cb.ax.tick_params(labelsize=MIN_FONT_PT)
        cb.set_label(label, fontsize=MIN_FONT_PT)
    return _save(fig, path, dpi)


def render_filter_grid(patterns, scores, filter_indices, path, title: str, top: int | None = None,
                       dpi: int = 100, ncols: int | None = None) -> Path:
    """Filter patterns [F,C,H,W] ranked by score (best first; only ``top`` when given).

    Each pattern is min-max normalized on its own for display; 3-channel patterns are shown in
    colour, 1-channel ones in grey. Tiles are labelled ``f<index> <score>``.
    """
    pats = _np(patterns)
    if pats.ndim != 4:
        raise ValueError(f"patterns must be [F,C,H,W], got shape {pats.shape}")
    sc = _np(scores).reshape(-1)
    idx = _np(filter_indices, np.int64).reshape(-1)
    if not (len(sc) == len(idx) == len(pats)):
        raise ValueError(f"{len(pats)} patterns, {len(sc)} scores, {len(idx)} filter indices")
    order = np.argsort(-np.nan_to_num(sc, nan=-np.inf), kind="stable")
    if top is not None:
        order = order[: max(1, int(top))]
    tiles = np.stack([to_display_rgb(p) for p in normalize_each(pats[order])])
    labels = [f"f{idx[i]} {sc[i]:.2f}" for i in order]
    return _labelled_grid(tiles, labels, path, title, dpi, tile_in=1.15, ncols=ncols)


# --------------------------------------------------------------------------- Grad-CAM
def render_gradcam_figure(image, map_up, layer_map, path, title: str, alpha: float = 0.5,
                          cmap: str = "jet", dpi: int = 100, mask=None, input_title: str = "input",
                          note: str = "") -> Path:
    """Three panels: the input, the raw layer-resolution map, and the upsampled map over the input.

    ``map_up`` [H,W] is the display-normalized map in [0,1]; ``layer_map`` [h,w] is drawn on
    its own (raw) scale without smoothing. ``title`` is written as given (head, class, probability).
    ``mask`` [H,W]: the ground-truth mask, outlined on the input and the overlay; ``note``: a line
    under the panels (e.g. what a one-output head's class 0 map means).
    """
    rgb = to_display_rgb(image)
    up = _np(map_up)
    lm = _np(layer_map)
    if lm.ndim != 2:
        raise ValueError(f"layer_map must be [h,w], got shape {lm.shape}")
    blended = overlay_heatmap(rgb, up, alpha=alpha, cmap=cmap)

    # Fixed geometry in inches (no layout engine): three square panels, a colour bar right of the last two.
    side, bottom, fig_w, fig_h = 2.85, (0.45 if note else 0.15), 11.0, (4.3 if note else 4.0)
    y = (bottom + (fig_h - 0.55 - bottom - side) / 2) / fig_h

    def axes(x_in: float, w_in: float, h_in: float = side, y_frac: float = y):
        return fig.add_axes((x_in / fig_w, y_frac, w_in / fig_w, h_in / fig_h))

    fig = Figure(figsize=(fig_w, fig_h))
    ax_in, ax_raw, ax_ov = axes(0.15, side), axes(3.2, side), axes(6.95, side)
    cbar_y = y + 0.1 * side / fig_h
    cax_raw, cax_ov = axes(6.13, 0.15, 0.8 * side, cbar_y), axes(9.88, 0.15, 0.8 * side, cbar_y)
    ax_in.imshow(rgb, interpolation="nearest")
    ax_in.set_title(input_title, fontsize=9)
    vmin, vmax = shared_limits(lm)
    im = ax_raw.imshow(lm, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax_raw.set_title(f"layer map {lm.shape[0]}x{lm.shape[1]} (raw)", fontsize=9)
    cb = fig.colorbar(im, cax=cax_raw)
    cb.ax.tick_params(labelsize=MIN_FONT_PT)
    ax_ov.imshow(blended, interpolation="nearest")
    ax_ov.set_title(f"overlay on brightness (alpha {alpha:g} x map)", fontsize=9)
    cb2 = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap=colormaps[cmap]), cax=cax_ov)
    cb2.ax.tick_params(labelsize=MIN_FONT_PT)
    cb2.set_label("normalized importance", fontsize=MIN_FONT_PT)
    for ax in (ax_in, ax_raw, ax_ov):
        ax.set_xticks([])
        ax.set_yticks([])
    if mask is not None:
        _outline(ax_in, _np(mask))
        _outline(ax_ov, _np(mask))
    if note or mask is not None:
        text = "; ".join(t for t in (note, OUTLINE_NOTE if mask is not None else "") if t)
        fig.text(0.5, 0.12 / fig_h, textwrap.fill(text, 150), ha="center", va="bottom", fontsize=MIN_FONT_PT + 1)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path, dpi)


def render_gradcam_sheet(images, maps, titles: Sequence[str], path, alpha: float = 0.5,
                         cmap: str = "jet", dpi: int = 100, ncols: int | None = None,
                         title: str = "", masks=None, input_titles: Sequence[str] | None = None,
                         inputs: bool = True) -> Path:
    """Overview: one overlay (map [H,W] in [0,1] over its image) per image, in a grid, with the inputs.

    ``inputs``: without ``ncols`` each overlay follows its input (pairs, ``ceil(sqrt(N))`` pairs a row);
    with ``ncols`` the overlays run ``ncols`` a row after one input column (the row's first image: a
    row per image with several targets or heads). ``input_titles``: per image, the input tile's label
    (default "input"). ``masks`` [N,H,W]: ground-truth masks, outlined on the inputs and overlays.
    """
    imgs = _np(images)
    mp = _np(maps)
    if imgs.ndim != 4 or mp.ndim != 3 or len(imgs) != len(mp):
        raise ValueError(f"need images [N,C,H,W] and maps [N,H,W], got {imgs.shape} and {mp.shape}")
    if len(titles) != len(imgs):
        raise ValueError(f"{len(imgs)} images but {len(titles)} titles")
    n = len(imgs)
    mk = None if masks is None else _np(masks) > 0.5
    if mk is not None and mk.shape != mp.shape:
        raise ValueError(f"masks {mk.shape} do not match the maps {mp.shape}")
    in_titles = list(input_titles) if input_titles is not None else ["input"] * n
    if len(in_titles) != n:
        raise ValueError(f"{n} images but {len(in_titles)} input titles")
    rgbs = [to_display_rgb(im) for im in imgs]
    overlays = [overlay_heatmap(rgb, m, alpha=alpha, cmap=cmap) for rgb, m in zip(rgbs, mp)]
    if not inputs:
        order = [("o", i) for i in range(n)]
        cols = ncols
    elif ncols is None:   # pairs: input, overlay
        _, per_row = grid_shape(n)
        order = [(kind, i) for i in range(n) for kind in ("i", "o")]
        cols = 2 * per_row
    else:                 # an input column, then ``ncols`` overlays a row
        per_row = min(int(ncols), n)
        order = []
        for start in range(0, n, per_row):
            order += [("i", start)] + [("o", i) for i in range(start, min(start + per_row, n))]
        cols = per_row + 1
    tiles = np.stack([rgbs[i] if kind == "i" else overlays[i] for kind, i in order])
    labels = [in_titles[i] if kind == "i" else titles[i] for kind, i in order]
    outlines = None if mk is None else [mk[i] for _, i in order]
    bar = "normalized importance" + (f"; {OUTLINE_NOTE}" if mk is not None and mk.any() else "")
    return _labelled_grid(tiles, labels, path, title or "Grad-CAM overview", dpi, tile_in=1.9,
                          ncols=cols, colorbar=(cmap, bar), outlines=outlines)
