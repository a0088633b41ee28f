"""The scores of job=evaluate as tables and sentences: ``evaluation.csv`` / ``evaluation.json``,
the observations of the report and the bars the job prints -- every score with its bootstrap
interval over the images (``<score>_ci``, :mod:`pipeline.evaluation.bootstrap`), every verdict with
whether that interval settles it."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from pipeline.report.sections import format_percent, format_value, is_percent_column

__all__ = ["COLUMNS", "CI_SCORES", "CSV_COLUMNS", "write_tables", "evaluation_observations", "print_bars",
           "faithfulness_class", "score_lines", "table_cell", "with_interval"]

COLUMNS = ["method", "head", "layer", "pointing_game", "energy_in_mask", "mask_share", "topk_iou",
           "deletion_auc", "deletion_auc_random", "insertion_auc", "insertion_auc_random",
           "sanity_top_layer", "sanity_last_step", "sanity_pass", "blank_maps", "seconds"]

#: the scores measured per image, which carry a bootstrap interval ``<score>_ci`` = [low, high]
CI_SCORES = ["pointing_game", "energy_in_mask", "mask_share", "topk_iou", "deletion_auc", "deletion_auc_random",
             "deletion_gap", "insertion_auc", "insertion_auc_random", "insertion_gap", "sanity_top_layer",
             "sanity_last_step", "blank_maps"]
#: evaluation.csv: the COLUMNS, then the gaps (random minus map deletion AUC, map minus random insertion AUC),
#: every interval's ends and the verdicts' settledness
CSV_COLUMNS = COLUMNS + ["deletion_gap", "insertion_gap"] + [f"{c}_ci_{end}" for c in CI_SCORES for end in ("low", "high")] \
    + ["sanity_verdict", "deletion_verdict"]
FAITHFUL_MARGIN = 0.01  # the deletion verdict's margin: gap > margin faithful, |gap| <= margin the same as random


def faithfulness_class(gap: float) -> str:
    """The deletion verdict of an AUC gap (random minus map)."""
    return ("faithful: removing its top pixels hurts sooner" if gap > FAITHFUL_MARGIN else
            "about the same as random: the target probability hardly moves" if abs(gap) <= FAITHFUL_MARGIN else
            "worse than random")


def _fmt(value, col: str) -> str:
    if value is None:
        return "\u2013"
    return format_percent(float(value)) if is_percent_column(col.replace("_", " ")) else format_value(value)


def with_interval(row: dict, col: str) -> str:
    """``"62.3% [60.1%, 64.4%]"``: the score and its interval (the score alone without one)."""
    ci = row.get(f"{col}_ci")
    text = _fmt(row.get(col), col)
    return text if not ci else f"{text} [{_fmt(ci[0], col)}, {_fmt(ci[1], col)}]"


def _two(row: dict, col: str) -> str:
    """A correlation with two decimals, and its interval: ``"0.31 [0.25, 0.37]"``."""
    ci = row.get(f"{col}_ci")
    return f"{row[col]:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def table_cell(row: dict, col: str):
    """The report table's cell: a score with its interval as text, any other column as it is."""
    if col == "sanity_pass" and row.get("sanity_verdict"):
        return f"{'yes' if row['sanity_pass'] else 'no'} ({row['sanity_verdict']})"
    return with_interval(row, col) if row.get(f"{col}_ci") else row.get(col)


def _csv_row(r: dict) -> dict:
    out = {c: r.get(c) for c in COLUMNS + ["deletion_gap", "insertion_gap", "sanity_verdict", "deletion_verdict"]}
    for c in CI_SCORES:
        ci = r.get(f"{c}_ci") or (None, None)
        out[f"{c}_ci_low"], out[f"{c}_ci_high"] = ci
    return out


def write_tables(rows: list[dict], run_dir: Path) -> None:
    """``evaluation.csv`` (the :data:`CSV_COLUMNS`) and ``evaluation.json`` (every key) in ``run_dir``."""
    with open(run_dir / "evaluation.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow(_csv_row(r))
    (run_dir / "evaluation.json").write_text(json.dumps(rows, indent=2))


def evaluation_observations(rows: list[dict], has_masks: bool) -> list[str]:
    """One sentence per score of each method and head, computed from the numbers."""
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
            settled = f"; {r['deletion_verdict']}, gap {with_interval(r, 'deletion_gap')}" if r.get("deletion_verdict") else ""
            out.append(f"{name}: deletion AUC {r['deletion_auc']:.4f} vs {r['deletion_auc_random']:.4f} for a random "
                       f"order ({faithfulness_class(gap)}{settled}).")
        if r.get("sanity_pass") is not None:
            settled = f" ({r['sanity_verdict']})" if r.get("sanity_verdict") else ""
            out.append(f"{name}: rank correlation with the trained maps after randomizing the top layer "
                       f"{_two(r, 'sanity_top_layer')} -> {'passes' if r['sanity_pass'] else 'FAILS'} the "
                       f"sanity check{settled}.")
    return out


def print_bars(rows: list[dict], dataset: str) -> str:
    """The project's bars for Grad-CAM, as lines of text (the job prints them; the benchmark reuses them)."""
    lines = []
    by = {(r["method"], r["head"]): r for r in rows}
    angle = by.get(("gradcam", "angle"))
    if angle and angle.get("pointing_game") is not None:
        ci = angle.get("pointing_game_ci")
        settled = "" if not ci else f", {'settled' if ci[0] > 0.95 or ci[1] < 0.95 else 'not settled by this sample'}"
        lines.append(f"bar: Grad-CAM pointing game at {angle.get('layer')}, angle head >= 95%: "
                     f"{with_interval(angle, 'pointing_game')} ({'ok' if angle['pointing_game'] >= 0.95 else 'MISSED'}"
                     f"{settled}); energy in mask {with_interval(angle, 'energy_in_mask')} vs mask share "
                     f"{angle['mask_share']:.1%}")
    for (m, h), r in by.items():
        if m == "gradcam" and r.get("deletion_auc") is not None:
            gap = r["deletion_auc_random"] - r["deletion_auc"]
            verdict = "ok" if gap > 1e-3 else "MISSED (the same as random)" if gap >= -1e-3 else "MISSED"
            ci = r.get("deletion_gap_ci")
            settled = "" if not ci else f", gap {with_interval(r, 'deletion_gap')}, " + \
                ("settled" if ci[0] > 1e-3 or ci[1] < -1e-3 else "not settled by this sample")
            lines.append(f"bar: Grad-CAM deletion AUC below random on {dataset} ({h}): {r['deletion_auc']:.4f} vs "
                         f"{r['deletion_auc_random']:.4f} random, {verdict}{settled}")
        if m == "gradcam" and r.get("sanity_top_layer") is not None:
            settled = f" ({r['sanity_verdict']})" if r.get("sanity_verdict") else ""
            lines.append(f"bar: Grad-CAM rank correlation after randomizing the top layer < 0.5 ({h}): "
                         f"{_two(r, 'sanity_top_layer')} {'ok' if r['sanity_top_layer'] < 0.5 else 'MISSED'}"
                         f"{settled}")
    return "\n".join(lines)


def score_lines(rows: list[dict], confidence: float = 0.95) -> str:
    """Every score of every method and head with its interval, and the verdicts: the job's log."""
    lines = [f"scores with their {confidence:.0%} bootstrap intervals over the images:"]
    for r in rows:
        scores = [f"{c} {with_interval(r, c)}" for c in CI_SCORES if r.get(c) is not None]
        verdicts = []
        if r.get("sanity_pass") is not None:
            verdicts.append(f"sanity {'passes' if r['sanity_pass'] else 'FAILS'}"
                            + (f" ({r['sanity_verdict']})" if r.get("sanity_verdict") else ""))
        if r.get("deletion_verdict"):
            verdicts.append(f"deletion {faithfulness_class(r['deletion_gap']).split(':')[0]} ({r['deletion_verdict']})")
        lines.append(f"  {r['method']}/{r['head']}: " + "; ".join(scores + verdicts))
    return "\n".join(lines)
