"""The sweep index links each complete run's explorer.html (pipeline/report/sweep.py)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline.report.sweep import write_index_for


def _run(d: Path, explorer: bool) -> Path:
    (d / ".hydra").mkdir(parents=True)
    (d / "visualize.log").write_text("log")
    (d / "index.html").write_text("run")
    (d / "summary.json").write_text(json.dumps({"job": "all", "dataset": "lines", "model": "multihead", "images": 6}))
    if explorer:
        (d / "explorer.html").write_text("<!DOCTYPE html>")
    return d


def test_sweep_index_links_each_runs_explorer(tmp_path):
    sweep = tmp_path / "sweep"
    _run(sweep / "0_all_lines", True)
    _run(sweep / "1_all_mnist", False)
    html = write_index_for(sweep).read_text()
    explorers = html[html.index("Explorers"):]
    hrefs = re.findall(r'href="([^"]*explorer\.html)"', explorers)
    tables = re.findall(r"<td>([^<]*explorer\.html)</td>", explorers)
    found = hrefs or tables   # a link where the report has links, else the path in a table
    assert [Path(h).parent.name for h in found] == ["0_all_lines"]
    assert all((sweep / h).is_file() or Path(h).is_file() for h in found)
