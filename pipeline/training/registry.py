"""Finding trained checkpoints without copying paths.

Every finished training run writes ``run.json`` in its run directory (Hydra's output dir,
``outputs/train/<dataset>/<model>/<time>/`` or a sweep's ``outputs/train/multirun/<time>/<n>_<dataset>_<model>/``)::

    {"status": "complete", "dataset": "mnist", "model": "cnn_basic", "finished": "2026-...",
     "best_checkpoint": ".../checkpoints/best.ckpt", "last_checkpoint": ".../checkpoints/last.ckpt", ...}

``find_latest_run(outputs_dir, dataset, model)`` scans ``<outputs_dir>/train/**/run.json`` and
returns the newest complete run of that dataset+model; the visualizer uses its best checkpoint.
Interrupted runs have no ``status: complete`` record and are never picked for visualizing, but
``find_resumable_checkpoint`` finds their ``last.ckpt`` / ``interrupted.ckpt`` for ``resume=latest``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import NoCheckpointError

RUN_RECORD = "run.json"


@dataclass(frozen=True)
class RunRecord:
    run_dir: Path
    dataset: str
    model: str
    finished: str
    best_checkpoint: Path
    last_checkpoint: Path | None
    record: dict


def write_run_record(run_dir: Path, record: dict) -> Path:
    path = Path(run_dir) / RUN_RECORD
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def _records(outputs_dir: Path):
    root = Path(outputs_dir).resolve() / "train"
    if not root.is_dir():
        return
    for path in root.rglob(RUN_RECORD):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        yield path.parent, rec


def list_runs(outputs_dir: Path, dataset: str | None = None, model: str | None = None) -> list[RunRecord]:
    runs = []
    for run_dir, rec in _records(outputs_dir):
        if rec.get("status") != "complete":
            continue
        if (dataset and rec.get("dataset") != dataset) or (model and rec.get("model") != model):
            continue
        best = Path(rec.get("best_checkpoint") or "")
        if not best.is_file():
            continue
        last = rec.get("last_checkpoint")
        runs.append(RunRecord(run_dir, rec["dataset"], rec["model"], rec.get("finished", ""), best,
                              Path(last) if last else None, rec))
    return sorted(runs, key=lambda r: r.finished)


def find_latest_run(outputs_dir: Path, dataset: str, model: str | None = None) -> RunRecord:
    """The newest complete run of dataset+model (``model=None``: of any model)."""
    runs = list_runs(outputs_dir, dataset, model)
    if not runs:
        what = f"dataset={dataset}" + (f" model={model}" if model else "")
        cmd = f"python train.py dataset={dataset}" + (f" model={model}" if model else "")
        raise NoCheckpointError(
            f"no trained checkpoint for {what} under {Path(outputs_dir) / 'train'}.\n"
            f"Train one first:  {cmd}\n"
            f"or pass a checkpoint explicitly:  ckpt=path/to/file.ckpt")
    return runs[-1]


def find_resumable_checkpoint(outputs_dir: Path, dataset: str, model: str) -> Path:
    """The newest ``interrupted.ckpt`` / ``last.ckpt`` of any run (finished or not) of dataset+model.

    A run writes ``run.json`` with ``status: running`` when training starts, so unfinished runs
    are found too."""
    candidates = []
    for run_dir, rec in _records(outputs_dir):
        if rec.get("dataset") == dataset and rec.get("model") == model:
            candidates += [p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.stem in ("interrupted", "last")]
    if not candidates:
        raise NoCheckpointError(
            f"resume=latest: no last.ckpt or interrupted.ckpt for dataset={dataset} model={model} "
            f"under {Path(outputs_dir) / 'train'}. Pass resume=path/to/checkpoint.ckpt instead.")
    return max(candidates, key=lambda p: p.stat().st_mtime)
