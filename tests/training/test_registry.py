"""Finding the newest complete training run without the user copying paths."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import NoCheckpointError
from pipeline.training.registry import find_latest_run, find_resumable_checkpoint, write_run_record


def _run(root: Path, name: str, dataset: str, model: str, status: str, finished: str) -> Path:
    run_dir = root / "train" / dataset / model / name
    (run_dir / "checkpoints").mkdir(parents=True)
    best = run_dir / "checkpoints" / "best.ckpt"
    best.write_bytes(b"x")
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
    write_run_record(run_dir, {"status": status, "dataset": dataset, "model": model, "finished": finished,
                               "best_checkpoint": str(best), "last_checkpoint": str(run_dir / "checkpoints" / "last.ckpt")})
    return run_dir


def test_newest_complete_run_of_the_dataset_and_model_wins(tmp_path):
    _run(tmp_path, "a", "mnist", "cnn_basic", "complete", "2026-01-01T10:00:00")
    b = _run(tmp_path, "b", "mnist", "cnn_basic", "complete", "2026-01-02T10:00:00")
    _run(tmp_path, "c", "mnist", "cnn_basic", "interrupted", "")
    d = _run(tmp_path, "d", "mnist", "cnn_deep", "complete", "2026-01-03T10:00:00")
    _run(tmp_path, "e", "lines", "multihead", "complete", "2026-01-04T10:00:00")
    assert find_latest_run(tmp_path, "mnist", "cnn_basic").run_dir == b.resolve()
    assert find_latest_run(tmp_path, "mnist").run_dir == d.resolve()  # any model
    with pytest.raises(NoCheckpointError, match="python train.py dataset=fashion_mnist model=cnn_deep"):
        find_latest_run(tmp_path, "fashion_mnist", "cnn_deep")


def test_a_record_whose_checkpoint_vanished_is_skipped(tmp_path):
    a = _run(tmp_path, "a", "mnist", "cnn_basic", "complete", "2026-01-01T10:00:00")
    b = _run(tmp_path, "b", "mnist", "cnn_basic", "complete", "2026-01-02T10:00:00")
    (b / "checkpoints" / "best.ckpt").unlink()
    assert find_latest_run(tmp_path, "mnist", "cnn_basic").run_dir == a.resolve()


def test_resume_latest_finds_unfinished_runs_too(tmp_path):
    c = _run(tmp_path, "c", "mnist", "cnn_basic", "interrupted", "")
    assert find_resumable_checkpoint(tmp_path, "mnist", "cnn_basic").parent == (c / "checkpoints").resolve()
    with pytest.raises(NoCheckpointError, match="resume=latest"):
        find_resumable_checkpoint(tmp_path, "lines", "cnn_basic")
