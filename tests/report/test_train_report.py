"""The training report (<run dir>/index.html) and the visualize report show the same training
figures: the learning curves and every confusion matrix, each a link to its file."""
from __future__ import annotations

import json
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
from PIL import Image

from pipeline.data.lines_labels import class_factors, class_names, head_class_names
from pipeline.rendering.confusion_plots import plot_confusion_matrix, write_confusion_csv
from pipeline.report.train_report import training_figures, write_train_report


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.links = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a["src"])
        elif tag == "a":
            self.links.append(a.get("href"))


def _fake_run(run_dir):
    """A training run's folder as train.py leaves it: curves and one confusion matrix per head."""
    from PIL import Image

    (run_dir / "curves").mkdir(parents=True)
    for stem in ("loss", "accuracy", "f1"):
        Image.new("RGB", (700, 500), "white").save(run_dir / "curves" / f"{stem}.png")
    for head, k in (("length", 2), ("angle", 12), ("aggregate", 96)):
        names = head_class_names(head, k, class_names())
        cm = np.eye(k, dtype=int) * 5
        write_confusion_csv(cm, names, run_dir / "confusion" / f"{head}.csv")
        plot_confusion_matrix(cm, names, run_dir / "confusion" / f"{head}.png", f"multihead on lines, {head}",
                              factors=class_factors(names))
    (run_dir / "metrics.csv").write_text(
        "epoch,step,train/loss_step,train/loss_epoch,train/acc,val/loss,val/acc,val/f1_length,test/loss,test/acc\n"
        "0,9,1.0,,,,,,,\n0,9,,0.9,0.4,0.8,0.5,0.6,,\n1,19,0.5,,,,,,,\n1,19,,0.45,0.7,0.4,0.8,0.9,,\n"
        "2,19,,,,,,,0.41,0.82\n")
    (run_dir / "layers.json").write_text(json.dumps([{"name": "features.conv1", "type": "Conv2d",
                                                      "output_shape": [16, 28, 28], "params": 448}]))
    return run_dir


def test_training_figures_lists_curves_then_confusion_matrices(tmp_path):
    run = _fake_run(tmp_path / "run")
    figs = training_figures(run)
    assert [f.path.relative_to(run).as_posix() for f in figs] == [
        "curves/loss.png", "curves/accuracy.png", "curves/f1.png",
        "confusion/angle.png", "confusion/length.png", "confusion/aggregate.png"]
    assert "confusion matrix" in figs[-1].caption and "grouped by variation" in figs[-1].caption


def test_train_report_shows_metrics_curves_and_confusion_matrices(tmp_path):
    run = _fake_run(tmp_path / "run")
    summary = {"best_checkpoint": str(run / "checkpoints" / "best.ckpt"), "epochs": 3, "global_step": 30,
               "best_val_acc": 0.95, "main_head": "aggregate", "cut_short": [],
               "test": {"length": {"accuracy": 0.99, "f1_macro": 0.98}, "aggregate": {"accuracy": 0.9, "f1_macro": 0.89}}}
    out = write_train_report(run, model="multihead", dataset="lines", summary=summary)
    assert out == run / "index.html"
    text = out.read_text()
    assert "best.ckpt" in text and "aggregate (main)" in text and "features.conv1" in text
    p = _Links()
    p.feed(text)
    assert p.imgs == [f.path.relative_to(run).as_posix() for f in training_figures(run)]
    assert all(src in p.links for src in p.imgs)  # each figure is a link to its file


def test_visualize_report_shows_the_same_training_figures(tmp_path):
    from pipeline.visualize_run import _model_section

    run = _fake_run(tmp_path / "run")
    ctx = SimpleNamespace(layer_rows=json.loads((run / "layers.json").read_text()), class_names=class_names(),
                          dataset_name="lines", model_name="multihead", train_metrics=None, train_run_dir=run,
                          ckpt=run / "checkpoints" / "best.ckpt")
    section = _model_section(ctx, tmp_path / "vis" / "training").subsections[0]   # folded: the page opens with the jobs
    assert section.folded and section.title == "Learning curves and confusion matrices"
    # the same figures, drawn again from the run's numbers by this version's code
    assert [f.path.relative_to(tmp_path / "vis" / "training") for f in section.figures] == \
        [f.path.relative_to(run) for f in training_figures(run)]
    assert [f.caption for f in section.figures] == [f.caption for f in training_figures(run)]
    for head in ("length", "angle", "aggregate"):  # the run's matrices were drawn by this version: identical pixels
        redrawn = np.asarray(Image.open(tmp_path / "vis" / "training" / "confusion" / f"{head}.png"))
        assert np.array_equal(redrawn, np.asarray(Image.open(run / "confusion" / f"{head}.png"))), head
    # an older run's blank curve pictures are replaced by curves drawn from its metrics.csv
    assert np.asarray(Image.open(section.figures[0].path).convert("L")).min() < 100


def test_an_older_runs_confusion_csv_with_class_ids_is_redrawn_with_readable_names(tmp_path):
    from pipeline.report.train_report import read_confusion_csv, redrawn_training_figures

    run = tmp_path / "old"
    write_confusion_csv(np.eye(96, dtype=int), class_names(), run / "confusion" / "aggregate.csv")  # ids: 1_0_8_0
    figs = redrawn_training_figures(run, tmp_path / "out", model="m", dataset="lines")
    assert [f.path.name for f in figs] == ["aggregate.png"]
    names, cm = read_confusion_csv(tmp_path / "out" / "confusion" / "aggregate.csv")
    assert names == class_names() and np.array_equal(cm, np.eye(96, dtype=int))
    readable = head_class_names("aggregate", 96, class_names())
    plot_confusion_matrix(np.eye(96, dtype=int), readable, tmp_path / "ref.png", "m on lines, aggregate",
                          factors=class_factors(readable))
    assert np.array_equal(np.asarray(Image.open(figs[0].path)), np.asarray(Image.open(tmp_path / "ref.png")))


def _stamp_as_training_does(run):
    """The figures.json stamps train.py writes beside the figures it drew (pipeline/training/artifacts.py)."""
    from pipeline.rendering.stamps import write_stamp

    write_stamp(run / "curves", [run / "metrics.csv"], ["loss", "accuracy", "f1"])
    heads = ["aggregate", "angle", "length"]
    write_stamp(run / "confusion", [run / "confusion" / f"{h}.csv" for h in heads], heads, title="multihead on lines")


def test_figures_this_version_drew_are_copied_not_drawn_again(tmp_path, monkeypatch):
    import pipeline.rendering.confusion_plots as confusion_plots
    import pipeline.rendering.training_plots as training_plots
    from pipeline.report.train_report import redrawn_training_figures

    run = _fake_run(tmp_path / "run")
    _stamp_as_training_does(run)

    def no_drawing(*args, **kwargs):
        raise AssertionError("drawn again")

    monkeypatch.setattr(training_plots, "plot_learning_curves", no_drawing)
    monkeypatch.setattr(confusion_plots, "plot_confusion_matrix", no_drawing)
    out = tmp_path / "vis" / "training"
    figs = redrawn_training_figures(run, out, model="multihead", dataset="lines")
    assert [f.path.relative_to(out) for f in figs] == [f.path.relative_to(run) for f in training_figures(run)]
    for f in figs:  # the run's own files (its blank curve pictures included)
        assert f.path.read_bytes() == (run / f.path.relative_to(out)).read_bytes()
    assert sorted(p.name for p in (out / "confusion").iterdir()) == sorted(
        f"{h}.{ext}" for h in ("aggregate", "angle", "length") for ext in ("csv", "png"))
    assert not list(out.rglob("figures.json"))


def test_figures_are_drawn_again_when_numbers_title_or_render_settings_differ(tmp_path):
    from pipeline.rendering.output import configure_rendering
    from pipeline.report.train_report import redrawn_training_figures

    run = _fake_run(tmp_path / "run")
    _stamp_as_training_does(run)
    with open(run / "metrics.csv", "a") as fh:   # numbers changed after the curves were drawn
        fh.write("3,29,,0.3,0.9,0.3,0.9,0.95,,\n")
    redrawn_training_figures(run, tmp_path / "a", model="multihead", dataset="lines")
    assert np.asarray(Image.open(tmp_path / "a" / "curves" / "loss.png").convert("L")).min() < 100  # drawn
    assert (tmp_path / "a" / "confusion" / "angle.png").read_bytes() == (run / "confusion" / "angle.png").read_bytes()
    # another title (model or dataset): the matrices are drawn again, with it
    redrawn_training_figures(run, tmp_path / "b", model="cnn_deep", dataset="lines")
    assert (tmp_path / "b" / "confusion" / "angle.png").read_bytes() != (run / "confusion" / "angle.png").read_bytes()
    try:   # another render.format: drawn again in that format
        configure_rendering({"format": "svg"})
        figs = redrawn_training_figures(run, tmp_path / "c", model="multihead", dataset="lines")
    finally:
        configure_rendering(None)
    assert {f.path.suffix for f in figs} == {".svg"}


def test_eval_report_shows_metrics_and_confusion_matrices(tmp_path):
    from pipeline.report.train_report import write_eval_report

    run = tmp_path / "eval"
    (run / "confusion").mkdir(parents=True)
    names = head_class_names("angle", 12, class_names())
    write_confusion_csv(np.eye(12, dtype=int), names, run / "confusion" / "angle.csv")
    plot_confusion_matrix(np.eye(12, dtype=int), names, run / "confusion" / "angle.png", "m on lines_folder, angle")
    out = write_eval_report(run, model="multihead", dataset="lines_folder", checkpoint="/r/best.ckpt", trained_on="lines",
                            test_images=12, test={"angle": {"accuracy": 1.0, "f1_macro": 1.0}}, main_head="angle")
    text = out.read_text()
    assert "Evaluation: multihead on lines_folder" in text and "trained on lines" in text and "/r/best.ckpt" in text
    p = _Links()
    p.feed(text)
    assert p.imgs == ["confusion/angle.png"] and "confusion/angle.png" in p.links


def test_visualize_model_section_puts_the_long_layer_list_after_the_figures(tmp_path):
    from pipeline.visualize_run import _model_section

    run = _fake_run(tmp_path / "run")
    ctx = SimpleNamespace(layer_rows=json.loads((run / "layers.json").read_text()), class_names=class_names(),
                          dataset_name="lines", model_name="multihead", train_run_dir=run,
                          train_metrics={"test_images": 5, "heads": {"angle": {"accuracy": 0.9, "f1_macro": 0.8}}},
                          ckpt=run / "checkpoints" / "best.ckpt")
    (run / "index.html").write_text("the training report")
    section = _model_section(ctx, tmp_path / "vis")
    assert [t.caption for t in section.tables] == ["Test metrics of this checkpoint (from its training run)"]
    assert [(s.title, s.folded) for s in section.subsections] == [
        ("Learning curves and confusion matrices", True), ("Layers", True)]
    assert section.subsections[1].tables[0].rows[0][0] == "features.conv1"
    assert section.links == [("the training run's own report", str(run / "index.html"))]  # linked, not repeated
