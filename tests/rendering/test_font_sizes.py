"""Every figure the pipeline renders is readable at its default size: no text below 8 pt.

Each renderer is called with small real inputs; ``Figure.savefig`` is wrapped so that, just before
a figure is written, every visible Text artist in it (titles, labels, tick labels, legends, colour
bars, tile labels, cell annotations) is measured."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest
from matplotlib.text import Text

from pipeline.evaluation.probe import FactorResult
from pipeline.rendering.style import MIN_FONT_PT

RNG = np.random.default_rng(0)


@pytest.fixture
def fonts(monkeypatch):
    """{file name: [(font size, text), ...]} of every figure saved while the test runs."""
    seen: dict[str, list[tuple[float, str]]] = {}
    real = matplotlib.figure.Figure.savefig

    def spy(self, fname, *args, **kwargs):
        self.draw_without_rendering()
        texts = [t for t in self.findobj(Text)
                 if t.get_visible() and t.get_text().strip() and (t.axes is None or t.axes.get_visible())]
        name = re.sub(r"\.partial-[^/]*$", "", Path(fname).name)  # written beside its name, then renamed
        seen.setdefault(name, []).extend((float(t.get_fontsize()), t.get_text()) for t in texts)
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    return seen


def _assert_readable(seen, expected):
    assert set(expected) <= set(seen), f"not rendered: {set(expected) - set(seen)}"
    small = {name: sorted({(s, t) for s, t in texts if s < MIN_FONT_PT})[:5] for name, texts in seen.items()}
    assert not {k: v for k, v in small.items() if v}, f"text below {MIN_FONT_PT} pt: {small}"


def _image(c=3, s=28):
    img = np.zeros((c, s, s), np.float32)
    img[:, 10:13, 4:24] = 1.0
    return img


def test_activation_and_gradcam_figures(tmp_path, fonts):
    from pipeline.rendering.figures import (render_activation_figure, render_filter_grid, render_gradcam_figure,
                                            render_gradcam_sheet)

    render_activation_figure(_image(), RNG.random((16, 28, 28)), tmp_path / "act16.png", "features.conv1, image 0")
    render_activation_figure(_image(), RNG.standard_normal((64, 14, 14)), tmp_path / "act64.png", "features.conv3")
    render_activation_figure(_image(), RNG.standard_normal((256, 7, 7)), tmp_path / "act256.png", "a wide layer")
    render_activation_figure(_image(1), RNG.random(128), tmp_path / "dense.png", "classifier.fc1")
    render_gradcam_figure(_image(), RNG.random((28, 28)), RNG.random((7, 7)), tmp_path / "cam.png",
                          "angle: 120\N{DEGREE SIGN} (p=0.97), true long thin 120\N{DEGREE SIGN} red")
    titles = [f"angle: {a}\N{DEGREE SIGN} (p=0.9{i})\ntrue long thick {a}\N{DEGREE SIGN} blue"
              for i, a in enumerate(range(0, 90, 15))]
    render_gradcam_sheet(np.stack([_image()] * 6), RNG.random((6, 28, 28)), titles, tmp_path / "sheet.png")
    render_filter_grid(RNG.random((25, 3, 28, 28)), RNG.random(25), np.arange(25), tmp_path / "filters.png", "conv1")
    _assert_readable(fonts, ["act16.png", "act64.png", "act256.png", "dense.png", "cam.png", "sheet.png", "filters.png"])


def test_feature_visualization_figures(tmp_path, fonts):
    from pipeline.rendering.feature_figures import render_feature_grid, render_kernel_grid

    render_feature_grid(RNG.random((12, 3, 28, 28)), RNG.random(12), np.arange(12), tmp_path / "classes.png",
                        "heads.angle: class pictures", legend="#rank, class, objective, p = probability",
                        names=[f"{a}\N{DEGREE SIGN}" for a in range(0, 180, 15)], probs=RNG.random(12))
    render_feature_grid(RNG.random((64, 3, 14, 14)), RNG.random(64), np.arange(64), tmp_path / "units.png",
                        "features.conv3: channel objective", legend="#rank, unit, objective")
    render_kernel_grid(RNG.standard_normal((16, 3, 3, 3)), tmp_path / "kernels.png", "features.conv1 kernels")
    render_kernel_grid(RNG.standard_normal((32, 1, 7, 7)), tmp_path / "kernels_grey.png", "conv1 kernels (grey)")
    _assert_readable(fonts, ["classes.png", "units.png", "kernels.png", "kernels_grey.png"])


def test_evaluation_and_probe_figures(tmp_path, fonts):
    from pipeline.rendering.evaluation_plots import plot_cascade, plot_curves, plot_scores
    from pipeline.rendering.probe_plots import plot_probe

    methods = ["gradcam", "gradcam++", "scorecam", "layercam", "hirescam", "saliency", "smoothgrad",
               "integrated_gradients", "guided_gradcam"]
    rows = [{"method": m, "head": h, "pointing_game": RNG.random(), "energy_in_mask": RNG.random()}
            for m in methods for h in ("length", "width", "angle", "colour")]
    plot_scores(rows, "pointing_game", tmp_path / "pointing_game.png", "Pointing game (peak on the line)")
    plot_scores(rows, "energy_in_mask", tmp_path / "energy.png", "Share of the map's mass on the line", chance=0.04)
    plot_curves({m: RNG.random((8, 21)) for m in methods + ["random"]}, tmp_path / "deletion.png", "deletion, angle")
    steps = ["heads.angle.out", "heads.angle.fc1", "features.conv3", "features.conv2", "features.conv1"]
    plot_cascade(_image(), {m: [RNG.random((28, 28)) for _ in steps] for m in methods[:4]}, steps,
                 tmp_path / "cascade.png", "randomization cascade, head angle (top layer first)")
    heads = {"length": 2, "width": 2, "angle": 12, "colour": 2, "aggregate": 0}
    results = [FactorResult("baseline", [np.nan], ["as drawn"], {h: np.array([0.99]) for h in heads}, 40)]
    for factor, names in (("brightness", ["x1", "x0.85", "x0.7"]), ("blur", ["0", "0.5", "1"]),
                          ("centre", ["as drawn", "corner"])):
        results.append(FactorResult(factor, list(range(len(names))), names,
                                    {h: RNG.uniform(0.4, 1.0, len(names)) for h in heads}, 40))
    plot_probe(results, tmp_path / "probe.png", "multihead on lines: accuracy when one factor changes (40 images)")
    _assert_readable(fonts, ["pointing_game.png", "energy.png", "deletion.png", "cascade.png", "probe.png"])


def test_training_figures(tmp_path, fonts):
    from pipeline.data.lines_labels import class_factors, class_names, head_class_names
    from pipeline.rendering.confusion_plots import plot_confusion_matrix
    from pipeline.rendering.training_plots import plot_learning_curves

    heads = ("angle", "colour", "length", "width")
    cols = ["epoch", "step", "train/loss_step", "train/loss_epoch", "train/acc", "val/acc", "val/loss", "test/acc",
            "val/f1_aggregate"] + [f"{s}/acc_{h}" for s in ("train", "val", "test") for h in heads] + \
           [f"val/f1_{h}" for h in heads]
    rows = []
    for e in range(2):
        rows.append({"epoch": e, "step": 3 * e + 1, "train/loss_step": 1.0 / (e + 1)})
        rows.append({"epoch": e, "step": 3 * e + 2, "train/loss_epoch": 1.0 / (e + 1), "train/acc": 0.5 + e / 4,
                     **{f"train/acc_{h}": 0.6 for h in heads}})
        rows.append({"epoch": e, "step": 3 * e + 2, "val/acc": 0.55, "val/loss": 0.9, "val/f1_aggregate": 0.5,
                     **{f"val/acc_{h}": 0.7 for h in heads}, **{f"val/f1_{h}": 0.6 for h in heads}})
    rows.append({"epoch": 2, "step": 7, "test/acc": 0.6, **{f"test/acc_{h}": 0.8 for h in heads}})
    with open(tmp_path / "metrics.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, restval="")
        w.writeheader()
        w.writerows(rows)
    plot_learning_curves(tmp_path / "metrics.csv", tmp_path)
    for head, k, count in (("length", 2, 19_000), ("angle", 12, 3_200), ("aggregate", 96, 400), ("class", 10, 1_000)):
        names = head_class_names(head, k, class_names()) if head != "class" else [str(i) for i in range(10)]
        cm = RNG.integers(0, 3, (k, k)) + np.eye(k, dtype=int) * count
        plot_confusion_matrix(cm, names, tmp_path / f"cm_{head}.png", f"m on d, {head}", factors=class_factors(names))
    _assert_readable(fonts, ["loss.png", "accuracy.png", "f1.png", "cm_length.png", "cm_angle.png",
                             "cm_aggregate.png", "cm_class.png"])
