"""``job=units``: what each unit responds to in real images -- its top-k test images (config:
``units.*`` in conf/job/units.yaml; layout and measurements in docs/units-explorer.md).

For every channel of every convolution layer (its map's maximum) and every class of every head (its
logit), the ``k`` test images with the highest value, the position of the maximum and the
receptive-field crop around it, from one streaming pass over the whole test split
(:mod:`pipeline.visualization.unit_examples`). Stored under ``units/<layer>``; one figure per
layer, each unit's row its optimized picture (from ``filters/<layer>`` when ``job=filters`` ran
before it in the same run, as in ``job=all``) and then its k crops.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import CnnvisError
from pipeline.jobs.base import safe_name
from pipeline.report.sections import Figure, Section, Table
from pipeline.visualization.context import VisContext
from pipeline.visualization.inputs import Selection

__all__ = ["UnitsJob"]


def distinct_images(images: torch.Tensor) -> torch.Tensor:
    """Indices of the first occurrence of every distinct image (by content), in order."""
    from pipeline.data.lines_folder import find_duplicates

    groups = find_duplicates(images.numpy()).groups
    return torch.from_numpy(np.sort(np.unique(groups, return_index=True)[1]))


def _outer(heads: dict) -> list[str]:
    """The outermost head layers (``heads.angle``, not also ``heads.angle.out``)."""
    return [n for n in heads if not any(n.startswith(o + ".") for o in heads if o != n)]


class UnitsJob:
    def __init__(self, ctx: VisContext, layers: list[str] | None, seed: int, *, k: int = 8, heads: bool = True,
                 batch_size: int | None = 1024, max_images: int | None = None):
        """``k`` images per unit; ``heads``: also every class of every head (without ``layer=``);
        ``batch_size``: images per forward pass (null: the run's batch_size); ``max_images``: only the
        first n test images (null: all)."""
        from pipeline.visualization.feature_vis import head_layers
        from pipeline.visualization.layers import conv_layer_names

        if k < 1:
            raise CnnvisError(f"units.k={k} is invalid: it must be a positive integer (images per unit)")
        if batch_size is not None and batch_size < 1:
            raise CnnvisError(f"units.batch_size={batch_size} is invalid: a positive integer, or null for the run's")
        if max_images is not None and max_images < 1:
            raise CnnvisError(f"units.max_images={max_images} is invalid: a positive integer, or null for all")
        self.ctx, self.k, self.batch_size, self.max_images = ctx, int(k), batch_size, max_images
        self.heads = head_layers(ctx.net, ctx.input_shape)
        convs = conv_layer_names(ctx.net)
        if layers:
            wrong = [n for n in layers if n not in convs and n not in self.heads]
            if wrong:
                raise CnnvisError(f"units: {', '.join(wrong)} is neither a convolution layer nor a head; dataset "
                                  f"examples are ranked for {', '.join(convs + _outer(self.heads))}")
            self.layers = list(layers)
        else:
            self.layers = convs + (_outer(self.heads) if heads else [])
        if not self.layers:
            raise CnnvisError("units: the model has no convolution layer and no head to rank images for")
        self.pictures: dict[str, dict[int, np.ndarray]] = {}

    def class_names(self, layer: str) -> list[str]:
        """The names of a head layer's classes (the head's values for a lines head)."""
        from pipeline.data.lines_labels import head_class_names

        head = self.head_of(layer)
        return head_class_names(head, self.heads[layer], self.ctx.class_names)

    def head_of(self, layer: str) -> str:
        return next((h for h in self.ctx.head_classes if layer == f"heads.{h}" or layer.startswith(f"heads.{h}.")),
                    "class")

    def compute(self, images: Selection, batch_size: int) -> dict:
        from tqdm.auto import tqdm

        from pipeline.visualization.unit_examples import top_unit_examples

        test = self.ctx.datamodule.test
        n = len(test.labels) if self.max_images is None else min(self.max_images, len(test.labels))
        bs = self.batch_size or batch_size
        t0 = time.perf_counter()
        keep = distinct_images(test.images[:n])  # the course's data repeats images: rank each one once
        examples = top_unit_examples(self.ctx.net, test.images[:n][keep], test.labels[:n][keep], self.layers,
                                     self.k, batch_size=bs, device=self.ctx.device,
                                     input_shape=self.ctx.input_shape,
                                     progress=lambda it: tqdm(it, desc="units: test batches", unit="batch",
                                                              leave=False))
        for ex in examples.values():  # back to test-set indices
            ex.indices = keep.numpy()[ex.indices]
        return {"examples": examples, "seconds": time.perf_counter() - t0, "images": n, "distinct": len(keep)}

    def store(self, result: dict, writer, run_dir: Path) -> None:
        for layer, ex in result["examples"].items():
            rf = ex.field
            attrs = {"kind": ex.kind, "k": ex.values.shape[1], "images": ex.images_seen, "rf_size": rf.size,
                     "rf_jump": rf.jump, "rf_start": rf.start, "seconds": result["seconds"]}
            if ex.kind == "class":
                attrs["class_names"] = self.class_names(layer)
            writer.write_units(layer, {"values": ex.values, "indices": ex.indices, "labels": ex.labels,
                                       "positions": ex.positions, "boxes": ex.boxes, "crops": ex.crops}, attrs)
        # the optimized pictures of job=filters, when it ran before this job in the same run
        f = writer.file
        for layer, ex in result["examples"].items():
            kinds = ["class"] if ex.kind == "class" else ["channel", "neuron"]  # the first convolution: neuron
            obj = next((o for o in kinds if "filters" in f and layer in f["filters"] and o in f["filters"][layer]), None)
            if obj is not None:
                g = f["filters"][layer][obj]
                self.pictures[layer] = {int(t): p for t, p in zip(g["targets"][()], g["patterns"][()])}

    def render(self, result: dict, fig_dir: Path) -> dict[str, Figure]:
        from pipeline.data.lines_labels import readable_name
        from pipeline.rendering.unit_figures import render_unit_figure

        names = [readable_name(c) for c in self.ctx.class_names]
        figures = {}
        for layer, ex in result["examples"].items():
            units = self.class_names(layer) if ex.kind == "class" else None
            pics = self.pictures.get(layer)
            what = "class" if ex.kind == "class" else "channel"
            title = (f"{layer}: the top {ex.values.shape[1]} of {ex.images_seen} distinct test images per {what} "
                     + (f"(crops: the {ex.field.size}x{ex.field.size} px receptive field at the maximum)"
                        if ex.kind == "channel" else "(whole images, ranked by the logit)")
                     + ("; first column: the optimized picture" if pics else ""))
            path = render_unit_figure(ex.crops, ex.values, ex.labels, names,
                                      fig_dir / "units" / f"{safe_name(layer)}.png", title, pictures=pics,
                                      unit_names=units)
            figures[layer] = Figure(path, f"{layer}: dataset examples per {what}")
        return figures

    def purity(self, layer: str, ex) -> float:
        """Channel: the mean share of a unit's top images in its most common class. Class: the mean
        share of a class's top images that truly are of that class (for the head)."""
        from pipeline.data.lines_labels import decode_label

        if ex.kind == "class":
            head = self.head_of(layer)
            truth = ex.labels if head in ("class", "aggregate") else np.asarray(decode_label(ex.labels)[head])
            return float(np.mean(truth == np.arange(ex.units)[:, None]))
        return float(np.mean([np.bincount(row).max() / len(row) for row in ex.labels]))

    def section(self, result: dict, figures: dict[str, Figure]) -> Section:
        rows, subs, key = [], [], {}
        for layer, ex in result["examples"].items():
            p = self.purity(layer, ex)
            rf = f"{ex.field.size} px, step {ex.field.jump:g}" if ex.kind == "channel" else "whole image"
            rows.append([layer, ex.kind, ex.units, ex.values.shape[1], rf, float(ex.values[:, 0].mean()), p])
            subs.append(Section(f"Layer {layer}", figures=[figures[layer]]))
            if ex.kind == "class":
                key[f"units top-{ex.values.shape[1]} precision {layer}"] = p
        return Section(
            "Dataset examples per unit",
            paragraphs=[f"For every channel of every convolution layer (its map's maximum) and every class of every "
                        f"head (its logit): the {self.k} test images of {result['images']} ({result['distinct']} "
                        f"distinct: exact copies are ranked once) with the highest value, "
                        f"from one streaming pass ({result['seconds']:.1f} s). Crops are the receptive field "
                        f"around the position of the maximum. Stored in visualization.h5 under units/<layer> "
                        f"(docs/units-explorer.md)."],
            tables=[Table("Per layer: the mean top value; purity = for a channel, the mean share of its top images "
                          "in their most common class; for a class, the share of its top images truly of that class",
                          ["layer", "kind", "units", "k", "receptive field", "mean top value", "purity"], rows)],
            subsections=subs, key_numbers=key)
