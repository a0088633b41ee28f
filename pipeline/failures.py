"""The record a failed job of a sweep leaves in its run directory: ``error.json``.

A sweep (``-m``) runs every combination even when some fail; each failed one keeps its run
directory (Hydra's ``.hydra/`` and the job log) with this record, so the sweep index can list it
with its error line whichever launcher ran it (each job may run in another process or on another
machine: the file system is the only thing they share)::

    {"status": "failed", "error": "model=multihead has one head per line variation ...",
     "exit_code": 2, "kind": "bad input", "task": "train", "dataset": "mnist", "model": "multihead",
     "job": null, "overrides": ["dataset=mnist", "model=multihead"], "pid": 123, "host": "node1"}

``exit_code`` is 2 for bad input (an actionable error) and 1 for a crash (its traceback is in
the job's log).
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.leftovers import partial_path
from pipeline.processes import this_process

FAILURE_RECORD = "error.json"


def _name(cfg, group: str):
    node = cfg.get(group) if cfg is not None else None
    try:
        return node.get("name") if node is not None else None
    except AttributeError:
        return None


def write_failure_record(run_dir: Path, error: str, exit_code: int, cfg=None, overrides=()) -> Path:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"status": "failed", "error": error, "exit_code": int(exit_code),
              "kind": "bad input" if exit_code == 2 else "crash",
              "task": cfg.get("task") if cfg is not None else None,
              "dataset": _name(cfg, "data"), "model": _name(cfg, "model"), "job": _name(cfg, "job"),
              "overrides": list(overrides), **this_process()}
    path = run_dir / FAILURE_RECORD
    tmp = partial_path(path)
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)
    return path


def read_failure_record(run_dir: Path) -> dict | None:
    path = Path(run_dir) / FAILURE_RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"status": "failed", "error": f"{path} is unreadable", "exit_code": 1}
