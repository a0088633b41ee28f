"""Checkpoints load with weights_only=True everywhere (visualize, eval, resume): a malicious pickle is
refused without running its payload, naming what it holds; a damaged checkpoint names the file
and how to skip it; no unsafe fallback."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.cli import run_job
from pipeline.errors import CnnvisError
from pipeline.training.checkpoints import CheckpointLoadError, UnsafeCheckpointError, load_lit_module
from pipeline.training.evaluate import load_checkpoint as eval_load
from pipeline.training.registry import write_run_record
from pipeline.training.train import resolve_resume, run_training
from pipeline.visualization.context import load_module as visualize_load
from tests.conftest import QUIET_TRAINER, TINY, compose_cfg, run_cli


class _Payload:
    """Unpickling this runs exec(...), which writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('payload ran')",)


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "payload_ran.txt"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"name": "cnn_basic"}, "pytorch-lightning_version": "2.6.6",
                "callbacks": _Payload(marker)}, ckpt)
    return ckpt, marker


def test_the_malicious_checkpoint_is_live(evil):
    """The file really runs code when unpickled unsafely (so refusing it below means something)."""
    ckpt, marker = evil
    torch.load(ckpt, weights_only=False)
    assert marker.read_text() == "payload ran"


@pytest.mark.parametrize("loader", ["lit_module", "visualize", "eval", "resume"])
def test_a_malicious_checkpoint_is_refused_without_running_its_payload(evil, tmp_path, loader):
    ckpt, marker = evil
    with pytest.raises(UnsafeCheckpointError) as info:
        if loader == "lit_module":
            load_lit_module(ckpt, f"ckpt={ckpt}")
        elif loader == "visualize":
            visualize_load(ckpt, torch.device("cpu"))
        elif loader == "eval":
            eval_load(ckpt)
        else:
            resolve_resume(compose_cfg(tmp_path, [*TINY["lines"], "model=cnn_basic", f"resume={ckpt}"]))
    msg = str(info.value)
    assert "builtins.exec" in msg and "weights_only=True" in msg and str(ckpt) in msg
    assert not marker.exists()


def test_visualize_cli_refuses_a_malicious_checkpoint(evil, tmp_path):
    ckpt, marker = evil
    proc = run_cli("visualize.py", ["job=gradcam", f"ckpt={ckpt}", f"paths.root_dir={tmp_path}", *TINY["lines"]],
                   cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "builtins.exec" in proc.stderr
    assert not marker.exists()
    assert not [p for p in (tmp_path / "outputs").rglob("*") if p.is_file() and "cache" not in p.parts]


def _interrupted_run(root: Path, name: str, ckpt_bytes: bytes | None = None) -> Path:
    run_dir = root / "outputs" / "train" / "lines" / "cnn_basic" / name
    (run_dir / "checkpoints").mkdir(parents=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    if ckpt_bytes is None:
        torch.save({"state_dict": {}, "epoch": 0}, last)
    else:
        last.write_bytes(ckpt_bytes)
    write_run_record(run_dir, {"status": "interrupted", "dataset": "lines", "model": "cnn_basic",
                               "started": name, "run_dir": str(run_dir)})
    return last


def test_resume_latest_skips_a_checkpoint_that_does_not_load(tmp_path, caplog):
    older = _interrupted_run(tmp_path, "older")
    good = older.read_bytes()
    truncated = _interrupted_run(tmp_path, "newer", good[: len(good) // 2])  # truncated by a crash mid-write
    empty = _interrupted_run(tmp_path, "newest", b"")  # 0 bytes: an older version's in-place write, killed
    cfg = compose_cfg(tmp_path, [*TINY["lines"], "model=cnn_basic", *QUIET_TRAINER, "resume=latest"])
    with caplog.at_level("INFO"):
        assert resolve_resume(cfg) == str(older)  # never the newer ones that do not load
    assert f"skipping {empty}" in caplog.text and f"skipping {truncated}" in caplog.text
    assert "2 newer checkpoint(s) skipped" in caplog.text


def test_resume_latest_with_no_checkpoint_that_loads_names_them(tmp_path, capsys):
    empty = _interrupted_run(tmp_path, "newest", b"")
    truncated = _interrupted_run(tmp_path, "older", b"PK\x03\x04 cut")
    cfg = compose_cfg(tmp_path, [*TINY["lines"], "model=cnn_basic", *QUIET_TRAINER, "resume=latest"])
    with pytest.raises(SystemExit) as info:
        run_job(run_training, cfg)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "no checkpoint of the interrupted runs" in err and str(empty) in err and str(truncated) in err
    assert "drop resume=" in err
    assert not Path(cfg.paths.output_dir).exists()


def test_a_corrupt_checkpoint_given_explicitly(tmp_path):
    bad = tmp_path / "last.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointLoadError, match="Pass resume=PATH of another checkpoint") as info:
        resolve_resume(compose_cfg(tmp_path, [*TINY["lines"], "model=cnn_basic", f"resume={bad}"]))
    assert str(bad) in str(info.value)


def test_config_errors_get_no_resume_hint(tmp_path, capsys):
    cfg = compose_cfg(tmp_path, [*TINY["lines"], "model=cnn_basic", *QUIET_TRAINER, "model.optimizer.lr=nan"])
    with pytest.raises(SystemExit) as info:
        run_job(run_training, cfg)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "model.optimizer.lr=nan is invalid: it must be a finite positive number" in err
    assert "resume" not in err and not (tmp_path / "outputs").exists()


def test_not_a_checkpoint_at_all(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(CnnvisError, match="cannot load it as a cnnvis training checkpoint"):
        load_lit_module(text, f"ckpt={text}")
