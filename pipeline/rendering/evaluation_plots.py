"""Figures of the evaluate job: scores per method, deletion/insertion curves, and the
randomization cascade as an image grid."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from pipeline.rendering.figures import normalize_each, to_display_rgb
from pipeline.rendering.mosaic import mosaic, tile_origins
from pipeline.rendering.output import save_figure
from pipeline.rendering.style import MIN_FONT_PT


def _save(fig: Figure, path: Path, dpi: int = 100) -> Path:
    return save_figure(fig, path, dpi, facecolor="white", bbox_inches="tight")


def plot_scores(rows: Sequence[Mapping], score: str, path: Path, title: str, chance: float | None = None) -> Path:
    """One bar per (method, head): ``rows`` are the evaluation table's dicts; a row's ``<score>_ci``
    ``[low, high]`` (the bootstrap interval over the images) is drawn as an error bar."""
    labels = [f"{r['method']}" + (f"\n{r['head']}" if r["head"] != "class" else "") for r in rows]
    values = [float(r.get(score) if r.get(score) is not None else np.nan) for r in rows]
    cis = [r.get(f"{score}_ci") for r in rows]
    yerr = None
    if any(cis):
        lows = [v - ci[0] if ci else 0.0 for v, ci in zip(values, cis)]
        highs = [ci[1] - v if ci else 0.0 for v, ci in zip(values, cis)]
        yerr = np.clip(np.array([lows, highs], dtype=float), 0, None)
    fig = Figure(figsize=(max(6, 0.55 * len(rows) + 2), 3.6))
    ax = fig.subplots()
    ax.bar(range(len(rows)), values, color="#3b6ea5", yerr=yerr, ecolor="#222222", capsize=2,
           error_kw={"linewidth": 0.8})
    if chance is not None:
        ax.axhline(chance, color="#c0392b", linestyle="--", linewidth=1, label=f"chance {chance:.3f}")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=MIN_FONT_PT)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_curves(curves: Mapping[str, np.ndarray], path: Path, title: str, ylabel: str = "target probability") -> Path:
    """Mean curve per method ([N, steps+1] each) over the fraction of pixels changed."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, c in curves.items():
        c = np.asarray(c)
        xs = np.linspace(0, 1, c.shape[1])
        ax.plot(xs, c.mean(0), label=name, linestyle="--" if "random" in name else "-")
    ax.set_xlabel("fraction of pixels changed")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=MIN_FONT_PT, ncol=2)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_cascade(image: np.ndarray, maps_by_method: Mapping[str, Sequence[np.ndarray]], step_names: Sequence[str],
                 path: Path, title: str) -> Path:
    """Rows: methods; columns: the input, then the map after each randomization step (a map
    without a peak -- all zero or constant -- is drawn dark and labelled "blank").

    Drawn as ONE image (the tiles coloured here, white gutters between them) in one axes, labelled
    by its ticks: a grid of 9 x 10 separate axes took 1.3-1.9 s a figure, most of it building the axes."""
    from matplotlib import colormaps

    rgb = to_display_rgb(image)
    h, w = rgb.shape[:2]
    gap = max(1, round(max(h, w) / 10))
    rows, cols = len(maps_by_method), len(step_names) + 1
    jet = colormaps["jet"]
    tiles, blanks = [], []   # row-major: each method's input, then its maps; blanks: tile indices
    for r, maps in enumerate(maps_by_method.values()):
        raw = np.stack([np.asarray(m, dtype=np.float32) for m in maps])
        if raw.shape[1:] != (h, w):
            raise ValueError(f"cascade maps are {raw.shape[1:]}, the image is {(h, w)}: they must match")
        flat = raw.reshape(len(raw), -1)
        blank = np.nanmax(flat, 1) <= np.nanmin(flat, 1)
        shown = np.where(blank[:, None, None], 0.0, normalize_each(raw))  # a blank map is drawn as zeros
        tiles += [rgb] + [jet(np.nan_to_num(m, nan=0.0))[..., :3] for m in shown]
        blanks += [r * cols + c for c in np.flatnonzero(blank) + 1]
    sheet = mosaic(np.stack(tiles).astype(np.float32), ncols=cols, pad=gap, pad_value=1.0)  # white gutters
    origins = tile_origins(len(tiles), h, w, ncols=cols, pad=gap)
    fig = Figure(figsize=(1.3 * cols, 1.4 * rows + 0.6))
    ax = fig.subplots()
    ax.imshow(sheet, interpolation="nearest")
    for i in blanks:
        y, x = origins[i]
        ax.text(x + w / 2 - 0.5, y + h / 2 - 0.5, "blank", ha="center", va="center", color="white",
                fontsize=MIN_FONT_PT)
    ax.set_xticks([origins[c][1] + w / 2 - 0.5 for c in range(cols)], ["input", *step_names], fontsize=MIN_FONT_PT)
    ax.set_yticks([origins[r * cols][0] + h / 2 - 0.5 for r in range(rows)], list(maps_by_method),
                  fontsize=MIN_FONT_PT)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
