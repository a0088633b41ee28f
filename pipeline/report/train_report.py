"""The training run's report, ``<run dir>/index.html``: the checkpoint and its test metrics, the
learning curves, the confusion matrices and the layers (an eval.py run's report: the same without
curves and layers). :func:`training_figures` lists the
training figures of a run directory; the visualize report shows the same list for the run its
checkpoint came from, so both reports show the same figures."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np

from pipeline.rendering.output import shown_file
from pipeline.report.html import write_report
from pipeline.report.sections import Figure, Section, Table

__all__ = ["curve_figures", "confusion_figures", "training_figures", "redrawn_training_figures", "layers_table",
           "metrics_table", "write_train_report", "write_eval_report"]

_CURVES = (("loss", "learning curve: loss"), ("accuracy", "learning curve: accuracy (a panel per head)"),
           ("f1", "learning curve: macro F1 (a panel per head)"))


def curve_figures(run_dir) -> list[Figure]:
    """``curves/loss``, ``accuracy`` and ``f1`` of a training run, those that exist."""
    out = []
    for stem, caption in _CURVES:
        p = shown_file(Path(run_dir) / "curves" / f"{stem}.png")
        if p is not None:
            out.append(Figure(p, caption))
    return out


def confusion_figures(run_dir) -> list[Figure]:
    """``confusion/<head>`` of a training run: the heads in name order, the 96-class aggregate last."""
    folder = Path(run_dir) / "confusion"
    heads = sorted({p.stem for p in folder.glob("*.csv")}, key=lambda h: (h == "aggregate", h)) if folder.is_dir() else []
    out = []
    for head in heads:
        p = shown_file(folder / f"{head}.png")
        if p is not None:
            what = "all heads together, grouped by variation" if head == "aggregate" else head
            out.append(Figure(p, f"confusion matrix (test set): {what}"))
    return out


def training_figures(run_dir) -> list[Figure]:
    """Every training figure of a run directory: learning curves, then confusion matrices."""
    return curve_figures(run_dir) + confusion_figures(run_dir)


def read_confusion_csv(path) -> tuple[list[str], np.ndarray]:
    """The class names and counts of a ``confusion/<head>.csv`` (header ``true\\predicted, names...``)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0][1:], np.array([[int(v) for v in r[1:]] for r in rows[1:]], dtype=np.int64)


def redrawn_training_figures(train_run_dir, out_dir, *, model: str, dataset: str) -> list[Figure]:
    """A training run's learning curves and confusion matrices drawn again from its numbers
    (``metrics.csv``, ``confusion/<head>.csv``) with this version's plotting code, into
    ``out_dir`` (which gets copies of the CSVs): a report on a run trained by an older version
    shows the figures a training run makes today. Figures that this version drew from the same
    numbers and render settings (their ``figures.json`` stamp, :mod:`pipeline.rendering.stamps`)
    are copied instead: the same files, without the seconds of drawing. Same captions as
    :func:`training_figures`."""
    from pipeline.data.lines_labels import class_factors, readable_name
    from pipeline.rendering.stamps import copy_figures, reusable_figures

    train_run_dir, out_dir = Path(train_run_dir), Path(out_dir)
    if (train_run_dir / "metrics.csv").is_file():
        drawn = reusable_figures(train_run_dir / "curves", [train_run_dir / "metrics.csv"])
        if drawn is not None:
            copy_figures(drawn, out_dir / "curves")
        else:
            from pipeline.rendering.training_plots import plot_learning_curves

            plot_learning_curves(train_run_dir / "metrics.csv", out_dir / "curves")
    tables = sorted((train_run_dir / "confusion").glob("*.csv"))
    title = f"{model} on {dataset}"
    drawn = reusable_figures(train_run_dir / "confusion", tables, title) if tables else None
    if drawn is not None:
        copy_figures([*tables, *drawn], out_dir / "confusion")
        return training_figures(out_dir)
    for table in tables:
        from pipeline.rendering.confusion_plots import plot_confusion_matrix

        names, cm = read_confusion_csv(table)
        names = [readable_name(n) for n in names]
        (out_dir / "confusion").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(table, out_dir / "confusion" / table.name)
        plot_confusion_matrix(cm, names, out_dir / "confusion" / f"{table.stem}.png",
                              f"{title}, {table.stem}", factors=class_factors(names))
    return training_figures(out_dir)


def layers_table(rows) -> Table:
    """The model's layers (``layers.json`` rows) as a report table."""
    return Table("Layers (use these names with visualize.py layer=...)", ["layer", "type", "output shape", "parameters"],
                 [[r["name"], r["type"], "x".join(map(str, r.get("output_shape") or [])), r.get("params")] for r in rows])


def metrics_table(test: dict, main_head: str | None = None,
                  caption: str = "Test metrics of the best checkpoint") -> Table:
    """Accuracy and macro F1 per head (``test_metrics.json``'s ``heads``) as a report table."""
    rows = [[h + (" (main)" if h == main_head else ""), m.get("accuracy"), m.get("f1_macro")] for h, m in test.items()]
    return Table(caption, ["head", "accuracy", "macro F1"], rows)


def _results_report(run_dir: Path, title: str, paragraphs: list[str], test: dict, main_head: str | None) -> Path:
    """Result (paragraphs, test metrics), learning curves, confusion matrices, layers: those the
    run directory has."""
    tables = [metrics_table(test, main_head)] if test else []
    sections = [Section("Result", paragraphs=paragraphs, tables=tables)]
    curves = curve_figures(run_dir)
    if curves:
        sections.append(Section("Learning curves", paragraphs=[
            "Values at the end of each epoch; the stars are the test values of the best checkpoint, "
            "drawn at the last epoch."], figures=curves))
    cms = confusion_figures(run_dir)
    if cms:
        for fig in cms:  # the 96-class matrix of all heads together: opened on demand
            fig.folded = Path(fig.path).stem == "aggregate" and len(cms) > 1
        sections.append(Section("Confusion matrices", paragraphs=[
            "Rows: true class, columns: predicted; colour: the fraction of the true class."], figures=cms))
    layers = run_dir / "layers.json"
    if layers.is_file():
        rows = json.loads(layers.read_text())
        sections.append(Section("Layers", tables=[layers_table(rows)], folded=True,
                                note=f"{len(rows)} layers, folded: click to open"))
    return write_report(run_dir / "index.html", title, sections, subtitle=str(run_dir))


def write_train_report(run_dir, *, model: str, dataset: str, summary: dict) -> Path:
    """Write ``<run dir>/index.html`` from the files the run wrote and its ``summary`` (train.py's:
    best_checkpoint, epochs, global_step, test, main_head, best_val_acc, cut_short)."""
    paragraphs = [f"Checkpoint: {summary.get('best_checkpoint') or 'none kept'} (best by validation accuracy"
                  + (f", {summary['best_val_acc']:.4f}" if summary.get("best_val_acc") is not None else "") + ").",
                  f"Epochs: {summary.get('epochs', '?')}; steps: {summary.get('global_step', '?')}."]
    if summary.get("cut_short"):
        paragraphs.append("CUT SHORT: " + "; ".join(summary["cut_short"])
                          + ". visualize.py's checkpoint search skips this run.")
    return _results_report(Path(run_dir), f"Training: {model} on {dataset}", paragraphs,
                           summary.get("test") or {}, summary.get("main_head"))


def write_eval_report(run_dir, *, model: str, dataset: str, checkpoint, trained_on: str | None, test_images: int,
                      test: dict, main_head: str | None) -> Path:
    """Write an eval.py run's ``<run dir>/index.html``: the checkpoint, the test metrics and the
    confusion matrices on ``dataset``."""
    paragraphs = [f"Checkpoint: {checkpoint} ({model}, trained on {trained_on or 'unknown'}).",
                  f"Tested on {dataset}: {test_images} images."]
    return _results_report(Path(run_dir), f"Evaluation: {model} on {dataset}", paragraphs, test, main_head)
