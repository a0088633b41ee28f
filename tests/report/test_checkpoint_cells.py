"""The checkpoint a visualize run used, in its console line, report header and a sweep's index (issue 11)."""
from __future__ import annotations

import json

from pipeline.report.sweep_runs import read_run
from pipeline.visualize_run import checkpoint_line

INFO = {"checkpoint": "/o/train/lines/multihead/2026-11-26_01-53/checkpoints/best.ckpt",
        "train_run": "/o/train/lines/multihead/2026-11-26_01-53", "test_accuracy": 0.99875,
        "trained": "2026-11-26 01:54", "cut_short": []}


def test_checkpoint_line_names_the_run_accuracy_and_time():
    assert checkpoint_line(INFO) == ("checkpoint /o/train/lines/multihead/2026-11-26_01-53/checkpoints/best.ckpt "
                                     "(run /o/train/lines/multihead/2026-11-26_01-53; test accuracy 0.9988; "
                                     "trained 2026-11-26 01:54)")
    short = {**INFO, "cut_short": ["limit_train_batches=5 (5 of 1200 batches per epoch)"], "test_accuracy": 0.195}
    assert checkpoint_line(short).endswith("test accuracy 0.1950; trained 2026-11-26 01:54; "
                                           "CUT SHORT: limit_train_batches=5 (5 of 1200 batches per epoch))")
    bare = {"checkpoint": "/x/model.ckpt", "train_run": None, "test_accuracy": None, "trained": None}
    assert checkpoint_line(bare) == ("checkpoint /x/model.ckpt (no training run record; test accuracy unknown; "
                                     "trained unknown)")


def test_sweep_index_row_shows_the_checkpoint_its_accuracy_and_when_trained(tmp_path):
    sub = tmp_path / "0_gradcam_lines"
    sub.mkdir()
    (sub / "summary.json").write_text(json.dumps({"job": "gradcam", "dataset": "lines", "model": "multihead",
                                                  "images": 6, "checkpoint": INFO["checkpoint"],
                                                  "checkpoint_info": {**INFO, "cut_short": ["max_steps=5"]},
                                                  "observations": ["x"]}))
    row = read_run(sub).row()
    assert row["checkpoint"] == "2026-11-26_01-53/best.ckpt (cut short)"
    assert row["ckpt_test_accuracy"] == 0.99875 and row["trained"] == "2026-11-26 01:54"
