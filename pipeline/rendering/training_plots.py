"""Training figures: learning curves from Lightning's ``metrics.csv``, confusion matrices.

``metrics.csv`` (CSVLogger) has one column per logged name plus ``epoch`` and ``step``; rows
are sparse (a validation row holds only the val metrics). A metric logged with both
``on_step`` and ``on_epoch`` appears as ``<name>_step`` and ``<name>_epoch``; one logged with
only one of them keeps its plain name. Both spellings are handled: epoch-level values are
drawn against the epoch, step-level values against a fractional epoch.
"""
from __future__ import annotations

import csv
import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pipeline.leftovers import partial_path  # noqa: E402

__all__ = ["read_metrics_csv", "plot_learning_curves", "plot_confusion_matrix", "write_confusion_csv"]

_SUFFIX = re.compile(r"_(epoch|step)$")


# --------------------------------------------------------------------------- metrics.csv
def _float(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def read_metrics_csv(path) -> dict[str, list[tuple[float, float, float]]]:
    """Column -> [(epoch, step, value)] for every non-empty cell (rows without an epoch skipped)."""
    out: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            epoch = _float(row.get("epoch"))
            if epoch is None:
                continue
            step = _float(row.get("step"))
            step = math.nan if step is None else step
            for key, text in row.items():
                if key in ("epoch", "step") or key is None:
                    continue
                value = _float(text)
                if value is not None:
                    out[key].append((epoch, step, value))
    return dict(out)


class _Series:
    """Epoch-level and step-level points of one metric (base name, suffixes merged)."""

    def __init__(self) -> None:
        self.epoch: list[tuple[float, float, float]] = []
        self.step: list[tuple[float, float, float]] = []


def _collect(columns: dict[str, list[tuple[float, float, float]]]) -> dict[str, _Series]:
    series: dict[str, _Series] = defaultdict(_Series)
    for col, points in columns.items():
        m = _SUFFIX.search(col)
        base = _SUFFIX.sub("", col)
        if m and m.group(1) == "epoch":
            series[base].epoch = points
        elif m and m.group(1) == "step":
            series[base].step = points
        else:
            epochs = [p[0] for p in points]
            if len(set(epochs)) < len(epochs):  # several values per epoch: per-step logging
                if not series[base].step:
                    series[base].step = points
            elif not series[base].epoch:
                series[base].epoch = points
    return dict(series)


def _epoch_bounds(columns) -> dict[float, tuple[float, float]]:
    """epoch -> (first step, last step) over every cell of the file."""
    lo: dict[float, float] = {}
    hi: dict[float, float] = {}
    for points in columns.values():
        for e, s, _ in points:
            if math.isnan(s):
                continue
            lo[e] = min(lo.get(e, s), s)
            hi[e] = max(hi.get(e, s), s)
    return {e: (lo[e], hi[e]) for e in lo}


def _step_xy(points, bounds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for e, s, v in points:
        lo, hi = bounds.get(e, (s, s))
        frac = 1.0 if math.isnan(s) or hi <= lo else (s - lo + 1) / (hi - lo + 1)
        xs.append(e + frac)
        ys.append(v)
    order = np.argsort(xs, kind="stable")
    return np.asarray(xs)[order], np.asarray(ys)[order]


def _epoch_xy(points) -> tuple[np.ndarray, np.ndarray]:
    """One value per epoch (the last logged); x is the epoch's end (epoch + 1)."""
    last: dict[float, float] = {}
    for e, _, v in points:
        last[e] = v
    xs = np.asarray(sorted(last))
    return xs + 1.0, np.asarray([last[e] for e in sorted(last)])


def _epoch_mean_xy(points) -> tuple[np.ndarray, np.ndarray]:
    acc: dict[float, list[float]] = defaultdict(list)
    for e, _, v in points:
        acc[e].append(v)
    xs = np.asarray(sorted(acc))
    return xs + 1.0, np.asarray([float(np.mean(acc[e])) for e in sorted(acc)])


def _draw_metric(ax, s: _Series, bounds, label: str, color, style: str = "-", marker: str = "o",
                 show_steps: bool = True) -> bool:
    drew = False
    if s.step and show_steps:
        x, y = _step_xy(s.step, bounds)
        ax.plot(x, y, color=color, alpha=0.3, linewidth=0.8, label=f"{label} (per step)")
        drew = True
    if s.epoch:
        x, y = _epoch_xy(s.epoch)
    elif s.step:
        x, y = _epoch_mean_xy(s.step)
        label = f"{label} (epoch mean)"
    else:
        return drew
    ax.plot(x, y, style, color=color, marker=marker if len(x) <= 60 else None, markersize=3.5,
            linewidth=1.6, label=label)
    return True


def _finish(ax, fig, ylabel: str, title: str, path: Path) -> Path:
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` (creating its folder), then clear the figure even on error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=110, facecolor="white")
    finally:
        fig.clear()
    return path


def plot_learning_curves(metrics_csv, out_dir) -> list[Path]:
    """Write ``loss.png`` and ``accuracy.png`` (each only if its metrics exist) into ``out_dir``.

    Epoch values are drawn at the end of their epoch (x = epoch + 1, the number of epochs
    completed); per-step values, when logged, are drawn faintly at fractional epochs.
    Per-head validation accuracies (``val/acc_<head>``) and any ``val/f1*`` scores go into
    ``accuracy.png`` as dashed lines; ``test/*`` values appear as single stars.
    """
    columns = read_metrics_csv(metrics_csv)
    series = _collect(columns)
    bounds = _epoch_bounds(columns)
    out_dir = Path(out_dir)
    written: list[Path] = []

    # loss
    loss_keys = [k for k in ("train/loss", "val/loss") if k in series]
    if loss_keys:
        fig = Figure(figsize=(7.0, 4.5), layout="constrained")
        ax = fig.add_subplot()
        colors = {"train/loss": "tab:blue", "val/loss": "tab:orange"}
        for k in loss_keys:
            _draw_metric(ax, series[k], bounds, k, colors[k])
        _test_markers(ax, series, ["test/loss"])
        if all(v > 0 for k in loss_keys for pts in (series[k].epoch, series[k].step) for _, _, v in pts):
            ys = [v for k in loss_keys for pts in (series[k].epoch, series[k].step) for _, _, v in pts]
            if ys and max(ys) / max(min(ys), 1e-12) > 50:
                ax.set_yscale("log")
        written.append(_finish(ax, fig, "loss", "Loss", out_dir / "loss.png"))

    # accuracy
    acc_keys = [k for k in ("train/acc", "val/acc") if k in series]
    head_keys = sorted(k for k in series if re.fullmatch(r"val/acc_.+", k))
    f1_keys = sorted(k for k in series if k.startswith("val/f1"))
    if acc_keys or head_keys:
        fig = Figure(figsize=(7.0, 4.5), layout="constrained")
        ax = fig.add_subplot()
        colors = {"train/acc": "tab:blue", "val/acc": "tab:orange"}
        for k in acc_keys:
            _draw_metric(ax, series[k], bounds, k, colors[k])
        palette = ["tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
        for i, k in enumerate(head_keys + f1_keys):
            _draw_metric(ax, series[k], bounds, k, palette[i % len(palette)],
                         style="--" if k in head_keys else ":", marker=".", show_steps=False)
        _test_markers(ax, series, [k for k in series if re.fullmatch(r"test/acc(_.+)?", k)])
        written.append(_finish(ax, fig, "accuracy", "Accuracy", out_dir / "accuracy.png"))
    return written


def _test_markers(ax, series: dict[str, _Series], keys) -> None:
    for k in keys:
        if k not in series:
            continue
        pts = series[k].epoch or series[k].step
        if not pts:
            continue
        e, _, v = pts[-1]
        ax.plot([e + 1.0], [v], marker="*", markersize=10, linestyle="none", color="black",
                label=f"{k} = {v:.4g}")


# --------------------------------------------------------------------------- confusion matrices
def plot_confusion_matrix(cm, class_names: Sequence[str], path, title: str) -> Path:
    """Row-normalized confusion matrix (rows: true class, columns: predicted).

    Colours are the fraction of each true class; for K <= 20 each cell also shows its count.
    Scales from K=2 to K=96 (small tick labels, no cell text for large K).
    """
    cm = np.asarray(cm.detach().cpu().numpy() if hasattr(cm, "detach") else cm)
    k = cm.shape[0]
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix must be square, got {cm.shape}")
    names = [str(c) for c in class_names]
    if len(names) != k:
        raise ValueError(f"{k} classes but {len(names)} class names")
    rows = cm.sum(axis=1, keepdims=True).astype(np.float64)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)

    side = float(np.clip(2.5 + 0.16 * k, 4.5, 18.0))
    fig = Figure(figsize=(side + 1.2, side + 0.4), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    cell_pts = side * 72.0 * 0.85 / k
    tick_fs = float(np.clip(cell_pts * 0.6, 4.0, 9.0))
    longest = max(map(len, names), default=1)
    ax.set_xticks(np.arange(k))
    ax.set_yticks(np.arange(k))
    ax.set_xticklabels(names, fontsize=tick_fs,
                       rotation=90 if longest * tick_fs * 0.62 > cell_pts * 0.95 else 0)
    ax.set_yticklabels(names, fontsize=tick_fs)
    ax.tick_params(length=2 if k > 20 else 3.5)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= 20:
        cell_fs = float(np.clip(120.0 / k, 6.0, 11.0))
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=cell_fs,
                        color="white" if norm[i, j] > 0.5 else "black")
    total = cm.sum()
    acc = np.trace(cm) / total if total else float("nan")
    ax.set_title(f"{title}\n(accuracy {acc:.4f}, n={int(total)}; colour = fraction of the true class)",
                 fontsize=10)
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    cb.ax.tick_params(labelsize=8)
    return _save(fig, Path(path))


def write_confusion_csv(cm, class_names: Sequence[str], path) -> Path:
    """CSV: header ``true\\predicted, <class names...>``, then one row per true class."""
    cm = np.asarray(cm.detach().cpu().numpy() if hasattr(cm, "detach") else cm)
    names = [str(c) for c in class_names]
    if cm.shape != (len(names), len(names)):
        raise ValueError(f"confusion matrix {cm.shape} does not match {len(names)} class names")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["true\\predicted", *names])
        for name, row in zip(names, cm):
            w.writerow([name, *(int(v) for v in row)])
    os.replace(tmp, path)
    return path
