"""What a finished training run leaves in its directory, besides Lightning's checkpoints and
``metrics.csv``: test metrics (JSON), confusion matrices (PNG + CSV, one per head), learning
curves (PNG), the model summary (layer names the visualizer accepts) and the one-screen summary.
"""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from pipeline.leftovers import write_text_atomic
from pipeline.data.lines_labels import class_factors, head_class_names
from pipeline.models.summary import format_layer_table, layer_table


def write_test_results(run_dir: Path, module, *, dataset: str, model_name: str, checkpoint, test_images: int,
                       class_names, extra: dict | None = None) -> dict:
    """``test_metrics.json`` and ``confusion/<head>.png``/``.csv`` from a LitClassifier after
    ``trainer.test`` (its ``test_results`` and ``test_confusion``): written by train.py and eval.py
    alike. ``extra`` adds keys to the JSON. Returns the metrics written."""
    from pipeline.rendering.parallel import render_all
    from pipeline.rendering.stamps import write_stamp
    from pipeline.rendering.training_plots import plot_confusion_matrix, write_confusion_csv

    run_dir = Path(run_dir)
    test = module.test_results
    main = test.get(module.main_head, {})
    metrics = {"dataset": dataset, "model": model_name, "checkpoint": None if checkpoint is None else str(checkpoint),
               "test_images": int(test_images), "accuracy": main.get("accuracy"), "f1_macro": main.get("f1_macro"),
               "heads": test, **(extra or {})}
    cm_dir = run_dir / "confusion"
    cm_dir.mkdir(parents=True, exist_ok=True)
    plots = []
    for head, cm in module.test_confusion.items():
        names = head_class_names(head, cm.shape[0], class_names)
        cm = cm.numpy()
        write_confusion_csv(cm, names, cm_dir / f"{head}.csv")
        plots.append((plot_confusion_matrix, (cm, names, cm_dir / f"{head}.png", f"{model_name} on {dataset}, {head}"),
                      {"factors": class_factors(names)}))
    render_all(plots)  # one worker process per core (render.workers)
    # which code drew them from which numbers: the visualize report copies them instead of drawing them again
    write_stamp(cm_dir, [cm_dir / f"{head}.csv" for head in module.test_confusion], module.test_confusion,
                title=f"{model_name} on {dataset}")
    write_text_atomic(run_dir / "test_metrics.json", json.dumps(metrics, indent=2))  # written last
    return metrics


def set_aside_metrics(run_dir: Path) -> Path | None:
    """Resuming into the run's own directory: Lightning's CSV logger would delete the existing
    ``metrics.csv``, so it is renamed first (``metrics.before_resume.csv``) and joined back by
    :func:`join_metrics` when the run finishes. Returns the renamed file, or None."""
    current = Path(run_dir) / "metrics.csv"
    if not current.is_file():
        return None
    aside = current.with_name("metrics.before_resume.csv")
    k = 1
    while aside.exists():
        k += 1
        aside = current.with_name(f"metrics.before_resume_{k}.csv")
    current.rename(aside)
    return aside


def join_metrics(previous: Path, current: Path) -> None:
    """``current`` becomes the rows of ``previous`` (up to the step the run resumed from) followed
    by its own, columns united; ``previous`` is removed once the joined file is in place."""
    import csv
    import io

    previous, current = Path(previous), Path(current)
    if not current.is_file():
        previous.rename(current)
        return
    with open(previous, newline="") as fh:
        old = list(csv.DictReader(fh))
    with open(current, newline="") as fh:
        new = list(csv.DictReader(fh))
    first_step = min((int(float(r["step"])) for r in new if r.get("step") not in (None, "")), default=None)
    if first_step is not None:
        old = [r for r in old if r.get("step") in (None, "") or int(float(r["step"])) < first_step]
    columns: list[str] = []
    for r in old + new:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns)
    w.writeheader()
    w.writerows(old + new)
    write_text_atomic(current, buf.getvalue())
    previous.unlink()


def write_all(run_dir: Path, cfg: DictConfig, module, datamodule, trainer, summary: dict) -> None:
    from pipeline.rendering.stamps import write_stamp
    from pipeline.rendering.training_plots import plot_learning_curves

    run_dir = Path(run_dir)
    if summary["test"]:
        from pipeline.training.leak_check import leak_metrics

        summary["leak"] = leak_metrics(module, datamodule)
        write_test_results(run_dir, module, dataset=datamodule.name, model_name=cfg.model.name,
                           checkpoint=summary["best_checkpoint"], test_images=len(datamodule.test),
                           class_names=datamodule.class_names,
                           extra=None if summary["leak"] is None else {"leak": summary["leak"]})
    metrics_csv = run_dir / "metrics.csv"
    if metrics_csv.is_file():
        write_stamp(run_dir / "curves", [metrics_csv], plot_learning_curves(metrics_csv, run_dir / "curves"))
    rows = layer_table(module.net, (datamodule.channels, datamodule.image_size, datamodule.image_size))
    write_text_atomic(run_dir / "model_summary.txt", format_layer_table(
        rows, f"{cfg.model.name} ({type(module.net).__name__}) for {datamodule.name}") + "\n")
    write_text_atomic(run_dir / "layers.json", json.dumps(rows, indent=2))
    from pipeline.report.train_report import write_train_report

    write_train_report(run_dir, model=cfg.model.name, dataset=datamodule.name, summary=summary)


def summary_screen(cfg: DictConfig, summary: dict, datamodule) -> str:
    n_train = len(datamodule.train) if datamodule.train is not None else 0
    epochs = max(summary["epochs"], 1)
    lines = ["", "=" * 72, f" {cfg.model.name} on {cfg.data.name}: training complete", "=" * 72,
             f" epochs: {summary['epochs']}   steps: {summary['global_step']}   "
             f"fit time: {summary['fit_seconds']:.1f} s   (~{n_train * epochs / max(summary['fit_seconds'], 1e-9):.0f} img/s)"]
    for head, m in summary["test"].items():
        mark = " <- main" if head == summary["main_head"] else ""
        lines.append(f" test {head:<10} accuracy {m['accuracy']:.4f}   macro F1 {m['f1_macro']:.4f}{mark}")
    from pipeline.training.leak_check import describe

    lines += describe(summary.get("leak"))
    run_dir = Path(summary["run_dir"])
    lines += [f" run dir:         {run_dir}",
              f" best checkpoint: {summary['best_checkpoint']}",
              f" metrics:         {run_dir / 'test_metrics.json'}, curves/, confusion/",
              f" layers:          {run_dir / 'model_summary.txt'}",
              f" next:            python visualize.py dataset={cfg.data.name} model={cfg.model.name} job=all",
              "=" * 72]
    if summary.get("cut_short"):
        use = (f"   python visualize.py dataset={cfg.data.name} ckpt={summary['best_checkpoint']} job=all"
               if summary.get("best_checkpoint") else "   (no checkpoint was kept)")
        lines[-2:] = [f" CUT SHORT:       {'; '.join(summary['cut_short'])}",
                      " visualize.py's search skips this run; to look at it anyway:", use, "=" * 72]
    return "\n".join(lines)


def _limited(limit, full: int | None) -> str | None:
    """How a ``limit_*_batches`` value cut an epoch short, or None when it ran in full."""
    if limit is None or isinstance(limit, bool):
        return None
    if isinstance(limit, float) and limit < 1.0:
        return f"{limit:g} of the batches"
    if isinstance(limit, int) and (full is None or limit < full):
        return f"{limit} of {full if full is not None else '?'} batches"
    return None


def cut_short_reasons(trainer, datamodule) -> list[str]:
    """Why a finished fit is not a real training run (empty list: it is one): fast_dev_run,
    ``limit_train/val/test_batches`` below a full epoch, ``max_steps`` reached before ``max_epochs``.
    Such runs are recorded as ``cut_short`` in run.json and skipped by visualize's checkpoint search."""
    reasons = []
    if getattr(trainer, "fast_dev_run", False):
        reasons.append(f"fast_dev_run={trainer.fast_dev_run}")
    if getattr(trainer, "overfit_batches", 0):
        reasons.append(f"overfit_batches={trainer.overfit_batches}")
    for split, loader in [("train", "train_dataloader"), ("val", "val_dataloader"), ("test", "test_dataloader")]:
        limit = getattr(trainer, f"limit_{split}_batches", 1.0)
        try:
            full = len(getattr(datamodule, loader)())
        except Exception:  # a split not set up (no test after fit), an iterable without len
            full = None
        if split == "test" and full is None:
            continue
        why = _limited(limit, full)
        if why:
            reasons.append(f"limit_{split}_batches={limit} ({why} per epoch)")
    max_steps, max_epochs = getattr(trainer, "max_steps", -1), getattr(trainer, "max_epochs", None)
    per_epoch = getattr(trainer, "num_training_batches", float("inf"))
    per_epoch = -(-per_epoch // max(int(getattr(trainer, "accumulate_grad_batches", 1) or 1), 1)) \
        if per_epoch != float("inf") else per_epoch
    planned = per_epoch * max_epochs if max_epochs not in (None, -1) else float("inf")
    if max_steps not in (None, -1) and max_steps <= trainer.global_step < planned:
        reasons.append(f"max_steps={max_steps} reached after {trainer.global_step} of {planned:g} steps "
                       f"({max_epochs} epochs)")
    return reasons
