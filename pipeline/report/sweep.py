"""The sweep-level index page: a Hydra callback that, when a multirun ends, links every
run's report from ``<sweep dir>/index.html`` (and lists runs that failed)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pipeline.report.html import write_sweep_index


def write_index_for(sweep_dir: Path, title: str = "") -> Path | None:
    sweep_dir = Path(sweep_dir)
    runs = []
    for sub in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        summary = sub / "summary.json"
        if summary.is_file():
            s = json.loads(summary.read_text())
            runs.append({"label": sub.name, "href": str(sub / "index.html"),
                         "summary": {"job": s.get("job"), "dataset": s.get("dataset"), "model": s.get("model"),
                                     "images": s.get("images"),
                                     "observation": (s.get("observations") or [""])[0]}})
        elif (sub / ".hydra").is_dir():
            runs.append({"label": sub.name, "href": str(sub), "summary": {"status": "failed (no report); see its log"}})
    if not runs:
        return None
    return write_sweep_index(sweep_dir / "index.html", title or f"Sweep {sweep_dir.name}", runs)


class SweepIndexCallback(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = write_index_for(Path(config.hydra.sweep.dir))
        if path is not None:
            print(f"sweep index: {path}")
