"""Training figures: learning curves from Lightning's ``metrics.csv`` (the confusion matrices are
in :mod:`pipeline.rendering.confusion_plots`, re-exported here).

``metrics.csv`` (CSVLogger) has one column per logged name plus ``epoch`` and ``step``; rows
are sparse (a validation row holds only the val metrics). A metric logged with both
``on_step`` and ``on_epoch`` appears as ``<name>_step`` and ``<name>_epoch``; one logged with
only one of them keeps its plain name. Both spellings are handled: epoch-level values are
drawn against the epoch, step-level values against a fractional epoch.
"""
from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from pipeline.rendering.output import save_figure  # noqa: E402
from pipeline.rendering.confusion_plots import plot_confusion_matrix, write_confusion_csv  # noqa: E402,F401

__all__ = ["read_metrics_csv", "learning_curve_figures", "plot_learning_curves", "plot_confusion_matrix",
           "write_confusion_csv"]

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


_COLORS = {"train": "tab:blue", "val": "tab:orange"}
_NAMES = {"train": "train", "val": "validation"}
TEST_LABEL = "test (best checkpoint), drawn at the last epoch"
_MAX_MARKERS = 60  # up to this many epochs every epoch value has a marker (one epoch: a dot, not an invisible line)


def _draw_metric(ax, s: _Series, bounds, label: str, color, show_steps: bool = True) -> float | None:
    """Draw one metric: its epoch values (line + markers) and, faintly, its per-step values.
    Returns the x of its last epoch value (None when it has none)."""
    if s.step and show_steps:
        x, y = _step_xy(s.step, bounds)
        ax.plot(x, y, color=color, alpha=0.3, linewidth=0.8, label=f"{label} (per step)")
    if s.epoch:
        x, y = _epoch_xy(s.epoch)
    elif s.step:
        x, y = _epoch_mean_xy(s.step)
        label = f"{label} (epoch mean)"
    else:
        return None
    ax.plot(x, y, "-", color=color, marker="o" if len(x) <= _MAX_MARKERS else None, markersize=4,
            linewidth=1.6, label=label)
    return float(x[-1])


def _test_value(series: dict[str, _Series], key: str) -> float | None:
    s = series.get(key)
    pts = (s.epoch or s.step) if s else None
    return pts[-1][2] if pts else None


def _panel(ax, series, bounds, prefix: str, suffix: str, last_epoch: float, ylabel: str) -> float | None:
    """One panel: ``train/<prefix><suffix>`` and ``val/...`` against the epoch and the test value
    as a star at the last epoch. Returns the test value (None: not logged)."""
    steps = False
    for stage in ("train", "val"):
        key = f"{stage}/{prefix}{suffix}"
        if key in series:
            _draw_metric(ax, series[key], bounds, _NAMES[stage], _COLORS[stage], show_steps=prefix == "loss")
            steps = steps or (prefix == "loss" and bool(series[key].step))
    test = _test_value(series, f"test/{prefix}{suffix}")
    if test is not None:
        ax.plot([last_epoch], [test], marker="*", markersize=13, linestyle="none", color="black",
                markeredgecolor="white", markeredgewidth=0.6, label=TEST_LABEL, zorder=5)
    ax.set_xlabel("epoch", fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)
    ax.set_xlim(0.0 if steps else 0.5, last_epoch + 0.5)  # whole epochs, also after a single one
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    return test


def _legend_below(fig, axes) -> None:
    """One legend for the figure, under the panels (outside every axes: it never covers data)."""
    seen: dict[str, object] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    order = sorted(seen, key=lambda lab: (lab == TEST_LABEL, lab))
    fig.legend([seen[lab] for lab in order], order, loc="outside lower center", ncols=min(len(order), 3),
               fontsize=9, frameon=False)


def _grid(n: int, title: str) -> tuple[Figure, list]:
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.4 * ncols if n > 1 else 7.0, 3.3 * nrows + 1.0 if n > 1 else 4.8),
                 layout="constrained")
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]
    if n > 1:  # one panel: its own title is the figure's (one title, not two)
        fig.suptitle(title, fontsize=12)
    return fig, axes


def _title(ax, name: str, test: float | None, fmt: str) -> None:
    ax.set_title(name + ("" if test is None else f": test {test:{fmt}}"), fontsize=10 if len(ax.figure.axes) > 1 else 12)


def _last_epoch(series: dict[str, _Series]) -> float:
    """x of the last epoch any train/val metric reached (where the test values are drawn)."""
    xs = [_epoch_xy(s.epoch)[0][-1] if s.epoch else _epoch_mean_xy(s.step)[0][-1]
          for k, s in series.items() if k.split("/")[0] in ("train", "val") and (s.epoch or s.step)]
    if xs:
        return float(max(xs))
    tests = [pts[-1][0] for k, s in series.items() if k.startswith("test/") for pts in (s.epoch or s.step,) if pts]
    return float(max(tests, default=0.0))


def _heads(series, prefix: str) -> list[str]:
    """The ``_<head>`` suffixes logged for ``<stage>/<prefix>``, sorted."""
    pat = re.compile(rf"(train|val|test)/{prefix}(_.+)$")
    return sorted({m.group(2) for k in series for m in [pat.fullmatch(k)] if m})


def learning_curve_figures(metrics_csv) -> dict[str, Figure]:
    """The learning-curve figures of a run's ``metrics.csv``, by file stem: ``loss`` (train,
    validation, test), ``accuracy`` (one panel for the main accuracy and one per head of a
    multihead model) and ``f1`` (macro F1, one panel per head: never under an accuracy label);
    each only if its metrics exist. Epoch values are drawn at the end of their epoch (x = epoch
    + 1) with a marker each, per-step values faintly; the test values of the best checkpoint are
    stars at the last epoch; one legend under the panels."""
    columns = read_metrics_csv(metrics_csv)
    series = _collect(columns)
    bounds = _epoch_bounds(columns)
    last = _last_epoch(series)
    figures: dict[str, Figure] = {}

    if any(f"{st}/loss" in series for st in ("train", "val", "test")):
        fig, (ax,) = _grid(1, "Loss")
        _title(ax, "Loss", _panel(ax, series, bounds, "loss", "", last, "loss"), ".4g")
        ys = [v for k in ("train/loss", "val/loss") if k in series
              for pts in (series[k].epoch, series[k].step) for _, _, v in pts]
        if ys and min(ys) > 0 and max(ys) / min(ys) > 50:
            ax.set_yscale("log")
        _legend_below(fig, [ax])
        figures["loss"] = fig

    acc_heads = _heads(series, "acc")
    acc_panels = ([""] if any(f"{st}/acc" in series for st in ("train", "val", "test")) else []) + acc_heads
    if acc_panels:
        fig, axes = _grid(len(acc_panels), "Accuracy" + (" per head" if acc_heads else ""))
        for ax, suffix in zip(axes, acc_panels):
            test = _panel(ax, series, bounds, "acc", suffix, last, "accuracy")
            _title(ax, suffix[1:] if suffix else ("aggregate (all heads right)" if acc_heads else "Accuracy"), test, ".2%")
        _legend_below(fig, axes)
        figures["accuracy"] = fig

    f1_heads = _heads(series, "f1")
    if f1_heads:
        fig, axes = _grid(len(f1_heads), "Macro F1" + (" per head" if len(f1_heads) > 1 else ""))
        for ax, suffix in zip(axes, f1_heads):
            test = _panel(ax, series, bounds, "f1", suffix, last, "macro F1")
            _title(ax, "Macro F1" if len(f1_heads) == 1 else suffix[1:], test, ".3f")
        _legend_below(fig, axes)
        figures["f1"] = fig
    return figures


def _save(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` (creating its folder; the suffix is ``render.format``'s), then clear the
    figure even on error. Returns the file the report shows."""
    try:
        return save_figure(fig, path, dpi=110, facecolor="white")  # render.format / render.dpi
    finally:
        fig.clear()


def plot_learning_curves(metrics_csv, out_dir) -> list[Path]:
    """Write :func:`learning_curve_figures` as ``loss.png``, ``accuracy.png`` and ``f1.png``
    (each only if its metrics exist) into ``out_dir``."""
    out_dir = Path(out_dir)
    return [_save(fig, out_dir / f"{stem}.png") for stem, fig in learning_curve_figures(metrics_csv).items()]
