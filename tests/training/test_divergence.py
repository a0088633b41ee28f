"""A diverged training run stops, is recorded as failed with the reason and is never picked;
learning rate and weight decay must be finite and positive (weight decay may be 0)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.cli import run_job
from pipeline.errors import ConfigError, NoCheckpointError
from pipeline.training.divergence import StopOnDivergence, TrainingDiverged
from pipeline.training.registry import find_latest_run, find_resumable_run
from pipeline.training.train import run_training


@pytest.mark.parametrize("lr,needle", [("1e9", "reached"), ("1e30", "became nan")])
def test_a_diverged_run_is_recorded_as_failed_and_never_picked(tiny_cfg, lr, needle):
    cfg = tiny_cfg("lines", "cnn_basic", [f"model.optimizer.lr={lr}"])
    with pytest.raises(TrainingDiverged, match=f"training loss {needle}") as info:
        run_training(cfg)
    assert f"model.optimizer.lr={float(lr):g}" in str(info.value) and "smaller learning rate" in str(info.value)
    record = json.loads((Path(cfg.paths.output_dir) / "run.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("training diverged")
    assert record["pid"] == os.getpid() and record["host"]  # who trained it: a killed run is told apart (stale)
    outputs = Path(cfg.paths.outputs_dir)
    with pytest.raises(NoCheckpointError, match="1 failed run"):  # the visualizer never picks it
        find_latest_run(outputs, "lines", "cnn_basic")
    with pytest.raises(NoCheckpointError):  # nor does resume=latest
        find_resumable_run(outputs, "lines", "cnn_basic")


def test_divergence_through_the_entry_point_is_one_paragraph(tiny_cfg, capsys):
    cfg = tiny_cfg("lines", "cnn_basic", ["model.optimizer.lr=1e9"])
    with pytest.raises(SystemExit) as info:
        run_job(run_training, cfg)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error: training diverged" in err and "Traceback" not in err and "Continue it with" not in err
    assert (Path(cfg.paths.output_dir) / "metrics.csv").is_file()  # what the run wrote is kept


@pytest.mark.parametrize("override,needle", [
    ("model.optimizer.lr=inf", "model.optimizer.lr=inf is invalid: it must be a finite positive number"),
    ("model.optimizer.lr=nan", "model.optimizer.lr=nan is invalid"),
    ("model.optimizer.lr=0", "model.optimizer.lr=0 is invalid"),
    ("model.optimizer.weight_decay=-0.1", "model.optimizer.weight_decay=-0.1 is invalid: it must be a finite number >= 0"),
    ("model.optimizer.weight_decay=inf", "model.optimizer.weight_decay=inf is invalid"),
])
def test_learning_rate_and_weight_decay_must_be_finite(tiny_cfg, tmp_path, override, needle):
    cfg = tiny_cfg("lines", "cnn_deep", [override])
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("(", r"\(")):
        run_training(cfg)
    assert not (tmp_path / "outputs").exists()


def test_the_guard_is_one_of_the_default_callbacks(tiny_cfg):
    cfg = tiny_cfg("lines", "cnn_basic")
    assert cfg.callbacks.divergence._target_ == "pipeline.training.divergence.StopOnDivergence"
    with pytest.raises(ValueError, match="max_loss"):
        StopOnDivergence(max_loss=0)
