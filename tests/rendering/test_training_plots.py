"""Tests of pipeline.rendering.training_plots: Lightning's sparse metrics.csv, confusion outputs."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from pipeline.rendering import training_plots
from pipeline.rendering.training_plots import (
    plot_confusion_matrix,
    plot_learning_curves,
    read_metrics_csv,
    write_confusion_csv,
)


def _write_metrics(path, columns, rows):
    # CSVLogger writes every column in every row, empty where the row has no value
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, restval="")
        w.writeheader()
        w.writerows(rows)
    return path


def _lightning_rows(step_and_epoch: bool, heads=()):
    rows, step = [], 0
    for e in range(3):
        for _ in range(4):
            step += 1
            if step_and_epoch:
                rows.append({"epoch": e, "step": step, "train/loss_step": 2.0 / step, "train/acc_step": 1 - 1 / (step + 1)})
        val = {"epoch": e, "step": step, "val/loss": 1.0 / (e + 1), "val/acc": 0.5 + 0.1 * e}
        for i, h in enumerate(heads):
            val[f"val/acc_{h}"] = 0.6 + 0.1 * e + 0.01 * i
        rows.append(val)
        suffix = "_epoch" if step_and_epoch else ""
        rows.append({"epoch": e, "step": step, f"train/loss{suffix}": 1.5 / (e + 1), f"train/acc{suffix}": 0.4 + 0.1 * e})
    return rows


def test_sparse_csv_parsing(tmp_path):
    cols = ["epoch", "step", "train/acc_epoch", "train/acc_step", "train/loss_epoch", "train/loss_step", "val/acc", "val/loss"]
    path = _write_metrics(tmp_path / "metrics.csv", cols, _lightning_rows(True))
    data = read_metrics_csv(path)
    assert len(data["train/loss_step"]) == 12
    assert data["val/loss"] == [(0.0, 4.0, 1.0), (1.0, 8.0, 0.5), (2.0, 12.0, pytest.approx(1 / 3))]
    series = training_plots._collect(data)
    assert len(series["train/loss"].epoch) == 3 and len(series["train/loss"].step) == 12
    x, y = training_plots._epoch_xy(series["train/loss"].epoch)
    np.testing.assert_allclose(x, [1, 2, 3])  # drawn at each epoch's end
    np.testing.assert_allclose(y, [1.5, 0.75, 0.5])
    bounds = training_plots._epoch_bounds(data)
    xs, _ = training_plots._step_xy(series["train/loss"].step, bounds)
    assert xs[0] > 0 and xs[-1] == pytest.approx(3.0) and np.all(np.diff(xs) > 0)


@pytest.mark.parametrize("step_and_epoch", [True, False])
def test_learning_curves_written(tmp_path, step_and_epoch):
    heads = ("angle", "colour", "length", "width")
    cols = ["epoch", "step", "train/acc", "train/acc_epoch", "train/acc_step", "train/loss", "train/loss_epoch",
            "train/loss_step", "val/acc", "val/loss"] + [f"val/acc_{h}" for h in heads]
    path = _write_metrics(tmp_path / "metrics.csv", cols, _lightning_rows(step_and_epoch, heads))
    out = plot_learning_curves(path, tmp_path / "plots")
    assert [p.name for p in out] == ["loss.png", "accuracy.png"]
    for p in out:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 400


def test_learning_curves_plain_per_step_loss_only(tmp_path, monkeypatch):
    """train/loss logged on_step only (plain name, several values per epoch): step curve + epoch means."""
    rows, step = [], 0
    for e in range(2):
        for _ in range(5):
            step += 1
            rows.append({"epoch": e, "step": step, "train/loss": float(step)})
    path = _write_metrics(tmp_path / "metrics.csv", ["epoch", "step", "train/loss"], rows)
    drawn = []
    real = training_plots._draw_metric

    def spy(ax, s, bounds, label, *a, **k):
        drawn.append((label, len(s.epoch), len(s.step)))
        return real(ax, s, bounds, label, *a, **k)

    monkeypatch.setattr(training_plots, "_draw_metric", spy)
    out = plot_learning_curves(path, tmp_path)
    assert [p.name for p in out] == ["loss.png"]  # no accuracy columns -> no accuracy.png
    assert drawn == [("train/loss", 0, 10)]
    x, y = training_plots._epoch_mean_xy(training_plots._collect(read_metrics_csv(path))["train/loss"].step)
    np.testing.assert_allclose(y, [3.0, 8.0])


def test_confusion_csv_content(tmp_path):
    cm = np.array([[5, 1, 0], [0, 7, 2], [3, 0, 9]])
    out = write_confusion_csv(cm, ["a", "b,c", "d"], tmp_path / "cm.csv")
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["true\\predicted", "a", "b,c", "d"]
    assert rows[1:] == [["a", "5", "1", "0"], ["b,c", "0", "7", "2"], ["d", "3", "0", "9"]]
    with pytest.raises(ValueError):
        write_confusion_csv(cm, ["a", "b"], tmp_path / "bad.csv")


@pytest.mark.parametrize("k", [2, 96])
def test_confusion_matrix_png(tmp_path, k):
    rng = np.random.default_rng(k)
    cm = rng.integers(0, 3, (k, k)) + np.eye(k, dtype=int) * 50
    cm[0] = 0  # a class with no test images must not produce NaN
    out = plot_confusion_matrix(cm, [f"c{i}" for i in range(k)], tmp_path / f"cm{k}.png", f"K={k}")
    with Image.open(out) as im:
        assert im.format == "PNG"
        w, h = im.size
    if k == 2:
        assert w < 1200
    else:
        assert w > 1200  # large enough to read 96 labels
