"""callbacks=stop_at_target: the run ends at the first validation that reaches the target, and
is a complete run (not cut short), so visualize.py may pick it."""
from __future__ import annotations

import json

from pipeline.training.train import run_training
from tests.conftest import TINY, compose_cfg

TRAINER = ["trainer=cpu", "trainer.max_epochs=3", "trainer.enable_progress_bar=false",
           "trainer.enable_model_summary=false", "callbacks=stop_at_target"]


def _train(tmp_path, threshold, interval):
    cfg = compose_cfg(tmp_path, [*TINY["lines"], "model=multihead", *TRAINER,
                                 f"callbacks.stop_at_target.stopping_threshold={threshold}",
                                 f"trainer.val_check_interval={interval}"])
    return run_training(cfg)


def test_the_run_stops_at_the_first_validation_that_reaches_the_target(tmp_path):
    full = _train(tmp_path / "full", 1.01, 1.0)  # unreachable: all 3 epochs
    steps_per_epoch = full["global_step"] // 3
    assert full["global_step"] == 3 * steps_per_epoch and steps_per_epoch >= 4
    early = _train(tmp_path / "early", 0.0, 0.5)  # reached at the first validation, half an epoch in
    assert early["global_step"] == steps_per_epoch // 2
    assert early["cut_short"] == []
    record = json.loads((early["run_dir"] / "run.json").read_text())
    assert record["status"] == "complete" and not record["cut_short"]
