"""``job=evaluate``: score attribution methods on data with a known answer (config:
``evaluate.*`` in conf/job/evaluate.yaml; the methods come from ``methods``, conf/methods/).

For ``evaluate.num_images`` test images (a seeded, class-spread sample) and each method and head
at one layer:

* localization (datasets with ground-truth masks, i.e. lines): pointing game (peak on the line,
  mask dilated by one pixel), energy-in-mask (share of the map's positive mass on the line,
  against the line's share of the image), IoU of the top-k pixels with the mask (k = mask size);
* faithfulness (any dataset), on the first ``evaluate.faithfulness_images``: deletion and
  insertion curves of the target probability and their AUC, in the map's order and in a seeded
  random order (the baseline to beat: lower deletion AUC, higher insertion AUC);
* sanity (Adebayo et al. 2018), on ``evaluate.sanity_images``: cascading randomization from the
  top layer down; the Spearman rank correlation of each randomized model's maps with the trained
  model's, averaged over the images and ``evaluate.sanity_repeats`` independent random
  re-initializations. A method passes when the correlation falls below
  ``evaluate.sanity_threshold`` once the top layer is randomized.

Every score comes with a bootstrap confidence interval over the images (``evaluate.bootstrap_resamples``
resamples, a ``evaluate.confidence`` percentile interval, seeded; :mod:`pipeline.evaluation.bootstrap`),
and every verdict (the sanity check's pass/fail, deletion faster than random) says whether its interval
settles it: ``<score>_ci`` ``[low, high]``, ``sanity_verdict``, ``deletion_verdict`` in the rows.

Results: ``evaluation/`` in the run's HDF5 file, ``evaluation.csv`` / ``evaluation.json``, plots
under ``figures/evaluation/`` and a report section.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline.errors import CnnvisError
from pipeline.evaluation.bootstrap import bootstrap_ci, verdict
from pipeline.evaluation.faithfulness import class_probability_fn, deletion_insertion, end_scores
from pipeline.evaluation.inference_copy import folded_copy
from pipeline.evaluation.localization import localization_scores, pointing_game_valid
from pipeline.evaluation.sampling import evaluation_sample
from pipeline.evaluation.sanity import head_cascades, merge_cascades, parameter_layers
from pipeline.evaluation.scoreboard import (COLUMNS, faithfulness_class, evaluation_observations, print_bars,
                                            score_lines, table_cell, write_tables)
from pipeline.jobs.method_choice import build_method, chosen_methods, needs_layer
from pipeline.report.sections import Figure, Section, Table
from pipeline.visualization.context import VisContext
from pipeline.visualization.inputs import Selection
from pipeline.visualization.layers import last_conv_name

__all__ = ["EvaluateJob"]


@dataclass
class Evaluation:
    indices: torch.Tensor                       # the scored test images
    rows: list[dict]                            # one per (method, head): the scores (COLUMNS)
    arrays: dict[tuple[str, str], dict]         # (method, head) -> per-image arrays for the HDF5 file
    curves: dict = field(default_factory=dict)  # (head, mode) -> {method: [images, steps + 1]}
    cascades: dict = field(default_factory=dict)  # head -> {method: cascade steps}
    first_image: np.ndarray | None = None
    has_masks: bool = False
    faithfulness_images: int = 0
    sanity_images: int = 0


class EvaluateJob:
    def __init__(self, ctx: VisContext, layers: list[str] | None, seed: int, *, methods: list[str],
                 catalog: dict[str, Any], head: str | None = None, num_images: int, faithfulness_images: int,
                 deletion_steps: int, sanity_images: int, sanity_repeats: int, sanity_threshold: float,
                 bootstrap_resamples: int = 1000, confidence: float = 0.95, sanity_reuse_mb: int = 2048):
        self.ctx, self.seed = ctx, seed
        self.methods = chosen_methods(methods, catalog, "evaluate.methods")
        if layers and len(layers) > 1:
            raise CnnvisError(f"job=evaluate scores one layer at a time; got layer={layers}")
        self.layer = layers[0] if layers else last_conv_name(ctx.net)
        heads = list(ctx.head_classes)
        if head is not None and head not in heads:
            raise CnnvisError(f"evaluate.head={head} does not exist; valid heads: {', '.join(heads)}")
        self.heads = [head] if head is not None else heads
        counts = dict(num_images=num_images, faithfulness_images=faithfulness_images, sanity_images=sanity_images,
                      sanity_repeats=sanity_repeats, deletion_steps=deletion_steps)
        for key, value in counts.items():
            if value < 0 or (key in ("num_images", "sanity_repeats", "deletion_steps") and value < 1):
                raise CnnvisError(f"evaluate.{key}={value} is invalid: it must be a positive integer")
        self.num_images, self.faithfulness_images, self.sanity_images = num_images, faithfulness_images, sanity_images
        self.sanity_repeats, self.deletion_steps, self.sanity_threshold = sanity_repeats, deletion_steps, sanity_threshold
        if bootstrap_resamples < 1 or not 0 < confidence < 1 or sanity_reuse_mb < 0:
            raise CnnvisError(f"evaluate.bootstrap_resamples={bootstrap_resamples} must be >= 1, evaluate.confidence="
                              f"{confidence} in (0, 1) and evaluate.sanity_reuse_mb={sanity_reuse_mb} >= 0")
        self.bootstrap_resamples, self.confidence, self.sanity_reuse_mb = bootstrap_resamples, confidence, sanity_reuse_mb

    # -- computing ------------------------------------------------------------------------------
    def _maps(self, net, factory, x: torch.Tensor, targets: dict | None, heads: list[str], batch_size: int):
        with build_method(factory, net, self.layer, heads if self.ctx.multihead else None, batch_size) as m:
            out = m(x, targets if self.ctx.multihead else (targets or {}).get("class"))
        return out if isinstance(out, dict) else {"class": out}

    def compute(self, images: Selection, batch_size: int) -> Evaluation:
        """Scores on its own sample of the test set (the run's images are not used)."""
        test = self.ctx.datamodule.test
        idx = evaluation_sample(test.labels, self.num_images, self.seed)
        x = (test.images[idx].float() / 255).to(self.ctx.device)
        masks = test.masks[idx] if test.masks is not None else None
        n_faith, n_sanity = min(self.faithfulness_images, len(idx)), min(self.sanity_images, len(idx))
        ev = Evaluation(idx, [], {}, first_image=x[0].cpu().numpy(), has_masks=masks is not None,
                        faithfulness_images=n_faith, sanity_images=n_sanity)
        random_cache: dict = {}
        self._scorer = folded_copy(self.ctx.net) if n_faith else self.ctx.net  # batch norms folded: the curves' forwards
        for name, factory in tqdm(self.methods.items(), desc="evaluate methods", unit="method"):
            start = time.perf_counter()
            results = self._maps(self.ctx.net, factory, x, None, self.heads, batch_size)
            elapsed = time.perf_counter() - start
            cascades = (self._sanity(factory, x[:n_sanity], {h: r.targets[:n_sanity] for h, r in results.items()},
                                     batch_size) if n_sanity else {})
            for head, res in results.items():
                maps = res.maps.float().cpu()
                row = {"method": name, "head": head, "layer": self.layer if needs_layer(factory) else "input",
                       "seconds": elapsed / len(results)}
                arrays = {"maps": maps[:64].numpy(), "targets": res.targets.numpy()}  # the first 64 maps
                attrs: dict = {}
                per_image: dict[str, np.ndarray] = {}  # score -> its values per image ([R, N]: R per image)
                blank = (~pointing_game_valid(maps)).float()  # no peak: all zero / constant
                row["blank_maps"], per_image["blank_maps"] = float(blank.mean()), blank.numpy()
                if masks is not None:
                    loc = localization_scores(maps, masks, dilate=1)
                    for k in ("pointing_game", "energy_in_mask", "mask_share", "topk_iou"):
                        arrays[k] = per_image[k] = loc[k].float().numpy()
                        row[k] = float(loc[k].float().mean())
                if n_faith:
                    self._faithfulness(name, head, res, x[:n_faith], maps[:n_faith], batch_size, row, arrays, ev,
                                       random_cache, per_image)
                if n_sanity:
                    steps = cascades[head]
                    ev.cascades.setdefault(head, {})[name] = steps
                    top = steps[1]["mean"] if len(steps) > 1 else float("nan")
                    row["sanity_top_layer"], row["sanity_last_step"] = top, steps[-1]["mean"]
                    row["sanity_pass"] = bool(top < self.sanity_threshold)
                    row["sanity_top_layer_each"] = steps[1]["run_means"] if len(steps) > 1 else []
                    arrays["sanity_spearman"] = np.stack([s["spearman"].numpy() for s in steps])
                    attrs = {"sanity_layers": json.dumps([s["layer"] for s in steps]),
                             "sanity_repeats": self.sanity_repeats}  # spearman rows: repeat-major
                    if len(steps) > 1:
                        per_image["sanity_top_layer"] = steps[1]["spearman"].numpy().reshape(self.sanity_repeats, -1)
                    per_image["sanity_last_step"] = steps[-1]["spearman"].numpy().reshape(self.sanity_repeats, -1)
                self._intervals(row, per_image)
                attrs.update({f"{k}_ci": row[f"{k}_ci"] for k in per_image})
                ev.rows.append(row)
                ev.arrays[(name, head)] = {"arrays": arrays, "attrs": attrs}
        return ev

    def _intervals(self, row: dict, per_image: dict[str, np.ndarray]) -> None:
        """``<score>_ci`` for every score measured per image, and the verdicts with what settles them."""
        for k, values in per_image.items():
            row[f"{k}_ci"] = list(bootstrap_ci(values, self.bootstrap_resamples, self.confidence, self.seed))
        if "sanity_top_layer" in per_image:
            row["sanity_verdict"] = verdict(row["sanity_top_layer_ci"], self.sanity_threshold)
        if "deletion_gap" in per_image:
            lo, hi = row["deletion_gap_ci"]
            row["deletion_verdict"] = ("settled" if faithfulness_class(lo) == faithfulness_class(hi)
                                       else "not settled by this sample")

    def _faithfulness(self, name, head, res, xf, mf, batch_size, row, arrays, ev, random_cache, per_image) -> None:
        score = class_probability_fn(self._scorer, res.targets.to(self.ctx.device), head if self.ctx.multihead else None)
        mf = mf.to(self.ctx.device)
        targets = (head, tuple(res.targets[:len(xf)].tolist()))
        if targets not in random_cache:  # the curves' ends (the image, the baseline) do not depend on the method
            random_cache[targets] = end_scores(score, xf, batch_size=batch_size)
        ends = random_cache[targets]
        for mode in ("deletion", "insertion"):
            c, auc = deletion_insertion(score, xf, mf, steps=self.deletion_steps, mode=mode, order="map",
                                        seed=self.seed, batch_size=batch_size, ends=ends)
            key = (head, mode, targets[1])
            if key not in random_cache:  # the random order does not depend on the method
                random_cache[key] = deletion_insertion(score, xf, mf, steps=self.deletion_steps, mode=mode,
                                                       order="random", seed=self.seed, batch_size=batch_size, ends=ends)
            rc, rauc = random_cache[key]
            row[f"{mode}_auc"], row[f"{mode}_auc_random"] = float(auc.mean()), float(rauc.mean())
            gap = (rauc - auc) if mode == "deletion" else (auc - rauc)  # > 0: the map beats the random order
            row[f"{mode}_gap"] = float(gap.mean())
            per_image[f"{mode}_auc"], per_image[f"{mode}_auc_random"] = auc.cpu().numpy(), rauc.cpu().numpy()
            per_image[f"{mode}_gap"] = gap.cpu().numpy()
            ev.curves.setdefault((head, mode), {})[name] = c.cpu().numpy()
            ev.curves[(head, mode)]["random order"] = rc.cpu().numpy()
            arrays[f"{mode}_curves"] = c.cpu().numpy()

    def _sanity(self, factory, x: torch.Tensor, targets: dict[str, torch.Tensor], batch_size: int) -> dict[str, list[dict]]:
        """``{head: merged cascade}``: every head's randomization cascades (``sanity_repeats``
        seeds: ``seed + 1000 r``) from shared runs -- each step's maps of every head in one call,
        the trained model's maps once (see :func:`~pipeline.evaluation.sanity.head_cascades`)."""
        net = self.ctx.net
        layers = {h: parameter_layers(net, prefixes=("features", f"heads.{h}") if self.ctx.multihead else None)
                  for h in targets}

        def attribute(model, xb, t):
            return {h: r.maps for h, r in self._maps(model, factory, xb, dict(t), list(t), batch_size).items()}

        runs = head_cascades(net, attribute, x, {h: t.to(x.device) for h, t in targets.items()}, layers,
                             seeds=[self.seed + 1000 * r for r in range(self.sanity_repeats)],
                             reuse_bytes=self.sanity_reuse_mb << 20)
        return {h: merge_cascades(r) for h, r in runs.items()}

    # -- storing, drawing, reporting --------------------------------------------------------------
    def store(self, result: Evaluation, writer, run_dir: Path) -> None:
        writer.write_evaluation_indices(result.indices)
        for (method, head), stored in result.arrays.items():
            writer.write_evaluation(method, head, stored["arrays"], attrs=stored["attrs"])
        write_tables(result.rows, run_dir)
        print(score_lines(result.rows, self.confidence))
        bars = print_bars(result.rows, self.ctx.dataset_name)
        if bars:
            print(bars)

    def render(self, result: Evaluation, fig_dir: Path) -> list[Figure]:
        from pipeline.rendering.evaluation_plots import plot_cascade, plot_curves, plot_scores

        d, rows, figs = fig_dir / "evaluation", result.rows, []
        if any(r.get("pointing_game") is not None for r in rows):
            figs.append(Figure(plot_scores(rows, "pointing_game", d / "pointing_game.png", "Pointing game (peak on the line)"),
                               "pointing game per method and head"))
            share = float(np.mean([r["mask_share"] for r in rows]))
            figs.append(Figure(plot_scores(rows, "energy_in_mask", d / "energy_in_mask.png",
                                           "Share of the map's mass on the line", chance=share),
                               "energy in mask; dashed: the line's share of the image (chance)"))
        for (head, mode), by_method in result.curves.items():
            figs.append(Figure(plot_curves(by_method, d / f"{mode}_{head}.png", f"{mode} curves, head {head}"),
                               f"{mode}: mean target probability as pixels are {'removed' if mode == 'deletion' else 'inserted'} "
                               f"in each map's order (dashed: random order), head {head}"))
        for head, by_method in result.cascades.items():
            names = [s["layer"] for s in next(iter(by_method.values()))]
            maps = {m: [s["maps"][0].cpu().numpy() for s in st] for m, st in by_method.items()}
            figs.append(Figure(plot_cascade(result.first_image, maps, names, d / f"cascade_{head}.png",
                                            f"randomization cascade, head {head} (top layer first)"),
                               f"sanity check: maps of image 0 as the layers are re-initialized from the top, head {head}"))
        return figs

    def section(self, result: Evaluation, figures: list[Figure]) -> Section:
        return Section("Measured explanations",
                       paragraphs=[f"{len(result.indices)} test images (seeded sample), layer {self.layer} for the layer "
                                   f"methods; deletion/insertion on the first {result.faithfulness_images}, the "
                                   f"randomization check on the first {result.sanity_images} ({self.sanity_repeats} "
                                   f"random re-initializations each). Beside each score its {self.confidence:.0%} "
                                   f"bootstrap interval over the images ({self.bootstrap_resamples} resamples). "
                                   "Full table: evaluation.csv / evaluation.json."],
                       observations=evaluation_observations(result.rows, result.has_masks)
                       + self.binary_head_observations(result),
                       tables=[Table("Scores per method and head", [c.replace("_", " ") for c in COLUMNS],
                                     [[table_cell(r, c) for c in COLUMNS] for r in result.rows])],
                       figures=figures, key_numbers=self.key_numbers(result.rows))

    def binary_head_observations(self, result: Evaluation) -> list[str]:
        """Per method and one-output head: the pointing game of the class 0 and the class 1 images apart.
        Class 0 (short, thin, red) is explained as -logit, the evidence for it over class 1, which can lie
        where the line is not: the table's pointing game mixes the two (docs/gradcam.md)."""
        from pipeline.data.lines_labels import head_class_names

        out = []
        for (method, head), stored in result.arrays.items():
            arrays = stored["arrays"]
            if self.ctx.head_classes.get(head) != 2 or "pointing_game" not in arrays:
                continue
            t, hits = np.asarray(arrays["targets"]), np.asarray(arrays["pointing_game"], dtype=float)
            if not (t == 0).any() or not (t == 1).any():
                continue
            n0, n1 = head_class_names(head, 2, self.ctx.class_names)
            out.append(f"{method}, head {head} (one output): the pointing game is {hits[t == 0].mean():.0%} on the "
                       f"{int((t == 0).sum())} images explained as {n0} (class 0: -logit, the evidence for {n0} over "
                       f"{n1}, which can lie where the line is not) and {hits[t == 1].mean():.0%} on the "
                       f"{int((t == 1).sum())} {n1} images; the table's {hits.mean():.0%} mixes the two "
                       "(docs/gradcam.md).")
        return out

    @staticmethod
    def key_numbers(rows: list[dict]) -> dict[str, float]:
        """The sweep index's numbers: the mean pointing game, deletion AUC and top-layer rank
        correlation over every method and head (those scored)."""
        out = {}
        for col in ("pointing_game", "deletion_auc", "sanity_top_layer"):
            values = [float(r[col]) for r in rows if r.get(col) is not None and np.isfinite(r[col])]
            if values:
                out[f"mean {col.replace('_', ' ')}"] = float(np.mean(values))
        return out
