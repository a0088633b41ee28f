"""``python visualize.py``: context -> jobs (built from their config blocks, checked) -> images ->
HDF5 + figures -> report (the jobs: :mod:`pipeline.jobs`). It sits above the jobs it runs and the
primitives they use (:mod:`pipeline.visualization`): calls only go down (tests/test_layering.py).

Output, in the run directory (``outputs/visualize/<dataset>/<job>/<time>/`` or a sweep's subdir):
``visualization.h5`` (layout in the README), ``figures/``, ``index.html`` and ``summary.json``
(what the sweep index shows). The HDF5 file and the figure folder appear under their final
names only when everything succeeded.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline.errors import CnnvisError
from pipeline.leftovers import partial_path
from pipeline.data.lines_labels import head_class_names
from pipeline.jobs.base import build_jobs, execute, job_blocks
from pipeline.jobs.target_choice import head_logits
from pipeline.models.summary import format_layer_table
from pipeline.report.deliverables import compact, deliverables_section, fold_extra_jobs, main_figure
from pipeline.report.html import write_report
from pipeline.report.explorer import explorer_section, write_explorer
from pipeline.report.sections import Figure, Section, Table
from pipeline.report.train_report import layers_table, metrics_table, redrawn_training_figures
from pipeline.training.lit_module import head_probabilities, head_predictions
from pipeline.visualization.class_words import image_words
from pipeline.visualization.context import VisContext, load_context
from pipeline.visualization.inputs import Selection, select_images

log = logging.getLogger(__name__)


def _predict(ctx: VisContext, sel: Selection, batch_size: int):
    logits = head_logits(ctx.net, sel.images, batch_size, ctx.device)
    return ({h: head_predictions(v) for h, v in logits.items()},
            {h: head_probabilities(v) for h, v in logits.items()})


def checkpoint_info(ctx: VisContext) -> dict:
    """The checkpoint a run used, its training run, test accuracy, when it was trained and whether
    that run was cut short (from the run's ``run.json``; a bare ``ckpt=`` file has only its path)."""
    rec = {}
    if ctx.train_run_dir is not None and (ctx.train_run_dir / "run.json").is_file():
        try:
            rec = json.loads((ctx.train_run_dir / "run.json").read_text())
        except (OSError, json.JSONDecodeError):
            rec = {}
    acc = rec.get("test_accuracy", (ctx.train_metrics or {}).get("accuracy"))
    return {"checkpoint": str(ctx.ckpt), "train_run": str(ctx.train_run_dir) if ctx.train_run_dir else None,
            "test_accuracy": acc, "trained": (rec.get("finished") or "")[:16].replace("T", " ") or None,
            "cut_short": rec.get("cut_short") or []}


def checkpoint_line(info: dict) -> str:
    """``checkpoint .../best.ckpt (run <dir>; test accuracy 0.9987; trained 2026-11-26 01:20)``."""
    acc = info.get("test_accuracy")
    parts = [f"run {info['train_run']}" if info.get("train_run") else "no training run record",
             f"test accuracy {'unknown' if acc is None else f'{acc:.4f}'}",
             f"trained {info.get('trained') or 'unknown'}"]
    if info.get("cut_short"):
        parts.append("CUT SHORT: " + "; ".join(info["cut_short"]))
    return f"checkpoint {info['checkpoint']} ({'; '.join(parts)})"


def _model_section(ctx: VisContext, fig_dir: Path) -> Section:
    """The checkpoint, its test metrics, a link to its training run's report, and that run's figures
    drawn again into ``fig_dir`` from the run's numbers (so a run trained by an older version looks
    like today's; the page keeps working when the run folder is moved alone), folded."""
    tables = []
    paragraphs = [checkpoint_line(checkpoint_info(ctx)).capitalize(), f"Trained on {ctx.dataset_name}; {len(ctx.class_names)} classes."]
    figures = []
    m = ctx.train_metrics
    if m:
        tables.append(metrics_table(m.get("heads", {}), caption="Test metrics of this checkpoint (from its training run)"))
        paragraphs.append(f"{m.get('test_images', '?')} test images.")
    links = []
    if ctx.train_run_dir is not None:  # the training report's figures: learning curves, confusion matrices
        figures += redrawn_training_figures(ctx.train_run_dir, fig_dir, model=ctx.model_name, dataset=ctx.dataset_name)
        if (ctx.train_run_dir / "index.html").is_file():
            links.append(("the training run's own report", str(ctx.train_run_dir / "index.html")))
    subsections = [Section("Learning curves and confusion matrices", figures=figures, folded=True)] if figures else []
    subsections.append(Section("Layers", tables=[layers_table(ctx.layer_rows)], folded=True,
                               note=f"{len(ctx.layer_rows)} layers, folded: click to open"))
    return Section(f"Model and training: {ctx.model_name}", paragraphs=paragraphs, tables=tables, links=links,
                   subsections=subsections, anchor="model")


def write_input_thumbnails(ctx: VisContext, sel: Selection, fig_dir: Path) -> list[Path]:
    """A small PNG of each input, ``<fig_dir>/inputs/image00_<class>.png``, enlarged 4x with
    nearest-neighbour pixels (the images table shows them; a click opens one)."""
    import numpy as np
    from PIL import Image

    from pipeline.rendering.figures import to_display_rgb

    out = []
    (fig_dir / "inputs").mkdir(parents=True, exist_ok=True)
    for i in range(len(sel)):
        words = image_words(int(sel.labels[i]), ctx.class_names, ctx.dataset_name)
        name = re.sub(r"[^a-z0-9]+", "_", words.replace("\u00b0", "deg").lower()).strip("_") or "image"
        rgb = (to_display_rgb(sel.images[i]) * 255).round().astype(np.uint8)
        im = Image.fromarray(rgb)
        path = fig_dir / "inputs" / f"image{i:02d}_{name}.png"
        im.resize((im.width * 4, im.height * 4), Image.NEAREST).save(path)
        out.append(path)
    return out


def _inputs_section(ctx: VisContext, sel: Selection, preds, probs, thumbnails: list[Path]) -> Section:
    rows = []
    for i in range(len(sel)):
        words = image_words(int(sel.labels[i]), ctx.class_names, ctx.dataset_name)
        row = [Figure(thumbnails[i], f"image {i}: {words}"), i, sel.sources[i], words]
        for h in preds:
            names = head_class_names(h, ctx.head_classes[h], ctx.class_names)
            p = int(preds[h][i])
            row.append(f"{names[p]} ({float(probs[h][i, p]):.2f})")
        rows.append(row)
    return Section("Images", anchor="images",
                   tables=[Table("The images of this run and the model's predictions (probability)",
                                 ["", "image", "source", "true class", *[f"predicted {h}" for h in preds]], rows)])


def run_visualize(cfg: DictConfig) -> dict:
    job_names = list(job_blocks(cfg))  # checked against each job's settings before anything is loaded
    batch_size = int(cfg.batch_size)
    if batch_size < 1:
        raise CnnvisError(f"batch_size={cfg.batch_size} is invalid: it must be a positive integer")
    run_dir = Path(cfg.paths.output_dir)
    h5_path = run_dir / "visualization.h5"
    if h5_path.exists() and not cfg.get("overwrite", False):
        raise CnnvisError(f"{h5_path} exists already; pass overwrite=true or use a new run directory")

    ctx = load_context(cfg)
    jobs = build_jobs(cfg, ctx)  # hydra.utils.instantiate on each job's block; its checks happen here
    test = ctx.datamodule.test
    sel = select_images(cfg.get("image"), test.images, test.labels, test.masks, len(ctx.class_names),
                        int(cfg.get("num_images", 6)))
    preds, probs = _predict(ctx, sel, batch_size)

    # everything that can be done before the first file is written (a Ctrl-C inside OmegaConf's
    # resolution surfaced as an InterpolationResolutionError, not as the interrupt)
    attrs = {"dataset": ctx.dataset_name, "model": ctx.model_name, "checkpoint": str(ctx.ckpt),
             "jobs": job_names, "config": OmegaConf.to_yaml(cfg, resolve=True),
             "layer_names": [r["name"] for r in ctx.layer_rows], "class_names": ctx.class_names}
    from pipeline.storage.h5store import H5RunWriter

    run_dir.mkdir(parents=True, exist_ok=True)
    fig_tmp, fig_dir = partial_path(run_dir / "figures"), run_dir / "figures"  # figures.partial-<pid>@<host>
    try:
        shutil.rmtree(fig_tmp, ignore_errors=True)
        fig_tmp.mkdir()
        with H5RunWriter(h5_path, attrs=attrs, overwrite=bool(cfg.get("overwrite", False))) as writer:
            writer.write_inputs(sel.images, sel.labels, sel.sources, predictions=preds, probabilities=probs)
            if sel.masks is not None:
                writer.write_masks(sel.masks)
            sections = [execute(job, sel, writer, run_dir, fig_tmp, batch_size) for job in jobs]
        for name, sec in zip(job_names, sections):  # each job's section answers to "#<job name>"
            sec.anchor = sec.anchor or name
        model_section = _model_section(ctx, fig_tmp / "training")
        thumbnails = write_input_thumbnails(ctx, sel, fig_tmp)
    except BaseException:
        shutil.rmtree(fig_tmp, ignore_errors=True)
        raise
    if fig_dir.exists():
        shutil.rmtree(fig_dir)
    os.replace(fig_tmp, fig_dir)
    _repoint([model_section, *sections], fig_tmp, fig_dir)
    thumbnails = [fig_dir / p.relative_to(fig_tmp) for p in thumbnails]
    compact(sections)
    fold_extra_jobs(list(zip(job_names, sections)))

    (run_dir / "model_summary.txt").write_text(format_layer_table(ctx.layer_rows, ctx.model_name) + "\n")
    title = f"{ctx.model_name} on {ctx.dataset_name}: {', '.join(job_names)}"
    info = checkpoint_info(ctx)
    # the page opens with what the run delivers (a card per job: its key figure and numbers), then the
    # images, the jobs' sections, and the model with its training run (folded figures) last
    explorer = write_explorer(h5_path, title=title)  # explorer.html: the run in one page (pipeline/report/explorer.py)
    report = write_report(run_dir / "index.html", title,
                          [deliverables_section(list(zip(job_names, sections)), run_dir), explorer_section(explorer),
                           _inputs_section(ctx, sel, preds, probs, thumbnails), *sections, model_section],
                          subtitle=f"{len(sel)} images; {checkpoint_line(info)}; stored in visualization.h5")
    summary = {"title": title, "job": cfg.job.name, "dataset": ctx.dataset_name, "model": ctx.model_name,
               "checkpoint": str(ctx.ckpt), "checkpoint_info": info, "images": len(sel), "report": str(report),
               "h5": str(h5_path), "observations": [o for s in sections for o in s.observations],
               "key_numbers": {k: v for s in sections for k, v in s.key_numbers.items()},
               "main_figure": main_figure(list(zip(job_names, sections)), run_dir)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nvisualize: {title}\n  {checkpoint_line(info)}\n  report: {report}\n  tensors: {h5_path}\n"
          f"  figures: {fig_dir}")
    return summary


def _repoint(sections, old: Path, new: Path) -> None:
    """Figures were rendered into figures.partial/; point the report at figures/."""
    for sec in sections:
        for fig in sec.figures:
            p = Path(fig.path)
            if old in p.parents:
                fig.path = new / p.relative_to(old)
        _repoint(sec.subsections, old, new)
