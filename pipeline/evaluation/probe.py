"""The shortcut probe's measurements: every head's accuracy on the scored test images with one
factor changed at a time (the factors: :mod:`pipeline.evaluation.probe_factors`; the job:
:mod:`pipeline.jobs.probe`).

A model can score 99 % on its test set by reading something that only happens to go with the
label there (a long line is also brighter in total; the course's lines sit up and left). The
probe exposes such shortcuts. On lines the baseline row is the images redrawn unchanged; they
equal the stored test images (checked on every run and reported).
"""
from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.data.lines_labels import split_label
from pipeline.evaluation.probe_factors import changed_params, describe, level_name, transform_images
from pipeline.training.lit_module import head_predictions

log = logging.getLogger(__name__)

__all__ = ["FactorResult", "head_accuracy", "run_probe", "write_csv"]


@dataclass
class FactorResult:
    """One factor: accuracy per head (and ``aggregate`` for multi-head models) at each level."""

    factor: str
    levels: list[float]
    level_names: list[str]
    accuracy: dict[str, np.ndarray]          # head -> [L]
    images: int
    description: str = ""


def head_accuracy(net, images: torch.Tensor, labels: torch.Tensor, head_classes: dict, batch_size: int,
                  device) -> dict[str, float]:
    """Accuracy of each head (``aggregate``: all heads right, multi-head models) on ``images``
    (uint8, or float in [0, 1]), batched, without gradients."""
    multi = len(head_classes) > 1
    correct = {h: 0 for h in head_classes}
    all_right = 0
    with torch.no_grad():
        for i in range(0, len(labels), batch_size):
            xb = images[i:i + batch_size]
            xb = xb.float() / 255 if xb.dtype == torch.uint8 else xb.float()
            out = net(xb.to(device))
            out = out if isinstance(out, dict) else {"class": out}
            yb = labels[i:i + batch_size]
            targets = split_label(yb, head_classes) if multi else {"class": yb}
            ok = torch.ones(len(yb), dtype=torch.bool)
            for h in head_classes:
                right = head_predictions(out[h].float().cpu()) == targets[h]
                correct[h] += int(right.sum())
                ok &= right
            all_right += int(ok.sum())
    n = max(len(labels), 1)
    acc = {h: correct[h] / n for h in head_classes}
    if multi:
        acc["aggregate"] = all_right / n
    return acc


def run_probe(net, head_classes: dict, datamodule, idx: torch.Tensor, factors: dict[str, list[float]],
              renderable: bool, style, batch_size: int, device) -> tuple[list[FactorResult], dict]:
    """(one result per factor -- the baseline first --, facts about the baseline: how many redrawn
    images differ from the stored ones) for the test images ``idx``."""
    test = datamodule.test
    labels, stored = test.labels[idx], test.images[idx]
    n = len(idx)

    def acc(images) -> dict[str, float]:
        return head_accuracy(net, images, labels, head_classes, batch_size, device)

    def result(factor, levels, names, rows: list[dict]) -> FactorResult:
        return FactorResult(factor, list(levels), names, {h: np.asarray([r[h] for r in rows]) for h in rows[0]}, n,
                            describe(factor, renderable, style))

    facts: dict = {"images": n, "redrawn": renderable}
    if renderable:
        from pipeline.data.line_styles import render

        size, margin = int(datamodule.image_size), float(datamodule.margin)
        params = datamodule.render_params("test").subset(idx.numpy())
        base = torch.from_numpy(render(params, size)[0])
        facts["differs_from_stored"] = int((base != stored).flatten(1).any(1).sum())
        if facts["differs_from_stored"]:
            log.warning("probe: %d of %d redrawn test images differ from the stored ones", facts["differs_from_stored"], n)
    else:
        base = stored
    base_acc = acc(base)
    results = [result("baseline", [float("nan")], ["as drawn" if renderable else "as stored"], [base_acc])]
    for factor, levels in factors.items():
        rows = []
        for level in levels:
            if renderable:
                p = changed_params(params, factor, level, size, margin)
                same = all(np.array_equal(getattr(p, f), getattr(params, f))
                           for f in ("brightness", "blur", "jpeg_quality", "widths", "lengths", "centres"))
                rows.append(base_acc if same else acc(torch.from_numpy(render(p, size)[0])))
            else:
                identity = (factor == "brightness" and level == 1) or (factor != "brightness" and level == 0)
                rows.append(base_acc if identity else acc(transform_images(stored, factor, level)))
        results.append(result(factor, levels, [level_name(factor, v) for v in levels], rows))
    return results, facts


def write_csv(results: list[FactorResult], path: Path) -> Path:
    """``probe.csv``: one row per (factor, level), one accuracy column per head."""
    heads = list(results[0].accuracy)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["factor", "level", "level_name", "images", *heads])
        for r in results:
            for i, (level, name) in enumerate(zip(r.levels, r.level_names)):
                w.writerow([r.factor, "" if math.isnan(level) else f"{level:g}", name, r.images,
                            *[f"{float(r.accuracy[h][i]):.6f}" for h in heads]])
    return path
