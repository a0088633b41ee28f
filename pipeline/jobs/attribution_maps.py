"""``job=gradcam`` and ``job=attribution``: heatmaps of one or several attribution methods laid
over the run's images (config: ``gradcam.*`` in conf/job/gradcam.yaml, ``attribution.*`` in
conf/job/attribution.yaml; the methods come from ``methods``, conf/methods/).

For each method, layer (``"input"`` for the input-gradient methods) and head: the maps, a
figure per image (input, map at the layer's resolution, overlay), a sheet of all images (an input
column beside the overlays), the explained class per image and, where the dataset has line masks,
the share of the map's mass on the line and the pointing game (the masks outlined on the figures).
A multi-head model also gets one figure per image with the input and every head's map side by side
(``attribution/<method>/all_heads/<layer>/``), shown first. Every tile names its head and class.
Class 0 of a one-output head (short, thin, red) is explained as ``-logit``: the evidence for it
over class 1, which can lie off the line; those tiles and the report say so (docs/gradcam.md).
Stored under ``attribution/<method>/<head>/<layer>``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.attribution.result import AttributionResult
from pipeline.data.lines_labels import head_class_names, split_label
from pipeline.errors import CnnvisError
from pipeline.jobs.base import safe_name
from pipeline.jobs.method_choice import build_method, chosen_methods, needs_layer
from pipeline.jobs.target_choice import TargetSpec, head_logits, is_target_list, parse_targets
from pipeline.report.sections import Figure, Section, Table
from pipeline.visualization.class_words import image_words
from pipeline.visualization.context import VisContext
from pipeline.visualization.inputs import Selection
from pipeline.visualization.layers import last_conv_name

__all__ = ["AttributionMapsJob", "localization"]


@dataclass
class MapSet:
    """The maps of one method, head and layer."""
    method: str
    head: str
    layer: str
    result: AttributionResult
    target: str | None = None   # the gradcam.target entry (top2, class3) when a list was given, else None


@dataclass
class AttributionMaps:
    images: Selection
    maps: list[MapSet]


class AttributionMapsJob:
    per_target = False   # gradcam.target given as a list: maps, figures and HDF5 groups per target
    def __init__(self, ctx: VisContext, layers: list[str] | None, seed: int, *, method: Any, catalog: dict[str, Any],
                 target: Any = None, head: str | None = None, alpha: float, cmap: str,
                 scale: str = "per_image"):
        """``method``: a name in ``catalog`` (the run's ``methods``) or a list of names; ``target``: one
        class for every image, ``topK`` (each image's K-th most probable class) or a list of those
        (pipeline/jobs/target_choice.py; None: each image's prediction); ``head``: one head (None: every head);
        ``scale``: per_image (each map min-max to [0, 1]) or shared (the raw maps of a figure over their
        common maximum: a weak map stays faint)."""
        if scale not in SCALES:
            raise CnnvisError(f"gradcam.scale={scale} is not one of: {', '.join(SCALES)}")
        self.ctx, self.alpha, self.cmap, self.scale = ctx, float(alpha), cmap, scale
        self.methods = chosen_methods(method, catalog, "gradcam.method")
        self.layers = layers or [last_conv_name(ctx.net)]
        heads = list(ctx.head_classes)
        if head is not None:
            if not ctx.multihead:
                raise CnnvisError(f"gradcam.head={head}: model {ctx.model_name} has a single output; drop gradcam.head")
            if head not in heads:
                raise CnnvisError(f"gradcam.head={head} does not exist; valid heads of {ctx.model_name}: {', '.join(heads)}")
            heads = [head]
        self.heads = heads
        self.targets = parse_targets(target, {h: ctx.head_classes[h] for h in heads}, ctx.multihead)
        self.per_target = is_target_list(target)

    def compute(self, images: Selection, batch_size: int) -> AttributionMaps:
        x = images.images.to(self.ctx.device)
        probs = None
        if any(s.rank is not None for s in self.targets):   # topK: ranked by the model's probabilities
            # imported here: lit_module imports pytorch_lightning, which pipeline/config.py must not pull in
            from pipeline.training.lit_module import head_probabilities

            logits = head_logits(self.ctx.net, images.images, batch_size, self.ctx.device)
            probs = {h: head_probabilities(logits[h]) for h in self.heads}
        out = []
        for name, factory in self.methods.items():
            for layer in (self.layers if needs_layer(factory) else ["input"]):
                with build_method(factory, self.ctx.net, layer, self.heads if self.ctx.multihead else None,
                                  batch_size) as method:
                    for spec in self.targets:
                        res = method(x, self._given(spec, probs))
                        label = spec.label if self.per_target else None
                        for head, r in (res if isinstance(res, dict) else {"class": res}).items():
                            out.append(MapSet(name, head, layer, r, label))
        return AttributionMaps(images, out)

    def _given(self, spec: TargetSpec, probs):
        """What the method's call takes for ``spec``: None (prediction), a class, or classes per head."""
        if spec.rank is None:
            return spec.index
        classes = spec.classes(probs)
        return classes if self.ctx.multihead else classes["class"]

    def store(self, result: AttributionMaps, writer, run_dir: Path) -> None:
        for m in result.maps:
            notes = m.result.notes()
            writer.write_attribution(m.method, m.head, m.layer, m.result.maps, m.result.maps_normalized,
                                     m.result.layer_maps, m.result.targets, m.result.probs,
                                     attrs={"notes": notes} if notes else None, target=m.target)

    def render(self, result: AttributionMaps, fig_dir: Path) -> list[Section]:
        if self.per_target:
            return self._render_per_target(result, fig_dir)
        from pipeline.rendering.figures import render_gradcam_figure, render_gradcam_sheet
        from pipeline.rendering.parallel import render_all

        sel, calls, captions = result.images, [], []
        names = self._image_names(sel)
        masks = sel.masks
        for m in result.maps:  # every figure of every map set, drawn at once (render.workers)
            d = fig_dir / "attribution" / safe_name(m.method) / safe_name(m.head) / safe_name(m.layer)
            flags, shown = map_flags(m.result.maps), display_maps(m.result, self.scale)
            titles = [t + (f"\n{f}" if f else "") for t, f in zip(self._titles(m), flags)]
            where = (f"head {m.head}, " if self.ctx.multihead else "") + f"layer {m.layer}"
            calls.append((render_gradcam_sheet, (sel.images, shown, titles, d / "sheet.png"),
                          {"alpha": self.alpha, "cmap": self.cmap, "masks": masks, "input_titles": names,
                           "title": f"{m.method}, {where} ({self.scale.replace('_', '-')} scale)"}))
            captions.append(f"{m.method}, {where}: all images")
            notes = self._binary_notes(m)
            for i in range(len(sel)):
                calls.append((render_gradcam_figure,
                              (sel.images[i], shown[i], m.result.layer_maps[i], d / f"image{i:02d}.png",
                               f"{m.method} {titles[i]} - image {i} ({sel.sources[i]})".replace("\n", "; ")),
                              {"alpha": self.alpha, "cmap": self.cmap, "mask": None if masks is None else masks[i],
                               "input_title": names[i], "note": notes[i]}))
                captions.append(f"image {i} ({sel.sources[i]}): {titles[i]}".replace("\n", "; ") +
                                (f". {notes[i]}" if notes[i] else ""))
        heads_calls, heads_headings = self._all_heads_calls(result, fig_dir, names)
        paths = render_all(calls + [c for cs in heads_calls for c in cs], desc="attribution figures")
        figures = [Figure(path, caption) for path, caption in zip(paths, captions)]
        per_set = len(sel) + 1   # the sheet, then the images' figures
        sections = [Section(f"{m.method}: " + (f"head {m.head}, " if self.ctx.multihead else "") + f"layer {m.layer}",
                            figures=figures[k * per_set:(k + 1) * per_set]) for k, m in enumerate(result.maps)]
        rest, first = paths[len(calls):], []
        for heading, cs in zip(heads_headings, heads_calls):   # the heads side by side: first
            first.append(Section(heading, figures=[Figure(p, f"{names[i]} ({sel.sources[i]}): every head")
                                                   for i, p in enumerate(rest[:len(cs)])]))
            rest = rest[len(cs):]
        return first + sections

    def _all_heads_calls(self, result: AttributionMaps, fig_dir: Path, names: list[str]):
        """A multi-head model: per method and layer, one figure per image with the input and every head's
        map side by side (the point of the multi-head network). ``(calls per group, headings)``."""
        from pipeline.rendering.figures import render_gradcam_sheet

        if not self.ctx.multihead:
            return [], []
        sel, groups = result.images, {}
        for m in result.maps:
            groups.setdefault((m.method, m.layer), []).append(m)
        calls, headings = [], []
        for (method, layer), sets in groups.items():
            if len(sets) < 2:
                continue
            d = fig_dir / "attribution" / safe_name(method) / "all_heads" / safe_name(layer)
            shown = [display_maps(m.result, self.scale) for m in sets]
            titles = [self._titles(m) for m in sets]
            group = []
            for i in range(len(sel)):
                group.append((render_gradcam_sheet,
                              (sel.images[i:i + 1].repeat(len(sets), 1, 1, 1), torch.stack([s[i] for s in shown]),
                               [t[i] for t in titles], d / f"image{i:02d}.png"),
                              {"alpha": self.alpha, "cmap": self.cmap, "ncols": len(sets),
                               "input_titles": [names[i]] * len(sets),
                               "masks": None if sel.masks is None else sel.masks[i:i + 1].repeat(len(sets), 1, 1),
                               "title": f"{method} at {layer}, image {i} ({sel.sources[i]}): every head "
                                        f"({self.scale.replace('_', '-')} scale)"}))
            calls.append(group)
            headings.append(f"{method}: every head side by side, layer {layer}")
        return calls, headings

    def _image_names(self, sel: Selection) -> list[str]:
        """Per image ``image <i>: <its class in words>`` (the input tiles' labels)."""
        return [f"image {i}: " + image_words(int(label), self.ctx.class_names, self.ctx.dataset_name)
                for i, label in enumerate(sel.labels)]

    def _binary_notes(self, m: MapSet) -> list[str]:
        """Per image: for class 0 of a one-output head, what its map shows (else "")."""
        if not bool(m.result.binary):
            return [""] * len(m.result.targets)
        names = self._names(m.head)
        return [binary_class0_note(m.head, names) if int(t) == 0 else "" for t in m.result.targets]

    def _render_per_target(self, result: AttributionMaps, fig_dir: Path) -> list[Section]:
        """gradcam.target=[...]: per image a row of overlays, one column per target, each titled with its
        target, the class and the model's probability; a sheet with every image (a row each)."""
        from pipeline.rendering.figures import render_gradcam_sheet
        from pipeline.rendering.parallel import render_all

        sel, groups, calls, captions, headings = result.images, {}, [], [], []
        for m in result.maps:
            groups.setdefault((m.method, m.head, m.layer), []).append(m)
        for (method, head, layer), sets in groups.items():  # every figure of every group, drawn at once
            d = fig_dir / "attribution" / safe_name(method) / safe_name(head) / safe_name(layer)
            n, t = len(sel), len(sets)
            shown = display_maps_together([m.result for m in sets], self.scale)          # [T, N, H, W]
            where = (f"head {head}, " if self.ctx.multihead else "") + f"layer {layer}"
            titles = [[title + (f"\n{flag}" if flag else "")
                       for title, flag in zip(self._titles(m), map_flags(m.result.maps))] for m in sets]
            targets = ", ".join(m.target for m in sets)
            names = self._image_names(sel)
            mk = sel.masks
            for i in range(n):
                calls.append((render_gradcam_sheet,
                              (sel.images[i:i + 1].repeat(t, 1, 1, 1), shown[:, i], [ts[i] for ts in titles],
                               d / f"image{i:02d}.png"),
                              {"alpha": self.alpha, "cmap": self.cmap, "ncols": t, "input_titles": [names[i]] * t,
                               "masks": None if mk is None else mk[i:i + 1].repeat(t, 1, 1),
                               "title": f"{method}, {where}, image {i} ({sel.sources[i]})"}))
                captions.append(f"image {i} ({sel.sources[i]}): targets {targets}")
            order = [(j, i) for i in range(n) for j in range(t)]   # a row per image, a column per target
            calls.append((render_gradcam_sheet,
                          (sel.images[[i for _, i in order]], shown[[j for j, _ in order], [i for _, i in order]],
                           [titles[j][i] for j, i in order], d / "sheet.png"),
                          {"alpha": self.alpha, "cmap": self.cmap, "ncols": t,
                           "input_titles": [names[i] for _, i in order],
                           "masks": None if mk is None else mk[[i for _, i in order]],
                           "title": f"{method}, {where}, {self.scale.replace('_', '-')} scale: "
                                    f"a row per image, a column per target"}))
            captions.append(f"{method}, all images (a row each), targets {targets}")
            headings.append(f"{method}: {where}, targets {targets}")
        paths = render_all(calls, desc="attribution figures")
        figures = [Figure(path, caption) for path, caption in zip(paths, captions)]
        per_group = len(sel) + 1   # the images' figures, then the sheet; the report shows the sheet first
        groups_figs = [figures[g * per_group:(g + 1) * per_group] for g in range(len(headings))]
        return [Section(h, figures=[f[-1], *f[:-1]]) for h, f in zip(headings, groups_figs)]

    def section(self, result: AttributionMaps, figures: list[Section]) -> Section:
        sel, rows, loc_rows, observations = result.images, [], [], []
        for m in result.maps:
            names = self._names(m.head)
            for i in range(len(sel)):
                explained = names[int(m.result.targets[i])]
                rows.append([m.method, m.head, m.layer, i, sel.sources[i],
                             f"{m.target}: {explained}" if m.target else explained,
                             float(m.result.probs[i]), self._true_name(m.head, int(sel.labels[i]), names)])
            observations += [f"{m.method} at {m.layer}: {n}" for n in m.result.notes()]
            observations += [f"{m.method} at {m.layer}" + (f", head {m.head}" if self.ctx.multihead else "") +
                             f": image {i}'s map is {f}; its min-max scaled overlay would look as confident as the "
                             f"others (gradcam.scale=shared shows it on the figure's common scale)"
                             for i, f in enumerate(map_flags(m.result.maps)) if f.startswith("near-zero")]
            zeros = int((m.result.targets == 0).sum()) if bool(m.result.binary) else 0
            if zeros:
                observations.append(
                    f"{m.method} at {m.layer}" + (f", head {m.head}" if self.ctx.multihead else "") +
                    f": {zeros} of {len(sel)} maps explain class 0 ({names[0]}) of a one-output head as -logit, the "
                    f"evidence for {names[0]} over {names[1]}: it can lie where the line is not, and the tiles say so"
                    + ("; the pointing game below counts them (a head whose class 0 maps all point off the line "
                       "scores about its class 1 share)" if sel.masks is not None else "")
                    + " (docs/gradcam.md)")
            if sel.masks is not None:
                loc_rows.append([m.method, m.head, m.layer, *localization(m.result.maps, sel.masks)])
        tables = [Table("Explained class per image", ["method", "head", "layer", "image", "source",
                                                      "target (explained)", "probability", "true class"], rows)]
        if loc_rows:
            tables.append(Table("Heatmap mass on the line (ground-truth mask)",
                                ["method", "head", "layer", "energy on the line", "line's share of the image",
                                 "ratio to chance", "pointing game (peak on the line, 1 px tolerance)"], loc_rows))
            for method, head, layer, energy, share, ratio, hits in loc_rows:
                observations.append(f"{method}, {head} at {layer}: {energy:.0%} of the heatmap mass lies on the line, "
                                    f"which covers {share:.1%} of the image ({ratio:.1f}x chance); the peak is on "
                                    f"the line in {hits:.0%} of the images.")
        names = list(self.methods)
        title = "Class-activation heatmaps (Grad-CAM)" if names == ["gradcam"] else f"Attribution maps ({', '.join(names)})"
        return Section(title, paragraphs=[
            "Each figure: the input, the raw map at the layer's resolution (the input's for the gradient methods) "
            "and the map laid over the input's brightness (each pixel's maximum over the colour channels, so a blue "
            "line stays as bright as a red one); a magenta outline marks the ground-truth mask where the data has one. "
            "Grad-CAM weighs the layer's channels by the spatial mean of the target score's gradient and keeps the "
            "positive part of the weighted sum, upsampled bilinearly with each cell at the centre of its receptive "
            "field (an unpadded convolution's map does not cover the image's border). Stored under "
            "attribution/<method>/<head>/<layer> in visualization.h5."],
            observations=observations, tables=tables, subsections=figures,
            key_numbers=self.key_numbers(rows, loc_rows))

    @staticmethod
    def key_numbers(rows: list, loc_rows: list) -> dict[str, float]:
        """The sweep index's numbers: the explained classes' mean probability and, with masks, the
        mean share of the map's mass on the line and the pointing game, over methods and heads."""
        out = {"mean probability of the explained class": float(np.mean([r[6] for r in rows]))} if rows else {}
        if loc_rows:
            out["mean energy on the line"] = float(np.mean([r[3] for r in loc_rows]))
            out["mean pointing game"] = float(np.mean([r[6] for r in loc_rows]))
        return out

    def _names(self, head: str) -> list[str]:
        return head_class_names(head, self.ctx.head_classes[head], self.ctx.class_names)

    def _titles(self, m: MapSet) -> list[str]:
        """Per image ``<head>: <class> (p=...)``; with several targets ``<head> <target>: <class> (p=...)``;
        class 0 of a one-output head adds ``(-logit: not <class 1>)``: its map is the evidence against class 1."""
        names = self._names(m.head)
        who = f"{m.head} {m.target}" if m.target else m.head
        return [f"{who}: {names[int(t)]} (p={float(p):.2f})" +
                (f"\n(-logit: not {names[1]})" if bool(m.result.binary) and int(t) == 0 else "")
                for t, p in zip(m.result.targets, m.result.probs)]

    def _true_name(self, head: str, label: int, names) -> str:
        if label < 0:
            return "unknown"
        if head == "class":
            return names[label]
        return names[int(split_label(torch.tensor([label]), self.ctx.head_classes)[head])]


SCALES = ("per_image", "shared")


def binary_class0_note(head: str, names: list[str]) -> str:
    """What a class 0 map of a one-output head shows (its score is ``-logit``)."""
    return (f"head {head} has one output: '{names[0]}' is explained as -logit, the evidence for {names[0]} "
            f"over {names[1]}; it can lie where the line is not (gradcam.target=1 maps {names[1]}'s +logit)")
NEAR_ZERO = 0.01  # a map whose maximum is below 1 % of the largest map of its figure


def map_flags(maps: torch.Tensor) -> list[str]:
    """Per image: "blank (no positive evidence)" for an all-zero map, "near-zero (max ..., x % of the
    largest)" for one whose peak is below NEAR_ZERO of the figure's largest peak, else ""."""
    peaks = maps.flatten(1).amax(1).tolist()
    top = max(peaks, default=0.0)
    return ["blank (no positive evidence)" if p <= 0 else
            f"near-zero (max {p:.1e}, {p / top:.1%} of the largest)" if p < NEAR_ZERO * top else "" for p in peaks]


def display_maps(result: AttributionResult, scale: str) -> torch.Tensor:
    """What the overlays show: per_image = ``maps_normalized``; shared = ``maps`` / their common maximum."""
    if scale == "per_image":
        return result.maps_normalized
    top = float(result.maps.max()) if result.maps.numel() else 0.0
    return result.maps / top if top > 0 else torch.zeros_like(result.maps)


def display_maps_together(results: list[AttributionResult], scale: str) -> torch.Tensor:
    """[T, N, H, W]: :func:`display_maps` of each target's maps; ``shared``: over the common maximum of all."""
    if scale == "per_image":
        return torch.stack([r.maps_normalized for r in results])
    raw = torch.stack([r.maps for r in results])
    top = float(raw.max()) if raw.numel() else 0.0
    return raw / top if top > 0 else torch.zeros_like(raw)


def localization(maps: torch.Tensor, masks: torch.Tensor) -> list[float]:
    """[energy on the line, the line's share, their ratio, pointing-game hits] over the images."""
    from pipeline.evaluation.localization import energy_in_mask, mask_share, pointing_game

    energy = float(energy_in_mask(maps, masks).mean())
    share = float(mask_share(masks).mean())
    hits = float(pointing_game(maps, masks, dilate=1).float().mean())
    return [energy, share, energy / max(share, 1e-12), hits]
