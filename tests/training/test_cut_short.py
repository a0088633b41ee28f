"""Runs cut short (limit_*_batches below an epoch, max_steps, fast_dev_run) are recorded as such and
never picked by visualize's checkpoint search unless asked (issue 11)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import NoCheckpointError
from pipeline.training.registry import find_latest_run, write_run_record
from pipeline.training.train import run_training
from pipeline.visualization.context import resolve_checkpoint
from tests.conftest import compose_cfg


def _run(root: Path, name: str, finished: str, cut_short: list[str] | None = None, acc: float = 0.5) -> Path:
    run_dir = root / "train" / "lines" / "multihead" / name
    (run_dir / "checkpoints").mkdir(parents=True)
    best = run_dir / "checkpoints" / "best.ckpt"
    best.write_bytes(b"x")
    write_run_record(run_dir, {"status": "complete", "dataset": "lines", "model": "multihead", "finished": finished,
                               "best_checkpoint": str(best), "test_accuracy": acc, "cut_short": cut_short or []})
    return run_dir


def test_a_newer_cut_short_run_is_not_picked(tmp_path):
    full = _run(tmp_path, "full", "2026-01-01T10:00:00", acc=1.0)
    short = _run(tmp_path, "smoke", "2026-01-02T10:00:00", ["limit_train_batches=5 (5 of 1200 batches per epoch)"], 0.195)
    assert find_latest_run(tmp_path, "lines").run_dir == full.resolve()
    assert find_latest_run(tmp_path, "lines", include_cut_short=True).run_dir == short.resolve()


def test_only_cut_short_runs_is_an_error_naming_them_and_how_to_use_one(tmp_path):
    short = _run(tmp_path, "smoke", "2026-01-02T10:00:00", ["limit_train_batches=5 (5 of 1200 batches per epoch)"], 0.195)
    with pytest.raises(NoCheckpointError) as info:
        find_latest_run(tmp_path, "lines")
    msg = str(info.value)
    assert msg.splitlines()[0].startswith("only cut-short training runs exist for dataset=lines")
    assert (f"  {short.resolve()}  (multihead, limit_train_batches=5 (5 of 1200 batches per epoch); "
            f"test accuracy 0.195; 2026-01-02T10:00:00)") in msg
    assert f"ckpt={short.resolve() / 'checkpoints' / 'best.ckpt'}" in msg and "search_cut_short=true" in msg
    assert "python train.py dataset=lines" in msg


def _train(root: Path, *extra: str) -> dict:
    cfg = compose_cfg(root, ["dataset=lines", "data.per_class=6", "data.batch_size=64", "data.progress=false",
                             "model=cnn_basic", "trainer=cpu", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                             "trainer.enable_model_summary=false", *extra])
    summary = run_training(cfg)
    return json.loads((Path(summary["run_dir"]) / "run.json").read_text())


def test_training_records_why_a_run_was_cut_short_and_visualize_skips_it(tmp_path):
    full = _train(tmp_path)  # 4 training batches per epoch at this size: a full epoch
    assert full["cut_short"] == []
    limited = _train(tmp_path, "trainer.limit_train_batches=3")
    assert limited["cut_short"] == ["limit_train_batches=3 (3 of 4 batches per epoch)"]
    stepped = _train(tmp_path, "trainer.max_epochs=2", "+trainer.max_steps=2")
    assert stepped["cut_short"] == ["max_steps=2 reached after 2 of 8 steps (2 epochs)"]
    fraction = _train(tmp_path, "trainer.limit_train_batches=0.5")
    assert fraction["cut_short"] == ["limit_train_batches=0.5 (0.5 of the batches per epoch)"]
    vis = compose_cfg(tmp_path, ["dataset=lines", "data.per_class=6"], config_name="visualize")
    ckpt, run_dir = resolve_checkpoint(vis)
    assert run_dir == Path(full["run_dir"]).resolve() and ckpt == Path(full["best_checkpoint"]).resolve()
    vis = compose_cfg(tmp_path, ["dataset=lines", "data.per_class=6", "search_cut_short=true"], config_name="visualize")
    assert resolve_checkpoint(vis)[1] == Path(fraction["run_dir"]).resolve()


@pytest.mark.parametrize("name,key,value", [("fast", "fast_dev_run", True), ("overfit", "overfit_batches", 3),
                                            ("profile", "limit_train_batches", 20)])
def test_debug_configs_write_under_outputs_debug(tmp_path, name, key, value):
    cfg = compose_cfg(tmp_path, [f"debug={name}"])
    assert cfg.trainer[key] == value and cfg.trainer.accelerator == "cpu"
    run_dir = cfg.hydra.run.dir
    assert run_dir.startswith(f"{tmp_path}/outputs/debug/{name}/lines/multihead/"), run_dir
    if name == "profile":
        assert cfg.trainer.profiler == "simple"


def test_debug_fast_run_is_recorded_cut_short_and_says_so(tmp_path, capsys):
    rec = _train(tmp_path, "debug=fast")
    assert rec["cut_short"][0] == "fast_dev_run=True" and rec["best_checkpoint"] is None
    out = capsys.readouterr().out
    assert " CUT SHORT:       fast_dev_run=True" in out and "visualize.py's search skips this run" in out
    assert "next:" not in out
