"""The sweep index read from run directories: complete and failed runs of every kind, in job
order, failed evaluate runs in the joined evaluation table, and the sweep's exit status."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from pipeline.failures import write_failure_record
from pipeline.report.sweep import sweep_exit_code, write_index_for
from pipeline.report.sweep_runs import collect_runs


def _hydra(d: Path) -> Path:
    (d / ".hydra").mkdir(parents=True)
    (d / "visualize.log").write_text("log")
    return d


def test_runs_of_every_kind_are_listed_in_job_order(tmp_path):
    sweep = tmp_path / "sweep"
    ok = _hydra(sweep / "0_evaluate_lines")
    (ok / "summary.json").write_text(json.dumps({"job": "evaluate", "dataset": "lines", "model": "multihead"}))
    (ok / "evaluation.json").write_text(json.dumps([{"method": "gradcam", "head": "angle", "pointing_game": 0.9}]))
    bad = _hydra(sweep / "2_evaluate_lines")
    write_failure_record(bad, "unknown layer 'x' in MultiHead. Valid layer names: ...", 2,
                         {"task": "visualize", "data": {"name": "lines"}, "job": {"name": "evaluate"}})
    killed = _hydra(sweep / "10_gradcam_lines")  # no result at all: killed
    train = sweep / "3_lines_cnn_basic"
    train.mkdir()
    (train / "run.json").write_text(json.dumps({"status": "failed", "dataset": "lines", "model": "cnn_basic",
                                                "error": "training diverged: ..."}))
    (sweep / ".submitit").mkdir()  # the launcher's own folder is not a run

    runs = collect_runs(sweep)
    assert [(r.label, r.status) for r in runs] == [("0_evaluate_lines", "complete"), ("2_evaluate_lines", "failed"),
                                                  ("3_lines_cnn_basic", "failed"), ("10_gradcam_lines", "failed")]
    assert runs[1].exit_code == 2 and runs[1].summary == {"job": "evaluate", "dataset": "lines"}
    assert "no result" in runs[3].error and "10_gradcam_lines/visualize.log" in runs[3].error
    assert sweep_exit_code(runs) == 1  # a run without a result counts as a crash
    assert sweep_exit_code(runs[:2]) == 2 and sweep_exit_code(runs[:1]) == 0

    html = write_index_for(sweep).read_text()
    assert "unknown layer" in html and "training diverged" in html and killed.name in html
    record = json.loads((sweep / "sweep.json").read_text())
    assert record["total"] == 4 and record["failed"] == 3
    with open(sweep / "evaluation.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["run"], r.get("status"), r["pointing_game"]) for r in rows] == [
        ("0_evaluate_lines", "", "0.9"), ("2_evaluate_lines", "failed", "")]
    assert rows[1]["error"].startswith("unknown layer")
