"""Finding trained checkpoints without copying paths.

Every training run writes ``run.json`` in its run directory (Hydra's output dir,
``outputs/train/<dataset>/<model>/<time>/`` or a sweep's ``outputs/train/multirun/<time>/<n>_<dataset>_<model>/``)::

    {"status": "complete", "dataset": "mnist", "model": "cnn_basic", "finished": "2026-...",
     "best_checkpoint": ".../checkpoints/best.ckpt", "last_checkpoint": ".../checkpoints/last.ckpt",
     "pid": 1234, "host": "node1", ...}

Status: ``running`` while it trains (with the pid and host of the process), then ``complete``,
``interrupted`` (Ctrl-C or a crash after training started: resumable) or ``failed`` (bad input,
a diverged loss: never picked, never resumed). A ``running`` run whose process is gone (killed
with -9, a lost node) is reported as ``stale`` by :func:`run_state` and treated as interrupted.

``find_latest_run(outputs_dir, dataset, model)`` scans ``<outputs_dir>/train/**/run.json`` and
returns the newest complete run of that dataset+model; the visualizer uses its best checkpoint.
``find_resumable_run`` is ``resume=latest``: the newest interrupted (or stale) run of
dataset+model that no later run has already continued, and its newest ``interrupted.ckpt`` /
``last.ckpt``. A complete run is never resumed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import NoCheckpointError
from pipeline.leftovers import write_text_atomic
from pipeline.processes import writer_alive

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
    return write_text_atomic(Path(run_dir) / RUN_RECORD, json.dumps(record, indent=2, sort_keys=True))


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


def list_runs(outputs_dir: Path, dataset: str | None = None, model: str | None = None,
              include_cut_short: bool = True) -> list[RunRecord]:
    runs = []
    for run_dir, rec in _records(outputs_dir):
        if rec.get("status") != "complete" or (rec.get("cut_short") and not include_cut_short):
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


def run_state(rec: dict) -> str:
    """The record's status, with ``stale`` for a ``running`` run whose process is gone."""
    status = rec.get("status") or "unknown"
    if status == "running" and writer_alive(rec.get("pid"), rec.get("host"), rec.get("pid_start")) is False:
        return "stale"
    return status


def _unfinished_hint(outputs_dir: Path, dataset: str, model: str | None) -> str:
    states: dict[str, int] = {}
    for _, rec in _records(outputs_dir):
        if rec.get("dataset") == dataset and (model is None or rec.get("model") == model):
            st = run_state(rec)
            states[st] = states.get(st, 0) + 1
    parts = [f"{n} {st}" for st, n in sorted(states.items()) if st != "complete"]
    if not parts:
        return ""
    hint = f"\n({', '.join(parts)} run(s) of it exist; they are not used"
    if states.get("interrupted") or states.get("stale"):
        hint += f"; continue the newest unfinished one with: python train.py dataset={dataset}" + \
                (f" model={model}" if model else "") + " resume=latest"
    return hint + ")"


def _cut_short_error(outputs_dir: Path, what: str, short: list[RunRecord]) -> NoCheckpointError:
    lines = [f"only cut-short training runs exist for {what} under {Path(outputs_dir) / 'train'}; they are never "
             f"picked automatically (a smoke test is not a trained model):"]
    for r in reversed(short[-5:]):
        acc = r.record.get("test_accuracy")
        lines.append(f"  {r.run_dir}  ({r.model}, {'; '.join(r.record['cut_short'])}; test accuracy "
                     f"{'?' if acc is None else f'{acc:.3f}'}; {r.finished[:19]})")
    lines += [f"Train a full run:  python train.py {what}",
              f"or use one of them anyway:  ckpt={short[-1].best_checkpoint}   (or search_cut_short=true)"]
    return NoCheckpointError("\n".join(lines))


def find_latest_run(outputs_dir: Path, dataset: str, model: str | None = None,
                    include_cut_short: bool = False) -> RunRecord:
    """The newest complete run of dataset+model (``model=None``: of any model); runs cut short
    (``cut_short`` in run.json: fast_dev_run, limit_*_batches, max_steps) only with ``include_cut_short``."""
    runs = list_runs(outputs_dir, dataset, model, include_cut_short=include_cut_short)
    if not runs:
        what = f"dataset={dataset}" + (f" model={model}" if model else "")
        short = [r for r in list_runs(outputs_dir, dataset, model) if r.record.get("cut_short")]
        if short:
            raise _cut_short_error(outputs_dir, what, short)
        cmd = f"python train.py dataset={dataset}" + (f" model={model}" if model else "")
        raise NoCheckpointError(
            f"no trained checkpoint for {what} under {Path(outputs_dir) / 'train'}.\n"
            f"Train one first:  {cmd}\n"
            f"or pass a checkpoint explicitly:  ckpt=path/to/file.ckpt" + _unfinished_hint(outputs_dir, dataset, model))
    return runs[-1]


RESUMABLE = ("interrupted", "stale")


@dataclass(frozen=True)
class Resumable:
    run_dir: Path
    checkpoint: Path          # the run's newest interrupted.ckpt / last.ckpt
    state: str                # interrupted | stale
    record: dict
    others: tuple[Path, ...]  # the run's other checkpoint(s), then those of older unfinished runs


def _checkpoints(run_dir: Path) -> list[Path]:
    found = [p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.stem in ("interrupted", "last")]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def find_resumable_run(outputs_dir: Path, dataset: str, model: str) -> Resumable:
    """``resume=latest``: the newest interrupted (or stale) run of dataset+model that has a checkpoint
    and that no complete or still-running run has continued already."""
    records = list(_records(outputs_dir))
    continued = set()
    for run_dir, rec in records:
        if rec.get("resumed_from") and run_state(rec) in ("complete", "running"):
            continued.add(Path(rec["resumed_from"]).resolve().parent.parent)
    candidates, finished, running = [], 0, 0
    for run_dir, rec in records:
        if rec.get("dataset") != dataset or rec.get("model") != model:
            continue
        state = run_state(rec)
        finished += state == "complete"
        running += state == "running"
        if state not in RESUMABLE or run_dir.resolve() in continued:
            continue
        ckpts = _checkpoints(run_dir)
        if ckpts:
            candidates.append((ckpts[0].stat().st_mtime, run_dir, ckpts, state, rec))
    if not candidates:
        seen = f" ({finished} complete, {running} still running: neither is resumed)" if finished or running else ""
        raise NoCheckpointError(
            f"resume=latest: no interrupted run of dataset={dataset} model={model} with a last.ckpt or "
            f"interrupted.ckpt under {Path(outputs_dir) / 'train'}{seen}. Train a new run (drop resume=), or pass "
            f"resume=path/to/checkpoint.ckpt to continue from a specific checkpoint.")
    candidates.sort(key=lambda c: c[0], reverse=True)
    _, run_dir, ckpts, state, rec = candidates[0]
    others = tuple(ckpts[1:]) + tuple(c for cand in candidates[1:] for c in cand[2])
    return Resumable(run_dir, ckpts[0], state, rec, others)


def find_resumable_checkpoint(outputs_dir: Path, dataset: str, model: str) -> Path:
    """The checkpoint ``resume=latest`` continues from (see :func:`find_resumable_run`)."""
    return find_resumable_run(outputs_dir, dataset, model).checkpoint
