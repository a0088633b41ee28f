"""Confusion matrices: the figure (``confusion_figure``), its PNG and its CSV.

What a person must be able to read at the figure's default size:

- one title, stating the accuracy and the number of images;
- cell text only when it fits its cell at >= 8 pt: the counts, else the percentage of the true
  class, else none (the colour still says it);
- class names as tick labels at >= 8 pt; a matrix of classes that are combinations of
  variations (the 96 lines classes: length x width x angle x colour) is labelled by variation
  instead: the outer variations as labelled blocks with separator lines, the next one as tick
  labels, the innermost named in the axis label.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pipeline.leftovers import atomic_file  # noqa: E402
from pipeline.rendering.output import save_figure  # noqa: E402
from pipeline.rendering.style import MIN_FONT_PT  # noqa: E402

__all__ = ["confusion_figure", "plot_confusion_matrix", "write_confusion_csv", "cell_text_mode"]

_CHAR_W = 0.62     # width of a digit / letter, as a share of the font size (DejaVu Sans, a little generous)
_DPI = 110


def _array(cm) -> np.ndarray:
    return np.asarray(cm.detach().cpu().numpy() if hasattr(cm, "detach") else cm)


def _fits(texts: Sequence[str], cell_pt: float, font_pt: float) -> bool:
    longest = max((len(t) for t in texts), default=1)
    return longest * _CHAR_W * font_pt <= 0.88 * cell_pt and 1.25 * font_pt <= 0.9 * cell_pt


def cell_text_mode(cm: np.ndarray, cell_pt: float) -> tuple[str, float]:
    """What each cell of a matrix drawn with ``cell_pt``-point cells can show: ``("counts", size)``,
    ``("percent", size)`` or ``("none", 0)``; the size is the largest that fits, 8 to 11 pt."""
    counts = [str(int(v)) for v in np.asarray(cm).ravel()]
    for mode, texts in (("counts", counts), ("percent", ["100"])):
        for size in (11.0, 10.0, 9.0, MIN_FONT_PT):
            if _fits(texts, cell_pt, size):
                return mode, size
    return "none", 0.0


def _factor_ticks(factors: Mapping[str, Sequence[str]]):
    """Tick positions and labels for classes that are the product of ``factors`` (the last factor
    varies fastest): ticks at each value of the second-to-last factor, blocks of the others."""
    names = list(factors)
    sizes = [len(factors[n]) for n in names]
    inner = sizes[-1]                     # cells per tick
    per_block = inner * sizes[-2]         # cells per outer block
    k = math.prod(sizes)
    ticks = np.arange(k // inner) * inner + (inner - 1) / 2
    tick_labels = [str(factors[names[-2]][i % sizes[-2]]) for i in range(k // inner)]
    blocks = []
    for b in range(k // per_block):
        rest, parts = b, []
        for n, s in zip(reversed(names[:-2]), reversed(sizes[:-2])):
            parts.append(str(factors[n][rest % s]))
            rest //= s
        blocks.append((b * per_block, (b + 1) * per_block, " ".join(reversed(parts))))
    axis_note = (f"{' x '.join(names[:-2])} blocks; ticks: {names[-2]}; "
                 f"each tick {inner} cells: {', '.join(map(str, factors[names[-1]]))}")
    return ticks, tick_labels, blocks, axis_note


def confusion_figure(cm, class_names: Sequence[str], title: str,
                     factors: Mapping[str, Sequence[str]] | None = None) -> Figure:
    """The confusion matrix as a figure (rows: true class, columns: predicted). Colour: the fraction
    of the true class. ``factors`` (head -> value names, in label order, last varying fastest;
    e.g. :func:`pipeline.data.lines_labels.class_factors`) labels a large matrix by variation."""
    cm = _array(cm)
    k = cm.shape[0]
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix must be square, got {cm.shape}")
    names = [str(c) for c in class_names]
    if len(names) != k:
        raise ValueError(f"{k} classes but {len(names)} class names")
    if factors is not None and (len(factors) < 2 or math.prod(len(v) for v in factors.values()) != k):
        factors = None
    rows = cm.sum(axis=1, keepdims=True).astype(np.float64)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)

    longest = max(map(len, names), default=1)
    if factors is not None and k > 24:
        side, margin = 11.0, 1.6
    else:
        side = float(np.clip(1.5 + 0.6 * k, 4.5, 16.0))
        margin = min(0.3 + longest * _CHAR_W * 9.0 / 72.0, 3.2)  # room for the tick labels
    fig = Figure(figsize=(side + margin + 1.4, side + margin + 0.6), layout="constrained", dpi=_DPI)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    cell_pt = side * 72.0 * 0.92 / k

    if factors is not None and k > 24:
        ticks, tick_labels, blocks, note = _factor_ticks(factors)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_ticks(ticks, tick_labels, fontsize=MIN_FONT_PT)
        ax.tick_params(axis="x", labelrotation=90, length=2)
        ax.tick_params(axis="y", length=2)
        for lo, hi, label in blocks:
            if lo > 0:
                ax.axhline(lo - 0.5, color="0.35", linewidth=0.9)
                ax.axvline(lo - 0.5, color="0.35", linewidth=0.9)
            mid = (lo + hi - 1) / 2
            ax.annotate(label, xy=(0, mid), xycoords=ax.get_yaxis_transform(), xytext=(-34, 0),
                        textcoords="offset points", rotation=90, ha="center", va="center", fontsize=10,
                        fontweight="bold")
            ax.annotate(label, xy=(mid, 0), xycoords=ax.get_xaxis_transform(), xytext=(0, -34),
                        textcoords="offset points", ha="center", va="top", fontsize=10, fontweight="bold")
        ax.set_xlabel(f"predicted class ({note})", fontsize=10, labelpad=28)
        ax.set_ylabel("true class", fontsize=10, labelpad=18)
    else:
        tick_fs = max(MIN_FONT_PT, min(10.0, cell_pt * 0.8))
        step = max(1, math.ceil(1.3 * tick_fs / cell_pt))  # every step-th label when the cells are small
        ticks = np.arange(0, k, step)
        ax.set_xticks(ticks, [names[i] for i in ticks], fontsize=tick_fs)
        ax.set_yticks(ticks, [names[i] for i in ticks], fontsize=tick_fs)
        if longest * _CHAR_W * tick_fs > cell_pt * step * 0.9:
            ax.tick_params(axis="x", labelrotation=90)
        ax.set_xlabel("predicted class", fontsize=10)
        ax.set_ylabel("true class", fontsize=10)

    mode, cell_fs = cell_text_mode(cm, cell_pt)
    if mode != "none":
        for i in range(k):
            for j in range(k):
                text = str(int(cm[i, j])) if mode == "counts" else f"{100 * norm[i, j]:.0f}"
                colour = "white" if norm[i, j] > 0.5 else ("0.6" if cm[i, j] == 0 else "black")
                ax.text(j, i, text, ha="center", va="center", fontsize=cell_fs, color=colour)
    total = int(cm.sum())
    acc = np.trace(cm) / total if total else float("nan")
    ax.set_title(f"{title}: test accuracy {acc:.2%} (n={total:,})", fontsize=11)
    cb = fig.colorbar(im, ax=ax, shrink=0.6 if side > 8 else 0.8)
    cb.ax.tick_params(labelsize=MIN_FONT_PT + 1)
    what = {"counts": "cell text: number of images", "percent": "cell text: % of the true class",
            "none": "no cell text (cells too small)"}[mode]
    cb.set_label(f"fraction of the true class ({what})", fontsize=9)
    return fig


def plot_confusion_matrix(cm, class_names: Sequence[str], path, title: str,
                          factors: Mapping[str, Sequence[str]] | None = None) -> Path:
    """Write :func:`confusion_figure` to ``path`` (``render.format``; the suffix is the format's) and
    return the file the report shows."""
    fig = confusion_figure(cm, class_names, title, factors)
    try:
        return save_figure(fig, path, dpi=_DPI, facecolor="white")  # render.format / render.dpi
    finally:
        fig.clear()


def write_confusion_csv(cm, class_names: Sequence[str], path) -> Path:
    """CSV: header ``true\\predicted, <class names...>``, then one row per true class."""
    cm = _array(cm)
    names = [str(c) for c in class_names]
    if cm.shape != (len(names), len(names)):
        raise ValueError(f"confusion matrix {cm.shape} does not match {len(names)} class names")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["true\\predicted", *names])
        for name, row in zip(names, cm):
            w.writerow([name, *(int(v) for v in row)])
    return path
