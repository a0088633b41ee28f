"""``job=probe``: the shortcut probe -- every head's accuracy when ONE factor of the test images
changes at a time (config: ``probe.*`` in conf/job/probe.yaml; the factors:
:mod:`pipeline.evaluation.probe_factors`).

``probe.num_images`` test images (the seeded, class-spread sample of job=evaluate) are redrawn
(lines) or transformed (other datasets) one factor and level at a time. Results: ``probe/`` in
the HDF5 file, ``probe.csv``, ``figures/probe/accuracy.png`` and a report section whose
observations name the head, the factor, the level and the drop.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pipeline.errors import CnnvisError
from pipeline.evaluation.probe_factors import IMAGE_FACTORS, LINE_FACTORS, check_factors
from pipeline.evaluation.sampling import evaluation_sample
from pipeline.report.sections import Figure, Section, Table
from pipeline.visualization.context import VisContext
from pipeline.visualization.inputs import Selection

if TYPE_CHECKING:
    from pipeline.evaluation.probe import FactorResult

__all__ = ["ProbeJob"]

# pipeline.evaluation.probe (and probe_observations) are imported where they are used: they import
# pytorch_lightning (through pipeline.training.lit_module), which pipeline/config.py must not pull in
# when it reads this job's settings for the config schema


@dataclass
class Probe:
    indices: torch.Tensor
    results: list[FactorResult]
    facts: dict


class ProbeJob:
    def __init__(self, ctx: VisContext, layers: list[str] | None, seed: int, *, num_images: int,
                 factors: dict[str, list[Any]], min_drop: float, ok_accuracy: float, only: list[str] | None = None):
        self.ctx, self.seed = ctx, seed
        dm = ctx.datamodule
        self.renderable = callable(getattr(dm, "render_params", None))
        self.style = None
        if self.renderable and getattr(dm, "style", None):
            from pipeline.data.line_styles import get_style

            self.style = get_style(dm.style)
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise CnnvisError(f"probe.num_images={num_images!r} is invalid: it must be a positive integer, e.g. 2000")
        self.num_images = num_images
        for key, v in (("min_drop", min_drop), ("ok_accuracy", ok_accuracy)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise CnnvisError(f"probe.{key}={v!r} is invalid: it must be a share in (0, 1]")
        self.min_drop, self.ok_accuracy = float(min_drop), float(ok_accuracy)
        self.factors, self.skipped = check_factors(factors, self.renderable, self.style,
                                                   int(getattr(dm, "image_size", 28)), only)
        if not self.factors:
            raise CnnvisError(f"probe.factors has no factor that applies to dataset {ctx.dataset_name}: "
                              f"give levels for {', '.join(LINE_FACTORS if self.renderable else IMAGE_FACTORS)}")

    def compute(self, images: Selection, batch_size: int) -> Probe:
        """Accuracies on its own sample of the test set (the run's images are not used)."""
        from pipeline.evaluation.probe import run_probe

        ctx = self.ctx
        idx = evaluation_sample(ctx.datamodule.test.labels, self.num_images, self.seed)
        results, facts = run_probe(ctx.net, ctx.head_classes, ctx.datamodule, idx, self.factors, self.renderable,
                                   self.style, batch_size, ctx.device)
        return Probe(idx, results, facts)

    def store(self, result: Probe, writer, run_dir: Path) -> None:
        from pipeline.evaluation.probe import write_csv

        writer.write_probe_indices(result.indices, attrs={
            "images": len(result.indices), "redrawn": self.renderable, "style": self.style.name if self.style else None,
            "differs_from_stored": result.facts.get("differs_from_stored")})
        for r in result.results:
            writer.write_probe(r.factor, r.levels, r.level_names, r.accuracy,
                               attrs={"images": r.images, "description": r.description})
        write_csv(result.results, run_dir / "probe.csv")

    def render(self, result: Probe, fig_dir: Path) -> list[Figure]:
        from pipeline.rendering.probe_plots import plot_probe

        path = plot_probe(result.results, fig_dir / "probe" / "accuracy.png",
                          f"{self.ctx.model_name} on {self.ctx.dataset_name}: accuracy when one factor changes "
                          f"({len(result.indices)} test images)", ok=self.ok_accuracy)
        return [Figure(path, "accuracy per head against each factor's level; dotted: the images as drawn, "
                             f"grey line: {self.ok_accuracy:.0%}")]

    def section(self, result: Probe, figures: list[Figure]) -> Section:
        from pipeline.evaluation.probe_observations import probe_observations

        results, n = result.results, len(result.indices)
        heads = list(results[0].accuracy)
        rows = [[r.factor, name, *[float(r.accuracy[h][i]) for h in heads]]
                for r in results for i, name in enumerate(r.level_names)]
        paragraphs = [
            f"{n} test images (a seeded sample spread over the classes) "
            + ("redrawn from their drawing parameters with one factor changed at a time"
               if self.renderable else "with one image-level factor changed at a time")
            + "; accuracy of every head at each level" + (" (aggregate: all heads right)" if len(heads) > 1 else "")
            + ". Stored under probe/ in visualization.h5 and in probe.csv.",
            "Factors: " + "; ".join(f"{r.factor}: {r.description}" for r in results[1:]) + ".",
        ]
        if self.skipped:
            paragraphs.append(f"Not applicable to {self.ctx.dataset_name}: {', '.join(self.skipped)} "
                              + ("(image-level factors)" if self.renderable else
                                 "(they redraw the line from its drawing parameters, which only the lines dataset has)")
                              + ".")
        return Section("Shortcut probe", paragraphs=paragraphs,
                       observations=probe_observations(results, result.facts, style=self.style,
                                                       min_drop=self.min_drop, ok=self.ok_accuracy),
                       tables=[Table("Accuracy per head when one factor changes", ["factor", "level", *heads], rows)],
                       figures=figures, key_numbers=self.key_numbers(results))

    @staticmethod
    def key_numbers(results) -> dict:
        """The sweep index's numbers: the main head's (aggregate's) baseline accuracy and its lowest
        accuracy over every factor and level, with where."""
        head = "aggregate" if "aggregate" in results[0].accuracy else next(iter(results[0].accuracy))
        worst = min(((float(r.accuracy[head][i]), f"{r.factor} {name}") for r in results[1:]
                     for i, name in enumerate(r.level_names)), default=None)
        out = {f"baseline accuracy ({head})": float(results[0].accuracy[head][0])}
        if worst is not None:
            out[f"lowest accuracy ({head})"] = worst[0]
            out["lowest at"] = worst[1]
        return out
