"""What each run directory of a sweep says about itself: complete (with its summary) or failed
(with its error line), read from the files the jobs leave, so it is the same whichever Hydra
launcher ran them (in this process, in joblib workers, as submitit jobs).

Per run directory (``<n>_...`` under the sweep directory), the first that applies:

- ``error.json``: the job failed (pipeline/failures.py): its error line and exit code;
- ``summary.json``: a visualize run: job, dataset, model, images, the checkpoint it used and that
  checkpoint's test accuracy, the job's key numbers, the first observation; thumbnail: its main
  figure (the first figure of its jobs);
- ``run.json``: a training run: its status (complete, failed, interrupted, stale, ...), dataset,
  model, its best checkpoint, test accuracy and macro F1, best validation accuracy, epochs;
  thumbnail: its accuracy curves;
- ``test_metrics.json``: an eval run: dataset, model, the checkpoint, accuracy, macro F1;
  thumbnail: the main head's confusion matrix;
- only Hydra's files: the job left no result (killed?): failed, see its log.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.failures import read_failure_record
from pipeline.rendering.output import shown_file
from pipeline.report.sections import format_value


@dataclass
class SweepRun:
    label: str                       # the run directory's name, e.g. "1_mnist_cnn_basic"
    path: Path
    status: str                      # complete | failed | interrupted | stale | running
    error: str | None = None
    exit_code: int | None = None
    summary: dict = field(default_factory=dict)
    thumbnail: Path | None = None    # the run's main figure, shown small in the sweep's index

    @property
    def failed(self) -> bool:
        return self.status != "complete"

    def row(self) -> dict:
        """One row of the sweep index (and of sweep.json)."""
        return {"run": self.label, "status": self.status, **self.summary, "error": self.error}


def _job_number(name: str) -> tuple[int, str]:
    m = re.match(r"(\d+)", name)
    return (int(m.group(1)) if m else 1 << 30, name)


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _log_of(sub: Path) -> str:
    logs = sorted(sub.glob("*.log"))
    return f"see {sub.name}/{logs[0].name}" if logs else "see its folder"


def _checkpoint_cells(info: dict) -> dict:
    """The sweep index's columns for the checkpoint a visualize run used: its training run's folder
    and file, test accuracy and training time (``cut short`` marked)."""
    ckpt = Path(info["checkpoint"]) if info.get("checkpoint") else None
    run = Path(info["train_run"]).name if info.get("train_run") else None
    cells = {"checkpoint": f"{run}/{ckpt.name}" if run and ckpt else (str(ckpt) if ckpt else None),
             "ckpt_test_accuracy": info.get("test_accuracy"), "trained": info.get("trained")}
    if info.get("cut_short"):
        cells["checkpoint"] += " (cut short)"
    return cells


def _relative(path: str, sub: Path) -> str:
    """A file of the run directory as ``checkpoints/best.ckpt``; any other path as it is."""
    try:
        return Path(path).resolve().relative_to(sub.resolve()).as_posix()
    except ValueError:
        return str(path)


def read_run(sub: Path) -> SweepRun | None:
    """The state of one run directory of a sweep (None for a folder that is not a run)."""
    failure = read_failure_record(sub)
    if failure is not None:
        return SweepRun(sub.name, sub, "failed", failure.get("error"), failure.get("exit_code"),
                        {k: failure.get(k) for k in ("job", "dataset", "model") if failure.get(k) is not None})
    s = _load(sub / "summary.json") if (sub / "summary.json").is_file() else None
    if s is not None:
        main = sub / s["main_figure"] if s.get("main_figure") else None
        if main is None or not main.is_file():  # a run from before main_figure: its first figure file
            main = next(iter(sorted((sub / "figures").rglob("*.png"))), None) if (sub / "figures").is_dir() else None
        return SweepRun(sub.name, sub, "complete", summary={
            "job": s.get("job"), "dataset": s.get("dataset"), "model": s.get("model"), "images": s.get("images"),
            **_checkpoint_cells(s.get("checkpoint_info") or {"checkpoint": s.get("checkpoint")}),
            "key numbers": "; ".join(f"{k} {format_value(v)}" for k, v in (s.get("key_numbers") or {}).items()) or None,
            "observation": (s.get("observations") or [""])[0]}, thumbnail=main)
    rec = _load(sub / "run.json") if (sub / "run.json").is_file() else None
    if rec is not None:
        from pipeline.training.registry import run_state

        state = run_state(rec)
        error = rec.get("error") or (rec.get("reason") if state != "complete" else None)
        if state in ("running", "stale") and not error:
            error = f"the training process stopped without finishing ({_log_of(sub)})"
        best = rec.get("best_checkpoint")
        return SweepRun(sub.name, sub, state, error, 1 if state != "complete" else None,
                        {"dataset": rec.get("dataset"), "model": rec.get("model"),
                         "checkpoint": _relative(best, sub) if best else None,
                         "test_accuracy": rec.get("test_accuracy"), "test_f1_macro": rec.get("test_f1_macro"),
                         "best_val_acc": rec.get("best_val_acc"),
                         **({"cut_short": "; ".join(rec["cut_short"])} if rec.get("cut_short") else {})},
                        thumbnail=shown_file(sub / "curves" / "accuracy.png"))
    m = _load(sub / "test_metrics.json") if (sub / "test_metrics.json").is_file() else None
    if m is not None:
        heads = m.get("heads") or {}
        main = "aggregate" if "aggregate" in heads else next(iter(heads), "class")
        return SweepRun(sub.name, sub, "complete", summary={"dataset": m.get("dataset"), "model": m.get("model"),
                                                            "checkpoint": m.get("checkpoint"),
                                                            "accuracy": m.get("accuracy"), "f1_macro": m.get("f1_macro")},
                        thumbnail=shown_file(sub / "confusion" / f"{main}.png"))
    if (sub / ".hydra").is_dir():
        return SweepRun(sub.name, sub, "failed", f"the job left no result ({_log_of(sub)})", 1)
    return None


def collect_runs(sweep_dir: Path) -> list[SweepRun]:
    """Every run of the sweep, in job order (``2_...`` before ``10_...``); hidden folders
    (``.submitit/``) are not runs."""
    subs = sorted((p for p in Path(sweep_dir).iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: _job_number(p.name))
    return [r for r in (read_run(s) for s in subs) if r is not None]
