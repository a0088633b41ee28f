"""Tests of pipeline.rendering.training_plots: Lightning's sparse metrics.csv, confusion outputs."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from pipeline.rendering import training_plots
from pipeline.rendering.training_plots import (
    TEST_LABEL,
    learning_curve_figures,
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
    assert drawn == [("train", 0, 10)]
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


HEADS = ("angle", "colour", "length", "width")


def _multihead_csv(tmp_path, epochs=3):
    """metrics.csv as a multihead run writes it: per-head train/val accuracies, val F1 per head and
    the aggregate, then one test row (epoch = the number of epochs run)."""
    cols = ["epoch", "step", "train/loss_step", "train/loss_epoch", "train/acc", "val/acc", "val/loss", "test/acc",
            "test/loss", "val/f1_aggregate", "test/f1_aggregate"]
    for h in HEADS:
        cols += [f"train/acc_{h}", f"val/acc_{h}", f"test/acc_{h}", f"val/f1_{h}", f"test/f1_{h}"]
    rows, step = [], 0
    for e in range(epochs):
        for _ in range(3):
            step += 1
            rows.append({"epoch": e, "step": step, "train/loss_step": 1.0 / step})
        val = {"epoch": e, "step": step, "val/acc": 0.5 + 0.1 * e, "val/loss": 1.0 / (e + 1), "val/f1_aggregate": 0.45 + 0.1 * e}
        train = {"epoch": e, "step": step, "train/loss_epoch": 1.2 / (e + 1), "train/acc": 0.4 + 0.1 * e}
        for i, h in enumerate(HEADS):
            val[f"val/acc_{h}"] = 0.6 + 0.05 * e + 0.01 * i
            val[f"val/f1_{h}"] = 0.55 + 0.05 * e + 0.01 * i
            train[f"train/acc_{h}"] = 0.5 + 0.05 * e + 0.01 * i
        rows += [val, train]
    test = {"epoch": epochs, "step": step + 1, "test/acc": 0.77, "test/loss": 0.3, "test/f1_aggregate": 0.76}
    for i, h in enumerate(HEADS):
        test[f"test/acc_{h}"] = 0.9 + 0.01 * i
        test[f"test/f1_{h}"] = 0.88 + 0.01 * i
    rows.append(test)
    return _write_metrics(tmp_path / "metrics.csv", cols, rows)


def _line_labels(ax):
    return [line.get_label() for line in ax.get_lines()]


def test_accuracy_has_one_panel_per_head_and_f1_its_own_figure(tmp_path):
    figs = learning_curve_figures(_multihead_csv(tmp_path))
    assert list(figs) == ["loss", "accuracy", "f1"]
    acc_axes = figs["accuracy"].axes
    assert [ax.get_title().split(":")[0] for ax in acc_axes] == ["aggregate (all heads right)", *HEADS]
    assert acc_axes[1].get_title() == "angle: test 90.00%"  # the test value, stated once
    for ax in acc_axes:
        assert ax.get_ylabel() == "accuracy"
        assert set(_line_labels(ax)) == {"train", "validation", TEST_LABEL}
    # F1 is never drawn under an accuracy label: its own figure, one panel per head, labelled F1
    f1_axes = figs["f1"].axes
    assert [ax.get_title().split(":")[0] for ax in f1_axes] == ["aggregate", *HEADS]
    assert all(ax.get_ylabel() == "macro F1" for ax in f1_axes)
    assert "F1" in figs["f1"]._suptitle.get_text() and "F1" not in figs["accuracy"]._suptitle.get_text()
    np.testing.assert_allclose(f1_axes[1].get_lines()[0].get_ydata(), [0.55, 0.60, 0.65])  # val/f1_angle


def test_test_values_are_stars_at_the_last_epoch_and_in_the_legend(tmp_path):
    figs = learning_curve_figures(_multihead_csv(tmp_path, epochs=3))
    for fig, expect in ((figs["accuracy"], [0.77, 0.90, 0.91, 0.92, 0.93]), (figs["loss"], [0.3])):
        stars = [next(ln for ln in ax.get_lines() if ln.get_label() == TEST_LABEL) for ax in fig.axes]
        assert all(s.get_marker() == "*" for s in stars)
        np.testing.assert_allclose([s.get_xdata()[0] for s in stars], 3.0)  # the end of the 3rd epoch, not 4
        np.testing.assert_allclose([s.get_ydata()[0] for s in stars], expect)
        assert TEST_LABEL in [t.get_text() for t in fig.legends[0].get_texts()]


@pytest.mark.parametrize("epochs", [1, 4])
def test_legends_never_cover_data(tmp_path, epochs):
    for name, fig in learning_curve_figures(_multihead_csv(tmp_path, epochs)).items():
        fig.draw_without_rendering()
        assert all(ax.get_legend() is None for ax in fig.axes), name  # no legend inside a panel
        (legend,) = fig.legends
        lb = legend.get_window_extent()
        for ax in fig.axes:
            assert not lb.overlaps(ax.get_window_extent()), name


def test_one_epoch_is_readable(tmp_path):
    """After one epoch every curve is one point: it must be a visible marker, not an empty line."""
    figs = learning_curve_figures(_multihead_csv(tmp_path, epochs=1))
    for fig in figs.values():
        for ax in fig.axes:
            for line in ax.get_lines():
                if line.get_label() in ("train", "validation"):
                    assert len(line.get_xdata()) == 1
                    assert line.get_marker() == "o" and line.get_markersize() >= 4


def _cells_and_texts(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return fig.axes[0], canvas.get_renderer()


@pytest.mark.parametrize("k,count", [(2, 5), (2, 38_400), (12, 3_200), (12, 123_456), (30, 40), (96, 400)])
def test_confusion_cell_text_fits_its_cell(k, count):
    from pipeline.rendering.confusion_plots import confusion_figure

    cm = np.full((k, k), 1) + np.eye(k, dtype=int) * (count - 1)
    fig = confusion_figure(cm, [f"c{i}" for i in range(k)], "m on d, class")
    ax, r = _cells_and_texts(fig)
    texts = [t for t in ax.texts if t.get_text() and t.get_position()[0] == int(t.get_position()[0])]
    if texts:
        assert len(texts) == k * k
    for t in texts:
        x, y = t.get_position()
        (x0, y0), (x1, y1) = ax.transData.transform([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)])
        bb = t.get_window_extent(r)
        assert min(x0, x1) <= bb.x0 and bb.x1 <= max(x0, x1) and min(y0, y1) <= bb.y0 and bb.y1 <= max(y0, y1), t.get_text()
        assert t.get_fontsize() >= 8
    # small matrices with small counts show counts; a 96-class matrix has no room for text
    if k == 2:
        assert [t.get_text() for t in texts][:2] == [str(count), "1"]
    if k == 96:
        assert texts == []


def test_confusion_has_one_title_stating_the_accuracy():
    from pipeline.rendering.confusion_plots import confusion_figure

    fig = confusion_figure(np.array([[3, 1], [0, 4]]), ["short", "long"], "multihead on lines, length")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["multihead on lines, length: test accuracy 87.50% (n=8)"]
    assert fig._suptitle is None
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["short", "long"]


def test_lines_aggregate_matrix_is_labelled_by_variation():
    from pipeline.data.lines_labels import class_factors, class_names, head_class_names
    from pipeline.rendering.confusion_plots import confusion_figure

    names = head_class_names("aggregate", 96, class_names())
    factors = class_factors(names)
    assert factors is not None
    fig = confusion_figure(np.eye(96, dtype=int) * 400, names, "multihead on lines, aggregate", factors)
    ax, r = _cells_and_texts(fig)
    for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        texts = [t.get_text() for t in labels]
        assert texts == [f"{a}\N{DEGREE SIGN}" for a in range(0, 180, 15)] * 4  # angle ticks in 4 blocks
        assert all(t.get_fontsize() >= 8 for t in labels)
        boxes = [t.get_window_extent(r) for t in labels]
        assert not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:]))  # neighbouring ticks do not collide
    blocks = [t.get_text() for t in ax.texts]
    assert blocks.count("long thick") == 2 and blocks.count("short thin") == 2  # one per axis
    assert "red, blue" in ax.get_xlabel()
    w, h = fig.get_size_inches() * fig.dpi
    assert w < 1800 and h < 1800  # readable without zooming into a poster


def test_one_epoch_axis_shows_whole_epochs(tmp_path):
    fig = learning_curve_figures(_multihead_csv(tmp_path, epochs=1))["accuracy"]
    fig.draw_without_rendering()
    for ax in fig.axes:
        assert ax.get_xlim() == (0.5, 1.5)
        assert [t.get_text() for t in ax.get_xticklabels() if 0.5 <= t.get_position()[0] <= 1.5] == ["1"]


def test_a_single_panel_figure_has_one_title(tmp_path):
    """A single-head model: loss, accuracy and F1 each one panel whose title is the figure's, with the test value."""
    cols = ["epoch", "step", "train/loss", "train/acc", "val/acc", "val/loss", "val/f1_class", "test/acc", "test/loss",
            "test/f1_class"]
    rows = [{"epoch": 0, "step": 5, "train/loss": 0.5, "train/acc": 0.8},
            {"epoch": 0, "step": 5, "val/acc": 0.85, "val/loss": 0.4, "val/f1_class": 0.84},
            {"epoch": 1, "step": 6, "test/acc": 0.86, "test/loss": 0.39, "test/f1_class": 0.855}]
    figs = learning_curve_figures(_write_metrics(tmp_path / "metrics.csv", cols, rows))
    titles = {name: [t for t in [fig._suptitle and fig._suptitle.get_text(), *[ax.get_title() for ax in fig.axes]] if t]
              for name, fig in figs.items()}
    assert titles == {"loss": ["Loss: test 0.39"], "accuracy": ["Accuracy: test 86.00%"], "f1": ["Macro F1: test 0.855"]}
