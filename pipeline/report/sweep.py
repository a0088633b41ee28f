"""The sweep-level index page: a Hydra callback that, when a multirun ends, links every
run's report from ``<sweep dir>/index.html`` and lists the runs that failed with their error
line (also as ``<sweep dir>/sweep.json``), then exits non-zero when any did. Runs of
``job=evaluate`` also have their score tables joined: one table across the sweep on the page
and in ``<sweep dir>/evaluation.csv``, so models, datasets and layers can be compared (a failed
evaluate run is a row with its error). Everything is read from the run directories
(pipeline/report/sweep_runs.py), so it is the same whichever launcher ran the sweep."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pipeline.report.explorer import sweep_explorers_section
from pipeline.report.html import Section, Table, atomic_write, write_sweep_index
from pipeline.report.sweep_runs import SweepRun, collect_runs

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


def _href(run: SweepRun) -> str:
    if (run.path / "index.html").is_file():
        return str(run.path / "index.html")
    logs = sorted(run.path.glob("*.log"))
    return str(logs[0] if logs else run.path)


def write_index_for(sweep_dir: Path, title: str = "") -> Path | None:
    sweep_dir = Path(sweep_dir)
    runs = collect_runs(sweep_dir)
    if not runs:
        return None
    scores = []
    for run in runs:
        if run.status == "complete":
            scores += evaluation_rows(run.path, run.summary)
        elif run.summary.get("job") == "evaluate":
            scores.append({"run": run.label, "dataset": run.summary.get("dataset"),
                           "model": run.summary.get("model"), "status": "failed", "error": run.error})
    sections = []
    if scores:
        write_evaluation_csv(sweep_dir / "evaluation.csv", scores)
        columns = PAGE_COLUMNS + (["error"] if any(r.get("error") for r in scores) else [])
        sections.append(Section(
            "Measured explanations across runs",
            paragraphs=["The job=evaluate runs of this sweep side by side (all columns: evaluation.csv in the "
                        "sweep directory). Pointing game and energy in mask on lines only; deletion AUC against "
                        "the random order (lower is better); rank correlation after randomizing the top layer "
                        "(below the threshold passes the sanity check)."],
            tables=[Table("Scores per run, method and head", [c.replace("_", " ") for c in columns],
                          [[r.get(c) for c in columns] for r in scores])]))
    explorers = sweep_explorers_section([(r.label, r.path) for r in runs if r.status == "complete"])
    sections += [explorers] if explorers else []  # a link to each run's explorer.html
    failed = [r for r in runs if r.failed]
    record = {"sweep_dir": str(sweep_dir), "runs": [r.row() for r in runs], "total": len(runs), "failed": len(failed)}
    atomic_write(sweep_dir / "sweep.json", json.dumps(record, indent=2, default=str))
    rows = [{"label": r.label, "href": _href(r), "thumbnail": r.thumbnail,
             "summary": {k: v for k, v in r.row().items() if k != "run"}} for r in runs]
    if not failed:
        for row in rows:  # all complete: no status or error columns
            row["summary"] = {k: v for k, v in row["summary"].items() if k not in ("status", "error")}
    return write_sweep_index(sweep_dir / "index.html", title or f"Sweep {sweep_dir.name}", rows, sections)


def sweep_exit_code(runs: list[SweepRun]) -> int:
    """0 when every run is complete; 2 when every failure was bad input; 1 otherwise."""
    failed = [r for r in runs if r.failed]
    if not failed:
        return 0
    return 2 if all(r.exit_code == 2 for r in failed) else 1


class SweepIndexCallback(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        import sys

        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        path = write_index_for(sweep_dir)
        if path is not None:
            print(f"sweep index: {path}")
        runs = collect_runs(sweep_dir)
        code = sweep_exit_code(runs)
        if code:
            failed = [r for r in runs if r.failed]
            lines = "; ".join(f"{r.label}: {(r.error or r.status).splitlines()[0]}" for r in failed)
            print(f"error: {len(failed)} of {len(runs)} runs of this sweep failed ({lines}). The other runs finished; "
                  f"the sweep index lists every run: {path}", file=sys.stderr)
            sys.exit(code)
