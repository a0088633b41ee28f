"""The shortcut probe's observations: sentences computed from the accuracies of each head at
each level of each factor (job=probe)."""
from __future__ import annotations

import numpy as np

from pipeline.data.lines_labels import HEAD_VALUES
from pipeline.evaluation.probe import FactorResult
from pipeline.evaluation.probe_factors import BOUNDARY_SHARE

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
    lo_name, hi_name = HEAD_VALUES[factor]
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
            lo_name, hi_name = HEAD_VALUES[factor]
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
