"""The three visualize jobs. Each job is built from the run's context and config (which
resolves and checks its layers, targets and heads, so bad input fails before any work), then
``run(selection, writer, fig_dir)`` computes, stores into the run's HDF5 file, renders its
figures and returns the report :class:`Section` with the numbers and observations.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from pipeline.errors import CnnvisError
from pipeline.models.multihead import head_class_names
from pipeline.report.html import Figure, Section, Table
from pipeline.visualization.context import VisContext
from pipeline.visualization.inputs import Selection
from pipeline.visualization.layers import conv_layer_names, last_conv_name, resolve_layers


def requested_layers(ctx: VisContext, cfg: DictConfig) -> list[str] | None:
    """The run's ``layer=`` as a list of names, checked against the model (an unknown name
    raises UnknownLayerError listing the valid ones); None when the user chose no layer."""
    spec = cfg.get("layer")
    if spec is None:
        return None
    names = [spec] if isinstance(spec, str) else [str(s) for s in OmegaConf.to_container(spec) if s is not None]
    resolve_layers(ctx.net, names)
    return names or None


def _safe(name: str) -> str:
    return name.replace("/", "_")


class ActivationsJob:
    name = "activations"

    def __init__(self, ctx: VisContext, cfg: DictConfig):
        self.ctx, self.cfg = ctx, cfg.activations
        requested = requested_layers(ctx, cfg)
        if requested:
            self.layers = requested
        else:
            types = set(self.cfg.layer_types)
            self.layers = [r["name"] for r in ctx.layer_rows
                           if r["type"] in types and r["output_shape"] and len(r["output_shape"]) == 3]
        if not self.layers:
            raise CnnvisError("activations: no layer to show; pass layer=<name> (see the run's model_summary.txt)")

    def run(self, sel: Selection, writer, run_dir: Path, fig_dir: Path, batch_size: int) -> Section:
        from pipeline.rendering.figures import render_activation_figure
        from pipeline.visualization.activations import activation_stats, record_activations

        acts, _ = record_activations(self.ctx.net, sel.images.to(self.ctx.device), self.layers,
                                     batch_size=batch_size, device="cpu")
        rows, stats_by_layer, subsections = [], {}, []
        for layer in self.layers:
            stats = activation_stats(acts[layer])
            stats_by_layer[layer] = stats
            writer.write_activations(layer, acts[layer], stats)
            rows.append([layer, "x".join(map(str, acts[layer].shape[1:])), stats["sparsity"], stats["mean"],
                         stats["max"], stats["dead_channels"]])
        jobs = [(i, layer) for layer in self.layers for i in range(len(sel))]
        figures: dict[str, list[Figure]] = {layer: [] for layer in self.layers}
        for i, layer in tqdm(jobs, desc="activation figures", unit="fig"):
            path = fig_dir / "activations" / _safe(layer) / f"image{i:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            a = acts[layer][i]
            render_activation_figure(sel.images[i], a, path,
                                     f"{layer}: {a.shape[0]} channels, image {i} ({sel.sources[i]})",
                                     cmap=self.cfg.cmap)
            figures[layer].append(Figure(path, f"{layer}, image {i} ({sel.sources[i]})"))
        for layer in self.layers:
            s = stats_by_layer[layer]
            subsections.append(Section(f"Layer {layer}", paragraphs=[
                f"{acts[layer].shape[1]} channels; {s['sparsity']:.1%} of the activations are exactly zero, "
                f"mean {s['mean']:.3g}."], figures=figures[layer]))
        return Section("Intermediate activations",
                       paragraphs=["Each figure shows one image (left) and every channel of one layer's output as a "
                                   "tile (right), all tiles on one colour scale. Stored in visualization.h5 under "
                                   "activations/<layer>."],
                       observations=self.observations(stats_by_layer),
                       tables=[Table("Per-layer numbers over the selected images",
                                     ["layer", "shape (C x H x W)", "sparsity (zeros)", "mean", "max", "dead channels"],
                                     rows)],
                       subsections=subsections)

    def observations(self, stats: dict[str, dict]) -> list[str]:
        out = []
        relu = [(n, s["sparsity"]) for n, s in stats.items() if self._type(n) == "ReLU"]
        if len(relu) >= 2:
            seq = " -> ".join(f"{n} {v:.0%}" for n, v in relu)
            rising = all(b[1] >= a[1] for a, b in zip(relu, relu[1:]))
            out.append(f"Activations {'grow sparser' if rising else 'do not grow steadily sparser'} with depth "
                       f"(share of zeros after each ReLU: {seq}).")
        dead = [n for n, s in stats.items() if s["dead_channels"] > 0]
        if dead:
            out.append("Layers with channels that stay zero for every shown image: " +
                       ", ".join(f"{n} ({stats[n]['dead_channels']:.0%})" for n in dead) + ".")
        return out

    def _type(self, name: str) -> str:
        return next((r["type"] for r in self.ctx.layer_rows if r["name"] == name), "")


class FiltersJob:
    name = "filters"

    def __init__(self, ctx: VisContext, cfg: DictConfig):
        self.ctx, self.cfg, self.seed = ctx, cfg.filters, int(cfg.get("seed", 0))
        requested = requested_layers(ctx, cfg)
        convs = conv_layer_names(ctx.net)
        if requested:
            bad = [n for n in requested if n not in convs]
            if bad:
                raise CnnvisError(f"filters: {', '.join(bad)} is not a convolution layer; filter patterns are "
                                  f"computed for convolution layers: {', '.join(convs)}")
            self.layers = requested
        else:
            self.layers = convs
        for key in ("steps", "top"):
            if int(self.cfg[key]) < 1:
                raise CnnvisError(f"filters.{key}={self.cfg[key]} is invalid: it must be a positive integer")
        if float(self.cfg.step_size) <= 0:
            raise CnnvisError(f"filters.step_size={self.cfg.step_size} is invalid: it must be positive")

    def run(self, sel: Selection, writer, run_dir: Path, fig_dir: Path, batch_size: int) -> Section:
        from pipeline.rendering.figures import render_filter_grid
        from pipeline.visualization.filters import FilterVisualizer

        c = self.cfg
        rows, subsections, results = [], [], {}
        for layer in tqdm(self.layers, desc="filter layers", unit="layer"):
            vis = FilterVisualizer(self.ctx.net, layer, self.ctx.input_shape)
            n = vis.n_filters
            filters = list(range(min(n, int(c.max_filters)))) if c.max_filters else None
            res = vis(filters, steps=int(c.steps), step_size=float(c.step_size), seed=self.seed,
                      noise=float(c.noise), jitter=int(c.jitter), decay=float(c.decay),
                      blur_every=int(c.blur_every), blur_sigma=float(c.blur_sigma), progress=True)
            results[layer] = res
            writer.write_filters(layer, res.patterns, res.scores, res.start_scores, res.filter_indices, res.ranking,
                                 attrs={k: c[k] for k in ("steps", "step_size", "noise", "jitter", "decay",
                                                          "blur_every", "blur_sigma")})
            d = fig_dir / "filters"
            d.mkdir(parents=True, exist_ok=True)
            all_path = render_filter_grid(res.patterns, res.scores, res.filter_indices, d / f"{_safe(layer)}_all.png",
                                          f"{layer}: all {len(res)} filter patterns, ranked by mean activation")
            k = min(int(c.top), len(res))
            top_path = render_filter_grid(res.patterns, res.scores, res.filter_indices, d / f"{_safe(layer)}_top{k}.png",
                                          f"{layer}: top {k} filters", top=k)
            best = int(res.filter_indices[res.ranking[0]])
            rows.append([layer, len(res), float(res.start_scores.mean()), float(res.scores.mean()),
                         best, float(res.scores.max())])
            subsections.append(Section(f"Layer {layer}", figures=[
                Figure(top_path, f"{layer}: the {k} filters reaching the highest mean activation"),
                Figure(all_path, f"{layer}: all {len(res)} filters, ranked")]))
        return Section("Filter patterns",
                       paragraphs=[f"The input that maximizes each filter's mean response, found by {c.steps} steps of "
                                   f"gradient ascent (RMS-normalized steps of {c.step_size}) from a grey image with "
                                   f"seeded noise, all filters of a layer optimized together as one batch. "
                                   f"Stored under filters/<layer>."],
                       observations=self.observations(results),
                       tables=[Table("Mean activation reached per layer",
                                     ["layer", "filters", "mean start score", "mean final score", "best filter",
                                      "best score"], rows)],
                       subsections=subsections)

    def observations(self, results) -> list[str]:
        out = []
        for layer, res in results.items():
            gain = (res.scores - res.start_scores)
            raised = float((gain > 0).float().mean())
            out.append(f"{layer}: gradient ascent raised the response of {raised:.0%} of the filters "
                       f"(mean {float(res.start_scores.mean()):.3g} -> {float(res.scores.mean()):.3g}).")
        first = next(iter(results.values()), None)
        if first is not None and first.patterns.shape[1] == 3:
            p = first.patterns - first.patterns.mean(dim=(2, 3), keepdim=True)
            energy = p.pow(2).mean(dim=(2, 3))  # [F, 3] contrast per channel
            share = energy.max(1).values / energy.sum(1).clamp_min(1e-12)
            colour = int((share > 0.5).sum())
            out.append(f"First layer ({first.layer}): {colour} of {len(first)} patterns put most of their contrast "
                       f"into one colour channel, i.e. act as colour detectors.")
        if first is not None:
            p = first.patterns
            dx = (p[..., :, 1:] - p[..., :, :-1]).abs().mean()
            dy = (p[..., 1:, :] - p[..., :-1, :]).abs().mean()
            out.append(f"First layer ({first.layer}): mean neighbouring-pixel contrast of the patterns is "
                       f"{float(dx):.3f} horizontally and {float(dy):.3f} vertically (oriented edge/stripe patterns "
                       f"give high values in one direction).")
        return out


class GradCAMJob:
    name = "gradcam"

    def __init__(self, ctx: VisContext, cfg: DictConfig):
        self.ctx, self.cfg = ctx, cfg.gradcam
        self.layers = requested_layers(ctx, cfg) or [last_conv_name(ctx.net)]
        heads = list(ctx.head_classes)
        head = self.cfg.get("head")
        if head is not None:
            if not ctx.multihead:
                raise CnnvisError(f"gradcam.head={head}: model {ctx.model_name} has a single output; drop gradcam.head")
            if head not in heads:
                raise CnnvisError(f"gradcam.head={head} does not exist; valid heads of {ctx.model_name}: {', '.join(heads)}")
            heads = [head]
        self.heads = heads
        target = self.cfg.get("target")
        if target is not None:
            for h in heads:
                k = ctx.head_classes[h]
                if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < k:
                    where = f" of head {h}" if ctx.multihead else ""
                    raise CnnvisError(f"gradcam.target={target} is out of range{where}: valid classes are 0..{k - 1}")
        self.target = target
        from pipeline.visualization.methods import METHODS, method_params

        self.methods = list(cfg.job.get("methods") or [self.cfg.get("method", "gradcam")])
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise CnnvisError(f"unknown attribution method {', '.join(unknown)}; valid: {', '.join(METHODS)}")
        self.params = method_params(cfg, self.methods)

    def run(self, sel: Selection, writer, run_dir: Path, fig_dir: Path, batch_size: int) -> Section:
        from pipeline.visualization.methods import make_method, needs_layer

        x = sel.images.to(self.ctx.device)
        subsections, rows, notes = [], [], []
        loc_rows = []
        for method in self.methods:
            for layer in (self.layers if needs_layer(method) else ["input"]):
                with make_method(method, self.ctx.net, None if layer == "input" else layer,
                                 heads=self.heads if self.ctx.multihead else None, batch_size=batch_size,
                                 **self.params[method]) as cam:
                    out = cam(x, self.target)
                results = out if isinstance(out, dict) else {"class": out}
                for head, res in results.items():
                    self._render(method, head, layer, res, sel, writer, fig_dir, rows, notes, loc_rows, subsections)
        tables = [Table("Explained class per image", ["method", "head", "layer", "image", "source",
                                                      "target (explained)", "probability", "true class"], rows)]
        observations = list(notes)
        if loc_rows:
            tables.append(Table("Heatmap mass on the line (ground-truth mask)",
                                ["method", "head", "layer", "energy on the line", "line's share of the image",
                                 "ratio to chance", "pointing game (peak on the line, 1 px tolerance)"], loc_rows))
            for method, head, layer, energy, share, ratio, hits in loc_rows:
                observations.append(f"{method}, {head} at {layer}: {energy:.0%} of the heatmap mass lies on the line, which "
                                    f"covers {share:.1%} of the image ({ratio:.1f}x chance); the peak is on the line "
                                    f"in {hits:.0%} of the images.")
        title = "Class-activation heatmaps (Grad-CAM)" if self.methods == ["gradcam"] else \
            f"Attribution maps ({', '.join(self.methods)})"
        return Section(title,
                       paragraphs=["Grad-CAM at the chosen layer: channel weights are the spatial mean of the target "
                                   "score's gradient, the map is the ReLU of the weighted channel sum, upsampled "
                                   "bilinearly to the input and laid over it. Each figure: input, the raw map at the "
                                   "layer's resolution, the overlay. Stored under gradcam/<head>/<layer>."],
                       observations=observations, tables=tables, subsections=subsections)

    def _render(self, method, head, layer, res, sel, writer, fig_dir, rows, notes, loc_rows, subsections) -> None:
        from pipeline.rendering.figures import render_gradcam_figure, render_gradcam_sheet

        names = head_class_names(head, self.ctx.head_classes[head], self.ctx.class_names)
        attrs = {"notes": res.notes()} if res.notes() else None
        writer.write_gradcam(head, layer, res.maps, res.maps_normalized, res.layer_maps, res.targets, res.probs,
                             attrs=attrs, method=method)
        notes += [f"{method} at {layer}: {n}" for n in res.notes()]
        titles, figs = [], []
        base = fig_dir / "gradcam" if method == "gradcam" else fig_dir / "attribution" / _safe(method)
        d = base / _safe(head) / _safe(layer)
        d.mkdir(parents=True, exist_ok=True)
        for i in tqdm(range(len(sel)), desc=f"{method} figures ({head}, {layer})", unit="fig"):
            t = int(res.targets[i])
            title = f"{head}: {names[t]} (p={float(res.probs[i]):.2f})"
            titles.append(title)
            path = render_gradcam_figure(sel.images[i], res.maps_normalized[i], res.layer_maps[i],
                                         d / f"image{i:02d}.png", f"{method} {title} - image {i} ({sel.sources[i]})",
                                         alpha=float(self.cfg.alpha), cmap=self.cfg.cmap)
            figs.append(Figure(path, f"image {i} ({sel.sources[i]}): {title}"))
        sheet = render_gradcam_sheet(sel.images, res.maps_normalized, titles, d / "sheet.png",
                                     alpha=float(self.cfg.alpha), cmap=self.cfg.cmap, title=f"{method} at {layer}")
        for i in range(len(sel)):
            rows.append([method, head, layer, i, sel.sources[i], names[int(res.targets[i])],
                         float(res.probs[i]), self._true_name(head, int(sel.labels[i]), names)])
        if sel.masks is not None:
            loc_rows.append([method, head, layer, *self._localization(res.maps, sel.masks)])
        where = (f"head {head}, " if self.ctx.multihead else "") + f"layer {layer}"
        subsections.append(Section(f"{method}: {where}", figures=[Figure(sheet, f"{method}, all images"), *figs]))

    def _true_name(self, head: str, label: int, names: Sequence[str]) -> str:
        if label < 0:
            return "unknown"
        if head in ("class",):
            return names[label]
        from pipeline.training.lit_module import split_lines_label

        part = split_lines_label(torch.tensor([label]), self.ctx.head_classes)[head]
        return names[int(part)]

    @staticmethod
    def _localization(maps: torch.Tensor, masks: torch.Tensor) -> list[float]:
        from pipeline.evaluation.localization import energy_in_mask, mask_share, pointing_game

        energy = float(energy_in_mask(maps, masks).mean())
        share = float(mask_share(masks).mean())
        hits = float(pointing_game(maps, masks, dilate=1).float().mean())
        return [energy, share, energy / max(share, 1e-12), hits]


def _evaluate_job():
    from pipeline.evaluation.job import EvaluateJob  # imports the methods registry; only when asked for

    return EvaluateJob


def _probe_job():
    from pipeline.evaluation.probe import ProbeJob  # the shortcut probe; only when asked for

    return ProbeJob


JOBS = {"activations": ActivationsJob, "filters": FiltersJob, "gradcam": GradCAMJob,
        "evaluate": lambda ctx, cfg: _evaluate_job()(ctx, cfg),
        "probe": lambda ctx, cfg: _probe_job()(ctx, cfg)}
