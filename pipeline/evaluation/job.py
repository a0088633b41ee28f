"""``python visualize.py job=evaluate``: score every attribution method on data with a known
answer.

For ``evaluate.num_images`` test images (a seeded, class-spread sample) and each method, head
and layer:

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

Results go to the run's HDF5 file (``evaluation/``), ``evaluation.csv`` / ``evaluation.json``,
plots under ``figures/evaluation/`` and a report section.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from pipeline.errors import CnnvisError
from pipeline.evaluation.faithfulness import class_probability_fn, deletion_insertion
from pipeline.evaluation.localization import localization_scores, pointing_game_valid
from pipeline.evaluation.sanity import merge_cascades, parameter_layers, randomization_cascade
from pipeline.report.html import Figure, Section, Table
from pipeline.visualization.context import VisContext
from pipeline.visualization.inputs import Selection
from pipeline.visualization.layers import last_conv_name
from pipeline.visualization.methods import METHODS, make_method, method_params, needs_layer

COLUMNS = ["method", "head", "layer", "pointing_game", "energy_in_mask", "mask_share", "topk_iou",
           "deletion_auc", "deletion_auc_random", "insertion_auc", "insertion_auc_random",
           "sanity_top_layer", "sanity_last_step", "sanity_pass", "blank_maps", "seconds"]


def evaluation_sample(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """``count`` test indices in a seeded random order, so every class is represented in
    proportion -- in the whole sample and in each prefix of it. The job scores faithfulness and
    the sanity check on prefixes, and test sets are often stored class by class: a sorted sample
    would hand those checks the first classes only."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(len(labels), generator=g)[:count]


class EvaluateJob:
    name = "evaluate"

    def __init__(self, ctx: VisContext, cfg: DictConfig):
        self.ctx, self.cfg, self.seed = ctx, cfg.evaluate, int(cfg.get("seed", 0))
        methods = list(self.cfg.methods)
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise CnnvisError(f"evaluate.methods: unknown {', '.join(unknown) or '(empty)'}; valid: {', '.join(METHODS)}")
        self.methods = methods
        from pipeline.visualization.jobs import requested_layers

        requested = requested_layers(ctx, cfg)
        if requested and len(requested) > 1:
            raise CnnvisError(f"job=evaluate scores one layer at a time; got layer={requested}")
        self.layer = requested[0] if requested else last_conv_name(ctx.net)
        heads = list(ctx.head_classes)
        head = self.cfg.get("head")
        if head is not None:
            if head not in heads:
                raise CnnvisError(f"evaluate.head={head} does not exist; valid heads: {', '.join(heads)}")
            heads = [head]
        self.heads = heads
        for key in ("num_images", "faithfulness_images", "sanity_images", "sanity_repeats", "deletion_steps"):
            if int(self.cfg[key]) < 0 or (key in ("num_images", "sanity_repeats", "deletion_steps") and int(self.cfg[key]) < 1):
                raise CnnvisError(f"evaluate.{key}={self.cfg[key]} is invalid: it must be a positive integer")
        self.params = method_params(cfg, methods)

    # -- one method ---------------------------------------------------------------------------
    def _maps(self, net, method: str, x: torch.Tensor, targets: dict | None, heads: list[str], batch_size: int):
        layer = self.layer if needs_layer(method) else None
        with make_method(method, net, layer, heads=heads if self.ctx.multihead else None,
                         batch_size=batch_size, **self.params[method]) as m:
            out = m(x, targets if self.ctx.multihead else (targets or {}).get("class"))
        return out if isinstance(out, dict) else {"class": out}

    def run(self, sel: Selection, writer, run_dir: Path, fig_dir: Path, batch_size: int) -> Section:
        from pipeline.rendering.evaluation_plots import plot_cascade, plot_curves, plot_scores

        test = self.ctx.datamodule.test
        idx = evaluation_sample(test.labels, int(self.cfg.num_images), self.seed)
        x = (test.images[idx].float() / 255).to(self.ctx.device)
        masks = test.masks[idx] if test.masks is not None else None
        n_faith = min(int(self.cfg.faithfulness_images), len(idx))
        n_sanity = min(int(self.cfg.sanity_images), len(idx))
        net = self.ctx.net
        rows, curves, cascades, random_cache = [], {}, {}, {}
        grp = writer.file.require_group("evaluation")
        grp.create_dataset("indices", data=idx.numpy())
        for method in tqdm(self.methods, desc="evaluate methods", unit="method"):
            start = time.perf_counter()
            results = self._maps(net, method, x, None, self.heads, batch_size)
            elapsed = time.perf_counter() - start
            for head, res in results.items():
                maps = res.maps.float().cpu()
                row = {"method": method, "head": head, "layer": self.layer if needs_layer(method) else "input",
                       "seconds": elapsed / len(results)}
                g = grp.require_group(f"{method}/{head}")
                g.create_dataset("maps", data=maps[:64].numpy(), compression="gzip")  # the first 64 maps
                g.create_dataset("targets", data=res.targets.numpy())
                row["blank_maps"] = float((~pointing_game_valid(maps)).float().mean())  # no peak: all zero / constant
                if masks is not None:
                    loc = localization_scores(maps, masks, dilate=1)
                    for k in ("pointing_game", "energy_in_mask", "mask_share", "topk_iou"):
                        v = loc[k].float()
                        g.create_dataset(k, data=v.numpy())
                        row[k] = float(v.mean())
                if n_faith:
                    score = class_probability_fn(net, res.targets.to(self.ctx.device),
                                                 head if self.ctx.multihead else None)
                    xf, mf = x[:n_faith], maps[:n_faith].to(self.ctx.device)
                    steps = int(self.cfg.deletion_steps)
                    for mode in ("deletion", "insertion"):
                        c, auc = deletion_insertion(score, xf, mf, steps=steps, mode=mode, order="map",
                                                    seed=self.seed, batch_size=batch_size)
                        key = (head, mode, tuple(res.targets[:n_faith].tolist()))
                        if key not in random_cache:  # the random order does not depend on the method
                            random_cache[key] = deletion_insertion(score, xf, mf, steps=steps, mode=mode,
                                                                   order="random", seed=self.seed, batch_size=batch_size)
                        rc, rauc = random_cache[key]
                        row[f"{mode}_auc"], row[f"{mode}_auc_random"] = float(auc.mean()), float(rauc.mean())
                        curves.setdefault((head, mode), {})[method] = c.cpu().numpy()
                        curves[(head, mode)]["random order"] = rc.cpu().numpy()
                        g.create_dataset(f"{mode}_curves", data=c.cpu().numpy())
                if n_sanity:
                    steps = self._sanity(method, head, x[:n_sanity], res.targets[:n_sanity], batch_size)
                    cascades.setdefault(head, {})[method] = steps
                    top = steps[1]["mean"] if len(steps) > 1 else float("nan")
                    row["sanity_top_layer"], row["sanity_last_step"] = top, steps[-1]["mean"]
                    row["sanity_pass"] = bool(top < float(self.cfg.sanity_threshold))
                    row["sanity_top_layer_each"] = steps[1]["run_means"] if len(steps) > 1 else []
                    g.create_dataset("sanity_spearman", data=np.stack([s["spearman"].numpy() for s in steps]))
                    g.attrs["sanity_layers"] = json.dumps([s["layer"] for s in steps])
                    g.attrs["sanity_repeats"] = int(self.cfg.sanity_repeats)  # spearman rows: repeat-major
                rows.append(row)
        self._write_tables(rows, run_dir)
        bars = print_bars(rows, self.ctx.dataset_name)
        if bars:
            print(bars)
        figures = self._plots(rows, curves, cascades, x, fig_dir, plot_scores, plot_curves, plot_cascade)
        return Section("Measured explanations",
                       paragraphs=[f"{len(idx)} test images (seeded sample), layer {self.layer} for the layer methods; "
                                   f"deletion/insertion on the first {n_faith}, the randomization check on the first "
                                   f"{n_sanity} ({int(self.cfg.sanity_repeats)} random re-initializations each). Full table: evaluation.csv / evaluation.json."],
                       observations=self.observations(rows, masks is not None),
                       tables=[Table("Scores per method and head",
                                     [c.replace("_", " ") for c in COLUMNS],
                                     [[r.get(c) for c in COLUMNS] for r in rows])],
                       figures=figures)

    def _sanity(self, method: str, head: str, x: torch.Tensor, targets: torch.Tensor, batch_size: int) -> list[dict]:
        net = self.ctx.net
        prefixes = ("features", f"heads.{head}") if self.ctx.multihead else None
        layers = parameter_layers(net, prefixes=prefixes)

        def attribute(model, xb, t):
            out = self._maps(model, method, xb, {head: t}, [head], batch_size)
            return out[head].maps

        runs = [randomization_cascade(net, attribute, x, targets.to(x.device), seed=self.seed + 1000 * r, layers=layers)
                for r in range(int(self.cfg.sanity_repeats))]
        return merge_cascades(runs)

    @staticmethod
    def _write_tables(rows: list[dict], run_dir: Path) -> None:
        with open(run_dir / "evaluation.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({c: r.get(c) for c in COLUMNS})
        (run_dir / "evaluation.json").write_text(json.dumps(rows, indent=2))

    def _plots(self, rows, curves, cascades, x, fig_dir: Path, plot_scores, plot_curves, plot_cascade) -> list[Figure]:
        d = fig_dir / "evaluation"
        figs = []
        has = lambda k: any(r.get(k) is not None for r in rows)  # noqa: E731
        if has("pointing_game"):
            figs.append(Figure(plot_scores(rows, "pointing_game", d / "pointing_game.png", "Pointing game (peak on the line)"),
                               "pointing game per method and head"))
            share = float(np.mean([r["mask_share"] for r in rows]))
            figs.append(Figure(plot_scores(rows, "energy_in_mask", d / "energy_in_mask.png",
                                           "Share of the map's mass on the line", chance=share),
                               "energy in mask; dashed: the line's share of the image (chance)"))
        for (head, mode), by_method in curves.items():
            figs.append(Figure(plot_curves(by_method, d / f"{mode}_{head}.png", f"{mode} curves, head {head}"),
                               f"{mode}: mean target probability as pixels are {'removed' if mode == 'deletion' else 'inserted'} "
                               f"in each map's order (dashed: random order), head {head}"))
        for head, by_method in cascades.items():
            steps = next(iter(by_method.values()))
            names = [s["layer"] for s in steps]
            maps = {m: [s["maps"][0].cpu().numpy() for s in st] for m, st in by_method.items()}
            figs.append(Figure(plot_cascade(x[0].cpu().numpy(), maps, names, d / f"cascade_{head}.png",
                                            f"randomization cascade, head {head} (top layer first)"),
                               f"sanity check: maps of image 0 as the layers are re-initialized from the top, head {head}"))
        return figs

    def observations(self, rows: list[dict], has_masks: bool) -> list[str]:
        out = []
        for r in rows:
            name = r["method"] + ("" if r["head"] == "class" else f" ({r['head']})")
            if r.get("blank_maps"):
                out.append(f"{name}: {r['blank_maps']:.1%} of the maps are blank (no positive evidence for the "
                           f"explained class at this layer); they count as pointing-game misses, and their "
                           f"randomization correlation is 0.")
            if has_masks and r.get("pointing_game") is not None:
                out.append(f"{name}: peak on the line in {r['pointing_game']:.1%} of the images; "
                           f"{r['energy_in_mask']:.1%} of the map's mass on the line, which covers {r['mask_share']:.1%} "
                           f"of the image ({r['energy_in_mask'] / max(r['mask_share'], 1e-12):.1f}x chance).")
            if r.get("deletion_auc") is not None:
                gap = r["deletion_auc_random"] - r["deletion_auc"]
                verdict = ("faithful: removing its top pixels hurts sooner" if gap > 0.01 else
                           "about the same as random: the target probability hardly moves" if abs(gap) <= 0.01 else
                           "worse than random")
                out.append(f"{name}: deletion AUC {r['deletion_auc']:.4f} vs {r['deletion_auc_random']:.4f} for a random "
                           f"order ({verdict}).")
            if r.get("sanity_pass") is not None:
                out.append(f"{name}: rank correlation with the trained maps after randomizing the top layer "
                           f"{r['sanity_top_layer']:.2f} -> {'passes' if r['sanity_pass'] else 'FAILS'} the sanity check.")
        return out


def print_bars(rows: list[dict], dataset: str) -> str:
    """The issue's bars, as lines of text (the job prints them; the benchmark reuses them)."""
    lines = []
    by = {(r["method"], r["head"]): r for r in rows}
    angle = by.get(("gradcam", "angle"))
    if angle and angle.get("pointing_game") is not None:
        lines.append(f"bar: Grad-CAM pointing game at {angle.get('layer')}, angle head >= 95%: {angle['pointing_game']:.1%} "
                     f"({'ok' if angle['pointing_game'] >= 0.95 else 'MISSED'}); energy in mask "
                     f"{angle['energy_in_mask']:.1%} vs mask share {angle['mask_share']:.1%}")
    for (m, h), r in by.items():
        if m == "gradcam" and r.get("deletion_auc") is not None:
            gap = r["deletion_auc_random"] - r["deletion_auc"]
            verdict = "ok" if gap > 1e-3 else "MISSED (the same as random)" if gap >= -1e-3 else "MISSED"
            lines.append(f"bar: Grad-CAM deletion AUC below random on {dataset} ({h}): {r['deletion_auc']:.4f} vs "
                         f"{r['deletion_auc_random']:.4f} random, {verdict}")
        if m == "gradcam" and r.get("sanity_top_layer") is not None:
            lines.append(f"bar: Grad-CAM rank correlation after randomizing the top layer < 0.5 ({h}): "
                         f"{r['sanity_top_layer']:.2f} {'ok' if r['sanity_top_layer'] < 0.5 else 'MISSED'}")
    return "\n".join(lines)
