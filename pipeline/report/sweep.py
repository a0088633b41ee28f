"""The sweep-level index page: a Hydra callback that, when a multirun ends, links every
run's report from ``<sweep dir>/index.html`` (and lists runs that failed). Runs of
``job=evaluate`` also have their score tables joined: one table across the sweep on the page
and in ``<sweep dir>/evaluation.csv``, so models, datasets and layers can be compared."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pipeline.report.html import Section, Table, atomic_write, write_sweep_index

# the columns the sweep page shows (the CSV keeps every scalar column of every run)
PAGE_COLUMNS = ["run", "dataset", "model", "method", "head", "layer", "pointing_game", "energy_in_mask",
                "mask_share", "deletion_auc", "deletion_auc_random", "sanity_top_layer", "sanity_pass"]


def evaluation_rows(run_dir: Path, summary: dict) -> list[dict]:
    """A run's ``evaluation.json`` rows (none if it has no such file), each with the run's name,
    dataset and model added; list-valued columns stay in the run's own JSON."""
    table = Path(run_dir) / "evaluation.json"
    if not table.is_file():
        return []
    return [{"run": Path(run_dir).name, "dataset": summary.get("dataset"), "model": summary.get("model"),
             **{k: v for k, v in r.items() if not isinstance(v, (list, dict))}}
            for r in json.loads(table.read_text())]


def write_evaluation_csv(path: Path, rows: list[dict]) -> Path:
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns)
    w.writeheader()
    w.writerows(rows)
    return atomic_write(Path(path), buf.getvalue())


def write_index_for(sweep_dir: Path, title: str = "") -> Path | None:
    sweep_dir = Path(sweep_dir)
    runs, scores = [], []
    for sub in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        summary = sub / "summary.json"
        if summary.is_file():
            s = json.loads(summary.read_text())
            scores += evaluation_rows(sub, s)
            runs.append({"label": sub.name, "href": str(sub / "index.html"),
                         "summary": {"job": s.get("job"), "dataset": s.get("dataset"), "model": s.get("model"),
                                     "images": s.get("images"),
                                     "observation": (s.get("observations") or [""])[0]}})
        elif (sub / ".hydra").is_dir():
            runs.append({"label": sub.name, "href": str(sub), "summary": {"status": "failed (no report); see its log"}})
    if not runs:
        return None
    sections = []
    if scores:
        write_evaluation_csv(sweep_dir / "evaluation.csv", scores)
        sections.append(Section(
            "Measured explanations across runs",
            paragraphs=["The job=evaluate runs of this sweep side by side (all columns: evaluation.csv in the "
                        "sweep directory). Pointing game and energy in mask on lines only; deletion AUC against "
                        "the random order (lower is better); rank correlation after randomizing the top layer "
                        "(below the threshold passes the sanity check)."],
            tables=[Table("Scores per run, method and head", [c.replace("_", " ") for c in PAGE_COLUMNS],
                          [[r.get(c) for c in PAGE_COLUMNS] for r in scores])]))
    return write_sweep_index(sweep_dir / "index.html", title or f"Sweep {sweep_dir.name}", runs, sections)


class SweepIndexCallback(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = write_index_for(Path(config.hydra.sweep.dir))
        if path is not None:
            print(f"sweep index: {path}")
