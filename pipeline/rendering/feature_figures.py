"""Figures of feature visualization: labelled pattern grids and raw first-layer kernels.

Patterns are in [0, 1] and drawn as they are (no per-tile stretch: what the model saw).
Every tile is labelled with its unit or class, the objective value it reaches and its rank;
a legend under the grid says what those numbers are. Titles wrap instead of being clipped.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from pipeline.rendering.output import save_figure

from pipeline.rendering.style import MIN_FONT_PT

__all__ = ["render_feature_grid", "render_kernel_grid"]


def _np(x, dtype=np.float32) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=dtype)


def _grid(n: int, ncols: int | None) -> tuple[int, int]:
    cols = ncols or int(np.ceil(np.sqrt(n)))
    return -(-n // cols), cols


def _save(fig: Figure, path: Path) -> Path:
    return save_figure(fig, path, fig.dpi)   # render.format / render.dpi (pipeline/rendering/output.py)


def render_feature_grid(patterns, scores, targets, path, title: str, *, legend: str, names=None, probs=None,
                        top: int | None = None, ncols: int | None = None, dpi: int = 100) -> Path:
    """Patterns [T,C,H,W] in [0,1] ranked by score (best first; the ``top`` best when given).

    Tile label: ``#rank <unit or class name> <score>`` (and ``p=<prob>`` for class pictures)."""
    pats, sc, tg = _np(patterns), _np(scores).reshape(-1), _np(targets, np.int64).reshape(-1)
    if pats.ndim != 4 or not len(pats) == len(sc) == len(tg):
        raise ValueError(f"patterns [T,C,H,W] with T scores and targets; got {pats.shape}, {len(sc)}, {len(tg)}")
    order = np.argsort(-np.nan_to_num(sc, nan=-np.inf), kind="stable")
    if top is not None:
        order = order[: max(1, int(top))]
    rows, cols = _grid(len(order), ncols)
    tile = 1.3
    width = max(cols * tile, 4.0)
    fig = Figure(figsize=(width, rows * (tile + 0.25) + 1.2), dpi=dpi, layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, (rank, i) in zip(axes, enumerate(order, 1)):
        img = np.clip(pats[i], 0, 1)
        ax.imshow(img[0] if img.shape[0] == 1 else np.moveaxis(img[:3], 0, -1), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        name = names[tg[i]] if names is not None else f"u{tg[i]}"
        label = f"#{rank} {name}\n{sc[i]:.3g}" + (f" p={_np(probs)[i]:.2f}" if probs is not None else "")
        ax.set_title(label, fontsize=MIN_FONT_PT)
    chars = max(30, int(width * 11))
    fig.suptitle("\n".join(textwrap.wrap(title, chars)), fontsize=9)
    fig.supxlabel("\n".join(textwrap.wrap(legend, chars)), fontsize=MIN_FONT_PT)
    return _save(fig, path)


def render_kernel_grid(weights, path, title: str, *, ncols: int | None = None, dpi: int = 100) -> Path:
    """Raw kernels [F,C,kh,kw] of a first convolution: 3-channel kernels in colour (0 = grey,
    each kernel scaled by its own largest |weight|), other channel counts channel 0 on a diverging map
    (blue negative, red positive, symmetric per kernel)."""
    w = _np(weights)
    if w.ndim != 4:
        raise ValueError(f"kernels must be [F,C,kh,kw], got {w.shape}")
    rows, cols = _grid(len(w), ncols)
    fig = Figure(figsize=(max(cols * 0.9, 4.0), rows * 0.9 + 1.2), dpi=dpi, layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    scale = np.abs(w).reshape(len(w), -1).max(1).clip(1e-12)
    for f, ax in enumerate(axes[: len(w)]):
        k = w[f] / scale[f]
        if k.shape[0] == 3:
            ax.imshow(np.moveaxis(0.5 + 0.5 * k, 0, -1), interpolation="nearest")
        else:
            ax.imshow(k[0], cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(f"k{f}", fontsize=MIN_FONT_PT)
    legend = ("colour: 0.5 + w / (2 max|w|) per kernel (grey = 0)" if w.shape[1] == 3
              else "red positive, blue negative, scaled by each kernel's max |w|")
    fig.suptitle("\n".join(textwrap.wrap(title, 60)), fontsize=9)
    fig.supxlabel(legend, fontsize=MIN_FONT_PT)
    return _save(fig, path)
