"""``job=filters``: the input pattern that maximizes each filter's mean response (config:
``filters.*`` in conf/job/filters.yaml).

Gradient ascent on the input from a grey image with seeded noise, all filters of a layer
optimized together (:class:`~pipeline.visualization.filters.FilterVisualizer`); ranked by the
mean activation they reach; figures of all filters and the top ones. Stored under
``filters/<layer>``.
"""
from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from pipeline.errors import CnnvisError
from pipeline.jobs.base import safe_name
from pipeline.report.sections import Figure, Section, Table
from pipeline.visualization.context import VisContext
from pipeline.visualization.inputs import Selection
from pipeline.visualization.layers import conv_layer_names

__all__ = ["FiltersJob", "filter_observations"]


class FiltersJob:
    def __init__(self, ctx: VisContext, layers: list[str] | None, seed: int, *, steps: int, step_size: float,
                 noise: float, jitter: int, decay: float, blur_every: int, blur_sigma: float, top: int,
                 max_filters: int | None = None):
        self.ctx, self.seed, self.top, self.max_filters = ctx, seed, top, max_filters
        convs = conv_layer_names(ctx.net)
        bad = [n for n in layers or [] if n not in convs]
        if bad:
            raise CnnvisError(f"filters: {', '.join(bad)} is not a convolution layer; filter patterns are "
                              f"computed for convolution layers: {', '.join(convs)}")
        self.layers = layers or convs
        for key, value in (("steps", steps), ("top", top)):
            if value < 1:
                raise CnnvisError(f"filters.{key}={value} is invalid: it must be a positive integer")
        if step_size <= 0:
            raise CnnvisError(f"filters.step_size={step_size} is invalid: it must be positive")
        self.optimizer = dict(steps=steps, step_size=step_size, noise=noise, jitter=jitter, decay=decay,
                              blur_every=blur_every, blur_sigma=blur_sigma)

    def compute(self, images: Selection, batch_size: int) -> dict:
        """``{layer: FilterResult}`` (the run's images are not used: patterns start from grey)."""
        from pipeline.visualization.filters import FilterVisualizer

        results = {}
        for layer in tqdm(self.layers, desc="filter layers", unit="layer"):
            vis = FilterVisualizer(self.ctx.net, layer, self.ctx.input_shape)
            filters = list(range(min(vis.n_filters, self.max_filters))) if self.max_filters else None
            results[layer] = vis(filters, seed=self.seed, progress=True, **self.optimizer)
        return results

    def store(self, result: dict, writer, run_dir: Path) -> None:
        for layer, res in result.items():
            writer.write_filters(layer, res.patterns, res.scores, res.start_scores, res.filter_indices, res.ranking,
                                 attrs=self.optimizer)

    def render(self, result: dict, fig_dir: Path) -> dict[str, list[Figure]]:
        from pipeline.rendering.figures import render_filter_grid

        d = fig_dir / "filters"
        d.mkdir(parents=True, exist_ok=True)
        figures = {}
        for layer, res in result.items():
            all_path = render_filter_grid(res.patterns, res.scores, res.filter_indices, d / f"{safe_name(layer)}_all.png",
                                          f"{layer}: all {len(res)} filter patterns, ranked by mean activation")
            k = min(self.top, len(res))
            top_path = render_filter_grid(res.patterns, res.scores, res.filter_indices,
                                          d / f"{safe_name(layer)}_top{k}.png", f"{layer}: top {k} filters", top=k)
            figures[layer] = [Figure(top_path, f"{layer}: the {k} filters reaching the highest mean activation"),
                              Figure(all_path, f"{layer}: all {len(res)} filters, ranked")]
        return figures

    def section(self, result: dict, figures: dict[str, list[Figure]]) -> Section:
        rows = []
        for layer, res in result.items():
            best = int(res.filter_indices[res.ranking[0]])
            rows.append([layer, len(res), float(res.start_scores.mean()), float(res.scores.mean()), best,
                         float(res.scores.max())])
        o = self.optimizer
        return Section("Filter patterns",
                       paragraphs=[f"The input that maximizes each filter's mean response, found by {o['steps']} steps of "
                                   f"gradient ascent (RMS-normalized steps of {o['step_size']}) from a grey image with "
                                   f"seeded noise, all filters of a layer optimized together as one batch. "
                                   f"Stored under filters/<layer>."],
                       observations=filter_observations(result),
                       tables=[Table("Mean activation reached per layer",
                                     ["layer", "filters", "mean start score", "mean final score", "best filter",
                                      "best score"], rows)],
                       subsections=[Section(f"Layer {layer}", figures=figs) for layer, figs in figures.items()])


def filter_observations(results: dict) -> list[str]:
    """How far gradient ascent raised each layer's responses; colour and edge detectors in the first layer."""
    out = []
    for layer, res in results.items():
        raised = float(((res.scores - res.start_scores) > 0).float().mean())
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
