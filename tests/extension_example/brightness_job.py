"""A toy visualize job, added the way the README's "How to add a job" says: this one module, plus
its config file conf/job/brightness.yaml. Nothing in pipeline/ names it.

It reports each image's mean brightness per channel beside the model's confidence, and writes
them to brightness.csv. Its settings are its constructor's keyword arguments (``precision``),
which also type its config block.
"""
from __future__ import annotations

import csv
from pathlib import Path

import torch

from pipeline.report.sections import Section, Table


class BrightnessJob:
    def __init__(self, ctx, layers, seed, *, precision: int = 3):
        if precision < 0:
            raise ValueError(f"brightness.precision={precision} is invalid: it must be >= 0")
        self.ctx, self.precision = ctx, precision

    def compute(self, images, batch_size: int) -> dict:
        with torch.no_grad():
            out = self.ctx.net(images.images.to(self.ctx.device))
        first = next(iter(out.values())) if isinstance(out, dict) else out
        p = torch.softmax(first, 1).amax(1) if first.shape[1] > 1 else torch.sigmoid(first[:, 0].abs())
        return {"sources": images.sources, "brightness": images.images.mean(dim=(2, 3)), "confidence": p.cpu()}

    def store(self, result: dict, writer, run_dir: Path) -> None:
        with open(run_dir / "brightness.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["source", *[f"channel_{c}" for c in range(result["brightness"].shape[1])], "confidence"])
            for s, b, p in zip(result["sources"], result["brightness"].tolist(), result["confidence"].tolist()):
                w.writerow([s, *[round(v, self.precision) for v in b], round(p, self.precision)])

    def render(self, result: dict, fig_dir: Path) -> None:
        return None  # draws nothing

    def section(self, result: dict, figures) -> Section:
        rows = [[s, round(float(b.mean()), self.precision), round(float(p), self.precision)]
                for s, b, p in zip(result["sources"], result["brightness"], result["confidence"])]
        return Section("Brightness", tables=[Table("Mean brightness and confidence per image",
                                                   ["image", "mean brightness", "confidence"], rows)])
