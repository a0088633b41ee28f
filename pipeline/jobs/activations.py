"""``job=activations``: every channel of the chosen layers' outputs, per image (config:
``activations.*`` in conf/job/activations.yaml).

Forward hooks record the layers in one pass per batch; one figure per (image, layer) with every
channel as a tile on a shared colour scale; sparsity and mean per layer. Stored under
``activations/<layer>``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipeline.errors import CnnvisError
from pipeline.jobs.base import safe_name
from pipeline.report.sections import Figure, Section, Table
from pipeline.visualization.class_words import image_words
from pipeline.visualization.context import VisContext
from pipeline.visualization.inputs import Selection

__all__ = ["ActivationsJob"]


@dataclass
class Activations:
    images: Selection
    acts: dict[str, torch.Tensor]
    stats: dict[str, dict] = field(default_factory=dict)


class ActivationsJob:
    def __init__(self, ctx: VisContext, layers: list[str] | None, seed: int, *, layer_types: list[str], cmap: str):
        """``layer_types``: the default layers are every layer of these types with a 2-D map output."""
        self.ctx, self.cmap = ctx, cmap
        types = set(layer_types)
        self.layers = layers or [r["name"] for r in ctx.layer_rows
                                 if r["type"] in types and r["output_shape"] and len(r["output_shape"]) == 3]
        if not self.layers:
            raise CnnvisError("activations: no layer to show; pass layer=<name> (see the run's model_summary.txt)")

    def compute(self, images: Selection, batch_size: int) -> Activations:
        from pipeline.visualization.activations import activation_stats, record_activations

        acts, _ = record_activations(self.ctx.net, images.images.to(self.ctx.device), self.layers,
                                     batch_size=batch_size, device="cpu")
        return Activations(images, acts, {layer: activation_stats(acts[layer]) for layer in self.layers})

    def store(self, result: Activations, writer, run_dir: Path) -> None:
        for layer in self.layers:
            writer.write_activations(layer, result.acts[layer], result.stats[layer])

    def render(self, result: Activations, fig_dir: Path) -> dict[str, list[Figure]]:
        from pipeline.rendering.figures import render_activation_figure, shared_limits
        from pipeline.rendering.parallel import render_all

        sel = result.images
        dataset = getattr(self.ctx, "dataset_name", None)
        words = [image_words(label, self.ctx.class_names, dataset) for label in sel.labels]  # "digit 7"
        todo = [(i, layer) for layer in self.layers for i in range(len(sel))]
        limits = {layer: shared_limits(result.acts[layer]) for layer in self.layers}
        calls = []
        for i, layer in todo:
            path = fig_dir / "activations" / safe_name(layer) / f"image{i:02d}.png"
            a = result.acts[layer][i]
            title = f"{layer}: {a.shape[0]} channels; image {i}: {words[i]} ({sel.sources[i]})"
            calls.append((render_activation_figure, (sel.images[i], a, path, title),
                          {"cmap": self.cmap, "limits": limits[layer], "image_name": words[i]}))
        paths = render_all(calls, desc="activation figures")
        figures: dict[str, list[Figure]] = {layer: [] for layer in self.layers}
        for (i, layer), path in zip(todo, paths):
            figures[layer].append(Figure(path, f"{layer}, image {i}: {words[i]} ({sel.sources[i]})"))
        return figures

    def section(self, result: Activations, figures: dict[str, list[Figure]]) -> Section:
        rows, subsections = [], []
        types = {r["name"]: r["type"] for r in self.ctx.layer_rows}
        fold = any(types.get(n) == "ReLU" for n in self.layers)  # the report opens the ReLU layers, folds the others
        relus = [n for n in self.layers if types.get(n) == "ReLU"]
        middle = set(relus[1:-1])  # ... and of three or more ReLU layers opens the first and the last
        for layer in self.layers:
            a, s = result.acts[layer], result.stats[layer]
            rows.append([layer, "x".join(map(str, a.shape[1:])), s["sparsity"], s["mean"], s["max"], s["dead_channels"]])
            subsections.append(Section(f"Layer {layer}", paragraphs=[
                f"{a.shape[1]} channels; {s['sparsity']:.1%} of the activations are exactly zero, mean {s['mean']:.3g}."],
                figures=figures[layer], folded=fold and (types.get(layer) != "ReLU" or layer in middle),
                note="a middle layer, folded: click to open" if layer in middle else ""))
        return Section("Intermediate activations",
                       paragraphs=["Each figure shows one image (left, named by its class) and every channel of one "
                                   "layer's output as a tile (right), all tiles on one colour scale. Stored in "
                                   "visualization.h5 under "
                                   "activations/<layer>."],
                       observations=self.observations(result.stats),
                       tables=[Table("Per-layer numbers over the selected images",
                                     ["layer", "shape (C x H x W)", "sparsity (zeros)", "mean", "max", "dead channels"],
                                     rows)],
                       subsections=subsections,
                       key_numbers={f"sparsity {n}": result.stats[n]["sparsity"]
                                    for n in dict.fromkeys([self.layers[0], self.layers[-1]])})

    def observations(self, stats: dict[str, dict]) -> list[str]:
        out = []
        types = {r["name"]: r["type"] for r in self.ctx.layer_rows}
        relu = [(n, s["sparsity"]) for n, s in stats.items() if types.get(n) == "ReLU"]
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
