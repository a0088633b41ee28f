"""Each rule of the README's "How the visualizer finds a checkpoint", pinned on run folders whose
names sort AGAINST their finish times (so sorting by folder name instead of by ``finished`` fails),
with every kind of run that must not be picked made the newest one."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.errors import NoCheckpointError
from pipeline.processes import hostname
from pipeline.training.registry import find_latest_run, find_resumable_run, list_runs, run_state


def _run(outputs: Path, folder: str, finished: str, status: str = "complete", model: str = "multihead",
         dataset: str = "lines", **extra) -> Path:
    run_dir = outputs / "train" / dataset / model / folder
    (run_dir / "checkpoints").mkdir(parents=True)
    best = run_dir / "checkpoints" / "best.ckpt"
    best.write_bytes(b"x")
    rec = {"status": status, "dataset": dataset, "model": model, "finished": finished,
           "best_checkpoint": str(best), "last_checkpoint": None, **extra}
    (run_dir / "run.json").write_text(json.dumps(rec))
    return run_dir


@pytest.fixture
def outputs(tmp_path):
    """z_old finished first, a_new last: names sort the other way round."""
    out = tmp_path / "outputs"
    _run(out, "z_old", "2026-01-01T10:00:00")
    _run(out, "m_mid", "2026-01-02T10:00:00")
    _run(out, "a_new", "2026-01-03T10:00:00")
    return out


def test_the_newest_complete_run_by_finish_time_not_by_folder_name(outputs):
    assert find_latest_run(outputs, "lines").run_dir.name == "a_new"
    assert [r.run_dir.name for r in list_runs(outputs, "lines")] == ["z_old", "m_mid", "a_new"]


@pytest.mark.parametrize("status", ["interrupted", "failed", "running"])
def test_a_newer_run_that_is_not_complete_is_never_picked(outputs, status):
    _run(outputs, "0_newest", "2026-02-01T10:00:00", status=status, pid=os.getpid(), host=hostname())
    assert find_latest_run(outputs, "lines").run_dir.name == "a_new"


def test_a_newer_cut_short_run_is_skipped_unless_asked(outputs):
    _run(outputs, "0_smoke", "2026-02-01T10:00:00", cut_short=["fast_dev_run=True"], test_accuracy=0.195)
    assert find_latest_run(outputs, "lines").run_dir.name == "a_new"
    assert find_latest_run(outputs, "lines", include_cut_short=True).run_dir.name == "0_smoke"


def test_only_cut_short_runs_is_an_error_naming_them_and_ckpt(tmp_path):
    out = tmp_path / "outputs"
    smoke = _run(out, "smoke", "2026-02-01T10:00:00", cut_short=["limit_train_batches=5 (5 of 405 per epoch)"],
                 test_accuracy=0.195)
    with pytest.raises(NoCheckpointError) as err:
        find_latest_run(out, "lines")
    text = str(err.value)
    assert str(smoke) in text and "ckpt=" in text and "0.195" in text


def test_a_run_whose_process_died_is_stale_and_not_picked(outputs):
    dead = 2 ** 22 + 12345  # above the default pid_max: no such process
    d = _run(outputs, "0_killed", "", status="running", pid=dead, host=hostname())
    assert run_state(json.loads((d / "run.json").read_text())) == "stale"
    assert run_state({"status": "running", "pid": os.getpid(), "host": hostname()}) == "running"
    assert find_latest_run(outputs, "lines").run_dir.name == "a_new"


def test_model_filter_and_other_datasets(outputs):
    _run(outputs, "0_basic", "2026-03-01T10:00:00", model="cnn_basic")
    _run(outputs, "0_mnist", "2026-03-02T10:00:00", dataset="mnist", model="cnn_basic")
    assert find_latest_run(outputs, "lines").run_dir.name == "0_basic"          # any model
    assert find_latest_run(outputs, "lines", "multihead").run_dir.name == "a_new"
    assert find_latest_run(outputs, "mnist").run_dir.name == "0_mnist"


def test_a_missing_best_checkpoint_is_not_picked(outputs):
    d = _run(outputs, "0_gone", "2026-02-01T10:00:00")
    (d / "checkpoints" / "best.ckpt").unlink()
    assert find_latest_run(outputs, "lines").run_dir.name == "a_new"


def _resumable(outputs: Path, folder: str, mtime: float, status="interrupted", **extra) -> Path:
    d = _run(outputs, folder, "", status=status, **extra)
    ck = d / "checkpoints" / "last.ckpt"
    ck.write_bytes(b"x")
    os.utime(ck, (mtime, mtime))
    return d


def test_resume_latest_takes_the_newest_checkpoint_not_the_last_folder_name(outputs):
    _resumable(outputs, "a_older", 1_000_000)
    _resumable(outputs, "z_newer", 2_000_000)
    found = find_resumable_run(outputs, "lines", "multihead")
    assert found.run_dir.name == "z_newer" and found.checkpoint.name == "last.ckpt"
    assert [p.parent.parent.name for p in found.others] == ["a_older"]


def test_resume_latest_never_resumes_complete_or_failed_runs(outputs):
    _resumable(outputs, "failed", 3_000_000, status="failed")
    _resumable(outputs, "done", 3_000_000, status="complete")
    with pytest.raises(NoCheckpointError, match="no interrupted run"):
        find_resumable_run(outputs, "lines", "multihead")


def test_resume_latest_skips_a_run_already_continued(outputs):
    old = _resumable(outputs, "interrupted", 1_000_000)
    _run(outputs, "continuation", "2026-04-01T10:00:00", resumed_from=str(old / "checkpoints" / "last.ckpt"))
    with pytest.raises(NoCheckpointError):
        find_resumable_run(outputs, "lines", "multihead")
    stale = _resumable(outputs, "killed", 500_000, status="running", pid=2 ** 22 + 12345, host=hostname())
    found = find_resumable_run(outputs, "lines", "multihead")
    assert found.run_dir == stale and found.state == "stale"
