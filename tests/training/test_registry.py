"""Finding the newest complete training run without the user copying paths."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import NoCheckpointError
from pipeline.training.registry import (find_latest_run, find_resumable_checkpoint, find_resumable_run, run_state,
                                        write_run_record)


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


def _touch_later(path: Path, seconds: float) -> None:
    import os

    st = path.stat()
    os.utime(path, (st.st_atime + seconds, st.st_mtime + seconds))


def test_resume_latest_takes_the_newest_interrupted_run_never_a_complete_one(tmp_path):
    a = _run(tmp_path, "a", "mnist", "cnn_basic", "interrupted", "")
    b = _run(tmp_path, "b", "mnist", "cnn_basic", "complete", "2026-01-02T10:00:00")
    _touch_later(b / "checkpoints" / "last.ckpt", 100)  # the complete run's last.ckpt is the newest file
    found = find_resumable_run(tmp_path, "mnist", "cnn_basic")
    assert found.run_dir == a.resolve() and found.state == "interrupted"
    # once a complete run has continued it, it is not offered again
    write_run_record(b, {**json.loads((b / "run.json").read_text()),
                         "resumed_from": str(a / "checkpoints" / "last.ckpt")})
    with pytest.raises(NoCheckpointError, match=r"no interrupted run .*\(1 complete, 0 still running"):
        find_resumable_run(tmp_path, "mnist", "cnn_basic")


def test_a_run_killed_with_sigkill_is_stale_and_resumable(tmp_path):
    """A real `kill -9`: the process writes its running record the way run_training does and dies."""
    import subprocess
    import sys

    run_dir = _run(tmp_path, "k", "mnist", "cnn_basic", "interrupted", "")
    code = ("import os, signal, sys; from pipeline.processes import this_process; "
            "from pipeline.training.registry import write_run_record; "
            "write_run_record(sys.argv[1], {'status': 'running', 'dataset': 'mnist', 'model': 'cnn_basic', "
            "**this_process()}); os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", code, str(run_dir)], cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == -9
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["status"] == "running" and rec["host"] and rec["pid"] != __import__("os").getpid()
    assert run_state(rec) == "stale"
    assert find_resumable_run(tmp_path, "mnist", "cnn_basic").run_dir == run_dir.resolve()
    with pytest.raises(NoCheckpointError, match="1 stale run"):
        find_latest_run(tmp_path, "mnist", "cnn_basic")


def test_a_running_record_of_a_live_process_is_running(tmp_path):
    import os

    from pipeline.processes import this_process

    rec = {"status": "running", **this_process()}
    assert run_state(rec) == "running" and rec["pid"] == os.getpid()
    assert run_state({**rec, "host": "some-other-machine"}) == "running"  # cannot tell from here
    assert run_state({"status": "running"}) == "running"                   # an old record without a pid


def test_resume_latest_says_which_run_it_continues(tiny_cfg, tmp_path, caplog):
    import torch

    from pipeline.training.train import resolve_resume

    cfg = tiny_cfg("lines", "cnn_basic", ["resume=latest"])
    run_dir = _run(Path(cfg.paths.outputs_dir), "r", "lines", "cnn_basic", "interrupted", "")
    torch.save({"state_dict": {}, "epoch": 1}, run_dir / "checkpoints" / "last.ckpt")
    with caplog.at_level("INFO"):
        assert resolve_resume(cfg) == str(run_dir / "checkpoints" / "last.ckpt")
    assert f"continuing the run {run_dir} from last.ckpt (interrupted" in caplog.text
