"""The shortcut probe's figure: accuracy against each factor's level, one panel per factor, a
line per head (the aggregate dashed black; heads drawn slightly side by side so that equal values
stay visible), each head's accuracy on the images as drawn dotted, the ``ok`` level grey."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from pipeline.rendering.evaluation_plots import _save

_COLOURS = ["#3b6ea5", "#e07b39", "#3a9a5b", "#8e5ea2", "#c0392b", "#7f7f7f", "#b8a000", "#17becf"]


def plot_probe(results: Sequence, path: Path, title: str, ok: float | None = 0.95) -> Path:
    """``results``: the probe's :class:`~pipeline.evaluation.probe.FactorResult` list, the
    baseline (factor ``baseline``) first. Accuracy in percent."""
    base = next((r for r in results if r.factor == "baseline"), None)
    factors = [r for r in results if r.factor != "baseline"]
    heads = list((factors or results)[0].accuracy)
    cols = min(3, max(len(factors), 1))
    rows = max(1, math.ceil(len(factors) / cols))
    lowest = min([float(np.min(r.accuracy[h])) for r in results for h in heads] + [ok or 1.0])
    y_lo = max(0.0, min(90.0, 10 * math.floor((100 * lowest - 3) / 10)))
    fig = Figure(figsize=(3.6 * cols, 2.9 * rows + 0.7))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    colour = {h: ("black" if h == "aggregate" else _COLOURS[i % len(_COLOURS)]) for i, h in enumerate(heads)}
    for ax, r in zip(axes, factors):
        xs = np.arange(len(r.levels))
        for k, h in enumerate(heads):
            dx = 0.035 * (k - (len(heads) - 1) / 2)  # side by side where heads coincide (e.g. all at 100 %)
            style = dict(color=colour[h], linestyle="--" if h == "aggregate" else "-", marker="o", markersize=4,
                         linewidth=1.6 if h == "aggregate" else 1.3)
            ax.plot(xs + dx, 100 * np.asarray(r.accuracy[h]), label=h, **style)
            if base is not None:
                ax.axhline(100 * float(base.accuracy[h][0]), color=colour[h], linestyle=":", linewidth=0.9, alpha=0.6)
        if ok is not None:
            ax.axhline(100 * ok, color="#999999", linewidth=0.8, alpha=0.8, zorder=0)
        ax.set_xticks(xs, r.level_names, fontsize=8)
        ax.set_xlim(-0.4, len(xs) - 0.6)
        ax.set_ylim(y_lo, 101)
        ax.set_title(r.factor, fontsize=10)
        ax.grid(alpha=0.25)
        ax.tick_params(axis="y", labelsize=8)
    for i, ax in enumerate(axes):
        if i >= len(factors):
            ax.set_visible(False)
        elif i % cols == 0:
            ax.set_ylabel("accuracy (%)", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(heads), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06 if rows == 1 else 0.04, 1, 1))
    return _save(fig, path)
