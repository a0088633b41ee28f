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


def test_index_shows_checkpoint_accuracy_key_numbers_and_a_thumbnail_per_run(tmp_path):
    """Each run's row: the checkpoint it used (or wrote), that checkpoint's test accuracy, the job's
    key numbers and a small picture of its main figure that links to the full-size file."""
    from html.parser import HTMLParser

    from PIL import Image

    sweep = tmp_path / "sweep"
    vis = _hydra(sweep / "0_probe_lines")
    (vis / "figures" / "probe").mkdir(parents=True)
    Image.new("RGB", (400, 300)).save(vis / "figures" / "probe" / "accuracy.png")
    (vis / "index.html").write_text("run")
    (vis / "summary.json").write_text(json.dumps({
        "job": "probe", "dataset": "lines", "model": "multihead", "images": 6,
        "checkpoint_info": {"checkpoint": "/r/t1/checkpoints/best.ckpt", "train_run": "/r/t1", "test_accuracy": 0.9975},
        "key_numbers": {"baseline accuracy (aggregate)": 0.99, "lowest accuracy (aggregate)": 0.43},
        "main_figure": "figures/probe/accuracy.png", "observations": ["length head uses brightness"]}))
    train = sweep / "1_lines_multihead"
    (train / "curves").mkdir(parents=True)
    Image.new("RGB", (700, 400)).save(train / "curves" / "accuracy.png")
    (train / "run.json").write_text(json.dumps({
        "status": "complete", "dataset": "lines", "model": "multihead", "test_accuracy": 0.98, "test_f1_macro": 0.97,
        "best_val_acc": 0.981, "best_checkpoint": str(train / "checkpoints" / "best.ckpt")}))

    runs = collect_runs(sweep)
    assert runs[0].summary["checkpoint"] == "t1/best.ckpt" and runs[0].summary["ckpt_test_accuracy"] == 0.9975
    assert runs[0].summary["key numbers"] == "baseline accuracy (aggregate) 0.99; lowest accuracy (aggregate) 0.43"
    assert runs[0].thumbnail == vis / "figures" / "probe" / "accuracy.png"
    assert runs[1].summary["checkpoint"] == "checkpoints/best.ckpt" and runs[1].summary["test_accuracy"] == 0.98
    assert runs[1].thumbnail == train / "curves" / "accuracy.png"

    out = write_index_for(sweep)

    class P(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.thumbs, self.th = [], [], []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "a":
                self.stack.append(a["href"])
            if tag == "img":
                self.thumbs.append((self.stack[-1], a["src"]))

        def handle_data(self, data):
            self.th.append(data)

    p = P()
    p.feed(out.read_text())
    assert p.thumbs == [("0_probe_lines/figures/probe/accuracy.png",) * 2, ("1_lines_multihead/curves/accuracy.png",) * 2]
    text = " ".join(p.th)
    for column in ("main figure", "checkpoint", "ckpt_test_accuracy", "key numbers", "test_accuracy",
                   "best_val_acc"):
        assert column in text
    assert "0.43" in text and "0.9975" in text and "checkpoints/best.ckpt" in text
