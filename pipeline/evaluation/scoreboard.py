"""The scores of job=evaluate as tables and sentences: ``evaluation.csv`` / ``evaluation.json``,
the observations of the report and the bars the job prints."""
from __future__ import annotations

import csv
import json
from pathlib import Path

__all__ = ["COLUMNS", "write_tables", "evaluation_observations", "print_bars"]

COLUMNS = ["method", "head", "layer", "pointing_game", "energy_in_mask", "mask_share", "topk_iou",
           "deletion_auc", "deletion_auc_random", "insertion_auc", "insertion_auc_random",
           "sanity_top_layer", "sanity_last_step", "sanity_pass", "blank_maps", "seconds"]


def write_tables(rows: list[dict], run_dir: Path) -> None:
    """``evaluation.csv`` (the :data:`COLUMNS`) and ``evaluation.json`` (every key) in ``run_dir``."""
    with open(run_dir / "evaluation.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c) for c in COLUMNS})
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
    """The project's bars for Grad-CAM, as lines of text (the job prints them; the benchmark reuses them)."""
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
