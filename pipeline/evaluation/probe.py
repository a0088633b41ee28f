"""``python visualize.py job=probe``: the shortcut probe.

A model can score 99 % on its test set by reading something that only happens to go with the
label there (a long line is also brighter in total; the course's lines sit up and left). The
probe exposes such shortcuts: it changes **one factor** of the scored test images at a time
and measures every head's accuracy at each level of that factor.

* lines (the datamodule has ``render_params``): ``probe.num_images`` test images (the seeded,
  class-spread sample of ``job=evaluate``) are **redrawn** from their drawing parameters
  (:class:`~pipeline.data.line_styles.RenderParams`) with one field changed:

  - ``brightness``: x level on each image's drawn brightness (before the JPEG round trip);
  - ``blur``: the Gaussian sigma (px), replacing the style's (hard-edged lines are drawn hard,
    then blurred);
  - ``jpeg``: the JPEG quality, replacing the style's; each image keeps its chroma subsampling
    (both built-in styles use 4:4:4; the sheet style, drawn without JPEG, gets 4:4:4 too);
  - ``width`` / ``length``: px added to the line's core width / length;
  - ``centre``: 0 = as drawn, 1 = the centre moved to a corner of its valid range (the positions
    that keep the line's visible extent ``data.margin`` px inside the image), image ``i`` to
    corner ``i mod 4``; levels in between move it part of the way.

  The baseline row is the images redrawn unchanged; they equal the stored test images (checked
  on every run and reported).
* any other dataset (mnist, fashion_mnist, image folders): the image-level factors
  ``brightness`` (pixel values x level, clipped to 1), ``blur`` (Gaussian sigma on the image,
  :func:`~pipeline.data.line_styles.gaussian_blur`) and ``shift`` (translation by level px
  towards a corner, image ``i`` to corner ``i mod 4``, zero fill).

Results: ``/probe/`` in the run's HDF5 file, ``probe.csv``, ``figures/probe/accuracy.png`` and a
report section whose observations name the head, the factor, the level and the drop.
"""
from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pipeline.errors import CnnvisError
from pipeline.evaluation.job import evaluation_sample
from pipeline.report.html import Figure, Section, Table
from pipeline.training.lit_module import head_predictions, split_lines_label
from pipeline.visualization.context import VisContext
from pipeline.visualization.inputs import Selection

log = logging.getLogger(__name__)

#: Factors that redraw a line from its drawing parameters (datasets with ``render_params``).
LINE_FACTORS = ("brightness", "blur", "jpeg", "width", "length", "centre")
#: Factors applied to the stored images themselves (every other dataset).
IMAGE_FACTORS = ("brightness", "blur", "shift")
FACTORS = tuple(dict.fromkeys(LINE_FACTORS + IMAGE_FACTORS))
#: A size change of at least this share of the gap between the two classes of the same head
#: (thin/thick, short/long) measures where the head puts its class boundary, not a shortcut.
BOUNDARY_SHARE = 0.25
#: Corners, in the order images are sent to them: (x at its high end?, y at its high end?).
_CORNERS = ((0, 0), (1, 0), (0, 1), (1, 1))


@dataclass
class FactorResult:
    """One factor: accuracy per head (and ``aggregate`` for multi-head models) at each level."""

    factor: str
    levels: list[float]
    level_names: list[str]
    accuracy: dict[str, np.ndarray]          # head -> [L]
    images: int
    description: str = ""


# -- config checks ---------------------------------------------------------------------------
def _number(factor: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CnnvisError(f"probe.factors.{factor}: level {value!r} is invalid: levels must be numbers")
    return float(value)


def check_factors(spec, renderable: bool, style=None, image_size: int = 28,
                  only=None) -> tuple[dict[str, list[float]], list[str]]:
    """``probe.factors`` (factor -> levels) checked: (the factors to run with their levels, the
    configured factors that do not apply to this dataset). Raises :class:`CnnvisError`."""
    if spec is None:
        raise CnnvisError("probe.factors is missing: give each factor a list of levels (see conf/visualize.yaml)")
    spec = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else dict(spec)
    applicable = LINE_FACTORS if renderable else IMAGE_FACTORS
    unknown = [f for f in spec if f not in FACTORS]
    if unknown:
        raise CnnvisError(f"probe.factors: unknown factor {', '.join(map(str, unknown))}; valid factors: "
                          f"{', '.join(LINE_FACTORS)} (lines, redrawn) and {', '.join(IMAGE_FACTORS)} (other datasets)")
    if only is not None:
        only = [str(f) for f in (OmegaConf.to_container(only) if OmegaConf.is_config(only) else only)]
        bad = [f for f in only if f not in spec or f not in applicable]
        if bad or not only:
            raise CnnvisError(f"probe.only={only} is invalid: choose among the factors that apply to this dataset "
                              f"and have levels in probe.factors: {', '.join(f for f in spec if f in applicable)}")
    out: dict[str, list[float]] = {}
    for factor, levels in spec.items():
        if not isinstance(levels, (list, tuple)) or not levels:
            raise CnnvisError(f"probe.factors.{factor}={levels!r} is invalid: give a non-empty list of levels, "
                              f"e.g. probe.factors.{factor}=[{_EXAMPLES[factor]}]")
        values = [_number(factor, v) for v in levels]
        _check_levels(factor, values, style, image_size)
        if factor in applicable and (only is None or factor in only):
            out[factor] = values
    skipped = [f for f in spec if f not in applicable]
    return out, skipped


_EXAMPLES = {"brightness": "1,0.85,0.7", "blur": "0,0.5,1", "jpeg": "95,75,50", "width": "0,1", "length": "0,1",
             "centre": "0,1", "shift": "0,2,4"}


def _check_levels(factor: str, values: list[float], style, image_size: int) -> None:
    def fail(why: str):
        raise CnnvisError(f"probe.factors.{factor}={_fmt_list(values)} is invalid: {why}")

    if factor == "brightness" and min(values) <= 0:
        fail("a brightness factor must be > 0 (1 = as drawn, 0.7 = dimmed)")
    if factor == "blur" and (min(values) < 0 or max(values) > 5):
        fail("a blur sigma must lie in [0, 5] px")
    if factor == "jpeg" and any(v != int(v) or not 1 <= v <= 100 for v in values):
        fail("a JPEG quality must be an integer in 1..100")
    if factor == "centre" and (min(values) < 0 or max(values) > 1):
        fail("levels are the share of the way to a corner, in [0, 1] (0 = as drawn, 1 = at the corner)")
    if factor == "shift" and any(v != int(v) or not 0 <= v < image_size / 2 for v in values):
        fail(f"a shift must be a whole number of pixels in 0..{math.ceil(image_size / 2) - 1}")
    if factor in ("width", "length") and style is not None:
        from pipeline.data.line_styles import MIN_SOFT_WIDTH

        sizes = style.widths if factor == "width" else style.lengths
        least = (MIN_SOFT_WIDTH if style.anti_alias else 1.0) if factor == "width" else 1.0
        if min(sizes) + min(values) < least:
            fail(f"the {style.name} style's {min(sizes):g} px {factor} would drop below {least:g} px")
        if max(values) > 10:
            fail(f"at most 10 px can be added to the {factor}")


def _fmt_list(values) -> str:
    return "[" + ",".join(f"{v:g}" for v in values) + "]"


# -- levels: names and what they do ----------------------------------------------------------
def level_name(factor: str, level: float) -> str:
    if factor == "brightness":
        return f"x{level:g}"
    if factor == "blur":
        return f"sigma {level:g}"
    if factor == "jpeg":
        return f"q{int(level)}"
    if factor in ("width", "length"):
        return f"{level:+g} px"
    if factor == "centre":
        return "as drawn" if level == 0 else "corner" if level == 1 else f"{level:.0%} to a corner"
    if factor == "shift":
        return f"{int(level)} px"
    return f"{level:g}"


def describe(factor: str, renderable: bool, style=None) -> str:
    if factor == "brightness":
        return ("x the drawn brightness, before the JPEG round trip" if renderable
                else "pixel values x level, clipped to 1")
    if factor == "blur":
        if renderable:
            base = f" (the {style.name} style's: {style.blur:g})" if style is not None else ""
            return f"Gaussian sigma in px, replacing the drawn blur{base}"
        return "Gaussian sigma in px, on the image"
    if factor == "jpeg":
        base = (f" (the {style.name} style's: {style.jpeg_quality or 'none'}, {style.jpeg_subsampling})"
                if style is not None else "")
        return f"JPEG quality, replacing the drawn one{base}; chroma subsampling kept (4:4:4 when none)"
    if factor == "width":
        return "px added to the line's width" + (f" (thin / thick: {style.widths[0]:g} / {style.widths[1]:g} px)"
                                                 if style is not None else "")
    if factor == "length":
        return "px added to the line's length" + (f" (short / long: {style.lengths[0]:g} / {style.lengths[1]:g} px)"
                                                  if style is not None else "")
    if factor == "centre":
        return "0 = as drawn, 1 = moved to a corner of the positions that keep the line inside (round robin)"
    if factor == "shift":
        return "image translated by level px towards a corner (round robin), zero fill"
    return "the images as drawn" if renderable else "the images as stored"


def corner_centres(params, level: float, image_size: int, margin: float) -> np.ndarray:
    """Centres moved ``level`` of the way to a corner of their valid range, image ``i`` to corner ``i mod 4``."""
    from pipeline.data.line_styles import edge_extent, valid_centre_range

    lo, hi = valid_centre_range(params.angles, params.lengths, params.widths,
                                edge_extent(params.anti_alias, params.blur), image_size, margin)
    pick = np.asarray(_CORNERS)[np.arange(len(params)) % 4]        # [N, 2] 0 = low end, 1 = high end
    corner = np.where(pick == 1, hi, lo)
    return params.centres + float(level) * (corner - params.centres)


def changed_params(params, factor: str, level: float, image_size: int, margin: float):
    """The drawing parameters with one factor changed (see the module docstring)."""
    n = len(params)
    if factor == "brightness":
        return params.replace(brightness=params.brightness * level)
    if factor == "blur":
        return params.replace(blur=np.full(n, float(level)))
    if factor == "jpeg":
        return params.replace(jpeg_quality=np.full(n, int(level), dtype=np.int64))
    if factor == "width":
        return params.replace(widths=params.widths + level)
    if factor == "length":
        return params.replace(lengths=params.lengths + level)
    if factor == "centre":
        return params.replace(centres=corner_centres(params, level, image_size, margin))
    raise ValueError(f"{factor} is not a drawing factor")


def shift_images(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Translate ``[N, C, H, W]`` images by ``pixels`` in x and y towards a corner (image ``i``
    to corner ``i mod 4``: up-left, up-right, down-left, down-right), zero fill."""
    s = int(pixels)
    if s == 0:
        return x.clone()
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    for k, (right, down) in enumerate(_CORNERS):
        idx = torch.arange(k, len(x), 4)
        dx, dy = (s if right else -s), (s if down else -s)
        src = x[idx][..., max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
        out[idx, :, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)] = src
    return out


def transform_images(images: torch.Tensor, factor: str, level: float) -> torch.Tensor:
    """Image-level factors on uint8 ``[N, C, H, W]``: float images in [0, 1]."""
    from pipeline.data.line_styles import gaussian_blur

    x = images.float() / 255
    if factor == "brightness":
        return (x * level).clamp(0, 1)
    if factor == "blur":
        n, c, h, w = x.shape
        return gaussian_blur(x.reshape(n * c, h, w), np.full(n * c, float(level))).reshape(n, c, h, w)
    if factor == "shift":
        return shift_images(x, int(level))
    raise ValueError(f"{factor} is not an image factor")


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
            targets = split_lines_label(yb, head_classes) if multi else {"class": yb}
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


# -- the job ---------------------------------------------------------------------------------
class ProbeJob:
    name = "probe"

    def __init__(self, ctx: VisContext, cfg: DictConfig):
        self.ctx, self.cfg, self.seed = ctx, cfg.probe, int(cfg.get("seed", 0))
        dm = ctx.datamodule
        self.renderable = callable(getattr(dm, "render_params", None))
        self.style = None
        if self.renderable and getattr(dm, "style", None):
            from pipeline.data.line_styles import get_style

            self.style = get_style(dm.style)
        n = self.cfg.get("num_images")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise CnnvisError(f"probe.num_images={n!r} is invalid: it must be a positive integer, e.g. 2000")
        self.num_images = n
        for key, lo in (("min_drop", 0.0), ("ok_accuracy", 0.0)):
            v = self.cfg.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo < v <= 1:
                raise CnnvisError(f"probe.{key}={v!r} is invalid: it must be a share in (0, 1]")
        self.min_drop, self.ok_accuracy = float(self.cfg.min_drop), float(self.cfg.ok_accuracy)
        self.factors, self.skipped = check_factors(self.cfg.get("factors"), self.renderable, self.style,
                                                   int(getattr(dm, "image_size", 28)), self.cfg.get("only"))
        if not self.factors:
            raise CnnvisError(f"probe.factors has no factor that applies to dataset {ctx.dataset_name}: "
                              f"give levels for {', '.join(LINE_FACTORS if self.renderable else IMAGE_FACTORS)}")

    # -- computing
    def probe(self, batch_size: int) -> tuple[torch.Tensor, list[FactorResult], dict]:
        """(the probed test indices, one result per factor -- the baseline first --, facts about
        the baseline: how many redrawn images differ from the stored ones)."""
        ctx, dm = self.ctx, self.ctx.datamodule
        test = dm.test
        idx = evaluation_sample(test.labels, self.num_images, self.seed)
        labels, stored = test.labels[idx], test.images[idx]
        n = len(idx)

        def acc(images) -> dict[str, float]:
            return head_accuracy(ctx.net, images, labels, ctx.head_classes, batch_size, ctx.device)

        facts: dict = {"images": n, "redrawn": self.renderable}
        results = []
        if self.renderable:
            from pipeline.data.line_styles import render

            size, margin = int(dm.image_size), float(dm.margin)
            params = dm.render_params("test").subset(idx.numpy())
            base_np, _ = render(params, size)
            base = torch.from_numpy(base_np)
            facts["differs_from_stored"] = int((base != stored).flatten(1).any(1).sum())
            if facts["differs_from_stored"]:
                log.warning("probe: %d of %d redrawn test images differ from the stored ones",
                            facts["differs_from_stored"], n)
        else:
            base = stored
        base_acc = acc(base)
        results.append(self._result("baseline", [float("nan")], ["as drawn" if self.renderable else "as stored"],
                                    [base_acc], n))
        for factor, levels in self.factors.items():
            rows = []
            for level in levels:
                if self.renderable:
                    p = changed_params(params, factor, level, size, margin)
                    same = all(np.array_equal(getattr(p, f), getattr(params, f))
                               for f in ("brightness", "blur", "jpeg_quality", "widths", "lengths", "centres"))
                    rows.append(base_acc if same else acc(torch.from_numpy(render(p, size)[0])))
                else:
                    identity = (factor == "brightness" and level == 1) or (factor != "brightness" and level == 0)
                    rows.append(base_acc if identity else acc(transform_images(stored, factor, level)))
            results.append(self._result(factor, levels, [level_name(factor, v) for v in levels], rows, n))
        return idx, results, facts

    def _result(self, factor, levels, names, rows: list[dict], n: int) -> FactorResult:
        heads = list(rows[0])
        return FactorResult(factor, list(levels), names, {h: np.asarray([r[h] for r in rows]) for h in heads}, n,
                            describe(factor, self.renderable, self.style))

    # -- the run
    def run(self, sel: Selection, writer, run_dir: Path, fig_dir: Path, batch_size: int) -> Section:
        from pipeline.rendering.probe_plots import plot_probe

        idx, results, facts = self.probe(batch_size)
        writer.write_probe_indices(idx, attrs={"images": len(idx), "redrawn": self.renderable,
                                               "style": self.style.name if self.style else None,
                                               "differs_from_stored": facts.get("differs_from_stored")})
        for r in results:
            writer.write_probe(r.factor, r.levels, r.level_names, r.accuracy,
                               attrs={"images": r.images, "description": r.description})
        heads = list(results[0].accuracy)
        write_csv(results, run_dir / "probe.csv")
        path = plot_probe(results, fig_dir / "probe" / "accuracy.png",
                          f"{self.ctx.model_name} on {self.ctx.dataset_name}: accuracy when one factor changes "
                          f"({len(idx)} test images)", ok=self.ok_accuracy)
        rows = [[r.factor, name, *[float(r.accuracy[h][i]) for h in heads]]
                for r in results for i, name in enumerate(r.level_names)]
        paragraphs = [
            f"{len(idx)} test images (a seeded sample spread over the classes) "
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
        return Section("Shortcut probe",
                       paragraphs=paragraphs,
                       observations=self.observations(results, facts),
                       tables=[Table("Accuracy per head when one factor changes",
                                     ["factor", "level", *heads], rows)],
                       figures=[Figure(path, "accuracy per head against each factor's level; dotted: the images "
                                             f"as drawn, grey line: {self.ok_accuracy:.0%}")])

    # -- observations
    def observations(self, results: list[FactorResult], facts: dict) -> list[str]:
        return probe_observations(results, facts, style=self.style, min_drop=self.min_drop, ok=self.ok_accuracy)


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def _when(factor: str, level: float, renderable: bool) -> str:
    thing = "line" if renderable else "image"
    if factor == "brightness":
        return f"when the image is {'dimmed' if level < 1 else 'brightened'} to x{level:g}"
    if factor == "blur":
        return f"when the {thing} is blurred with sigma {level:g} px" if level > 0 else \
            f"when the {thing} is drawn without blur (sigma 0)"
    if factor == "jpeg":
        return f"when the image is JPEG-compressed at quality {int(level)}"
    if factor in ("width", "length"):
        more = {"width": ("wider", "narrower"), "length": ("longer", "shorter")}[factor][level < 0]
        return f"when the line is drawn {abs(level):g} px {more}"
    if factor == "centre":
        return ("when each line is moved to a corner of the image (of the positions that keep it inside)"
                if level == 1 else f"when each line is moved {level:.0%} of the way to a corner")
    if factor == "shift":
        return f"when the image is shifted {int(level)} px towards a corner"
    return ""


def _boundary(factor: str, head: str, level: float, style) -> str | None:
    """The text saying that this size change measures the head's own class boundary, or None."""
    if factor != head or factor not in ("width", "length") or style is None:
        return None
    small, big = style.widths if factor == "width" else style.lengths
    share = abs(level) / (big - small)
    lo_name, hi_name = {"width": ("thin", "thick"), "length": ("short", "long")}[factor]
    if share < BOUNDARY_SHARE:
        return None
    if level > 0:
        move = (f"a {lo_name} line goes from {small:g} to {small + level:g} px, {share:.0%} of the way to "
                f"{hi_name} ({big:g} px)")
    else:
        move = (f"a {hi_name} line goes from {big:g} to {big + level:g} px, {share:.0%} of the way to "
                f"{lo_name} ({small:g} px)")
    return (f"{move}: this level measures where the {head} head puts its {lo_name}/{hi_name} boundary, "
            f"not a shortcut")


def _verdict(factor: str, head: str, level: float, style) -> str:
    who = "the model" if head == "class" else f"the {head} head"
    if factor == "brightness":
        return f"{who} uses brightness"
    if factor == "blur":
        return f"{who} depends on edge sharpness"
    if factor == "jpeg":
        return f"{who} is sensitive to JPEG artefacts"
    if factor in ("width", "length"):
        if factor == head and style is not None:
            small, big = style.widths if factor == "width" else style.lengths
            lo_name, hi_name = {"width": ("thin", "thick"), "length": ("short", "long")}[factor]
            return (f"{who} is fragile: {small:g} -> {small + level:g} px is still clearly {lo_name} and "
                    f"{big:g} -> {big + level:g} px still {hi_name}")
        return f"{who} depends on the line's {factor} (a shortcut: the {factor} does not change the {head})"
    if factor in ("centre", "shift"):
        return f"{who} depends on where the line is" if factor == "centre" else \
            f"{who} depends on where the content sits in the image"
    return ""


def probe_observations(results: list[FactorResult], facts: dict, style=None, min_drop: float = 0.05,
                       ok: float = 0.95) -> list[str]:
    """Sentences computed from the numbers: each head whose accuracy falls by at least
    ``min_drop`` under a factor (its worst level, with the factor, the level and the drop), the
    size changes that measure a head's own class boundary, and whether every head stays at or
    above ``ok`` at every level."""
    out = []
    renderable = bool(facts.get("redrawn"))
    n = facts.get("images", results[0].images if results else 0)
    if renderable and "differs_from_stored" in facts:
        d = facts["differs_from_stored"]
        out.append(f"Redrawing the {n} sampled test images from their drawing parameters reproduces the stored "
                   f"images exactly." if d == 0 else
                   f"Redrawing the sampled test images does NOT reproduce {d} of the {n} stored images (a stale "
                   f"dataset cache?): the baseline row is the redrawn images.")
    base = results[0].accuracy
    heads = [h for h in base if h != "aggregate"]
    low_base = [h for h in heads if base[h][0] < ok]
    if low_base:
        out.append("Already below " + _pct(ok) + " on the images as drawn: "
                   + ", ".join(f"{h} {_pct(base[h][0])}" for h in low_base) + "; drops are measured from there.")
    boundary_pairs, shortcut_found = set(), False
    for r in results[1:]:
        for h in heads:
            drops = base[h][0] - r.accuracy[h]
            worst = int(np.argmax(drops))
            level, drop = r.levels[worst], float(drops[worst])
            boundary = _boundary(r.factor, h, level, style)
            if boundary:
                boundary_pairs.add((r.factor, h))
            if drop < min_drop:
                continue
            subject = "accuracy" if h == "class" else f"{h} accuracy"
            seq = ", ".join(f"{name} {_pct(v)}" for name, v in zip(r.level_names, r.accuracy[h]))
            head_text = (f"{subject} falls to {_pct(r.accuracy[h][worst])} {_when(r.factor, level, renderable)} "
                         f"({-100 * drop:+.1f} points from {_pct(base[h][0])} as drawn; {r.factor}: {seq})")
            if boundary:
                out.append(f"{head_text}; {boundary}.")
            else:
                shortcut_found = True
                out.append(f"{head_text}: {_verdict(r.factor, h, level, style)}.")
    lows = [(float(r.accuracy[h][i]), h, r.factor, r.level_names[i])
            for r in results for h in heads for i in range(len(r.levels))]
    if lows:
        worst = min(lows)
        outside = [x for x in lows if x[0] < ok and (x[2], x[1]) not in boundary_pairs]
        if worst[0] >= ok:
            out.append(f"Every head stays at or above {_pct(ok)} at every level of every factor "
                       f"(lowest: {worst[1]} {_pct(worst[0])} at {worst[2]} {worst[3]}): no shortcut among the "
                       f"probed factors.")
        elif not outside:
            out.append(f"Apart from the class-boundary levels above, every head stays at or above {_pct(ok)} at "
                       f"every level of every factor: no shortcut among the probed factors.")
        elif not shortcut_found and not low_base:
            out.append(f"No head loses {100 * min_drop:.0f} points or more at any level, but some levels fall "
                       f"below {_pct(ok)} (lowest: {worst[1]} {_pct(worst[0])} at {worst[2]} {worst[3]}).")
    agg = [r.accuracy["aggregate"] for r in results if "aggregate" in r.accuracy]
    if agg:
        values = np.concatenate(agg)
        spread = (f"stays at {_pct(values.min())} at every level" if values.min() == values.max() else
                  f"ranges from {_pct(values.min())} to {_pct(values.max())} over the levels "
                  f"({_pct(base['aggregate'][0])} as drawn)")
        out.append(f"Aggregate accuracy (all heads right) {spread}.")
    return out


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
