"""A run never overwrites another run's directory, and refuses places it cannot write, before
writing anything: hydra.run.dir=<a finished run> (train and visualize; Hydra's .hydra/ included),
an existing sweep directory, a read-only outputs or cache folder. Resuming into the run's own
directory is the one exception, and keeps its learning curves."""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import hydra
import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from pipeline.cli import run_job
from pipeline.run_dirs import RunDirInUseError
from pipeline.training.train import run_training
from tests.conftest import QUIET_TRAINER, TINY, compose_cfg, run_cli


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _fake_run(run_dir: Path, files: dict) -> Path:
    for rel, text in {".hydra/config.yaml": "old: config\n", ".hydra/overrides.yaml": "[]\n", **files}.items():
        (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / rel).write_text(text)
    return run_dir


def test_a_run_into_an_existing_run_directory_is_refused_before_anything_is_written(tmp_path):
    run_dir = _fake_run(tmp_path / "outputs" / "old_run", {"run.json": '{"status": "complete"}',
                                                          "metrics.csv": "epoch,step\n0,1\n", "checkpoints/last.ckpt": "w"})
    before = _snapshot(tmp_path)
    proc = run_cli("train.py", [f"hydra.run.dir={run_dir}", f"paths.root_dir={tmp_path}", *TINY["lines"],
                                *QUIET_TRAINER], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"hydra.run.dir={run_dir} already holds a run" in proc.stderr and "continue that run with resume=" in proc.stderr
    assert _snapshot(tmp_path) == before  # .hydra/config.yaml included: Hydra wrote nothing either


def test_a_refused_visualize_rerun_leaves_the_old_run_untouched(tmp_path, capsys):
    """visualize.py's Hydra callbacks refuse before Hydra writes .hydra/ (the CLI order is shown above)."""
    run_dir = _fake_run(tmp_path / "outputs" / "old_vis", {"visualization.h5": "h5", "index.html": "<html>"})
    before = _snapshot(tmp_path)
    cfg, callbacks = _guard_cfg(tmp_path, [f"hydra.run.dir={run_dir}", "job=gradcam"], "visualize")
    with pytest.raises(SystemExit) as info:
        for cb in callbacks:
            cb.on_run_start(config=cfg)
    assert info.value.code == 2
    assert "pass overwrite=true to replace its results" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before
    cfg, callbacks = _guard_cfg(tmp_path, [f"hydra.run.dir={run_dir}", "job=gradcam", "overwrite=true"], "visualize")
    for cb in callbacks:
        cb.on_run_start(config=cfg)  # allowed when asked for


def test_the_guard_resolves_a_run_directory_named_after_the_job(tmp_path, capsys):
    """visualize.py names its run directory after ``${hydra:runtime.choices.job}``. Hydra's
    callbacks run before Hydra installs its config; the guard installs it to resolve the name
    (before: a UserWarning on every visualize run, and no check)."""
    run_dir = _fake_run(tmp_path / "outputs" / "gradcam", {"visualization.h5": "h5", "index.html": "<html>"})
    cfg, callbacks = _guard_cfg(tmp_path, [f"hydra.run.dir={tmp_path / 'outputs'}/${{hydra:runtime.choices.job}}",
                                           "job=gradcam"], "visualize")
    HydraConfig.instance().cfg = None  # as when Hydra calls on_run_start
    with pytest.raises(SystemExit) as info:
        for cb in callbacks:
            cb.on_run_start(config=cfg)
    assert info.value.code == 2
    assert f"hydra.run.dir={run_dir} already holds a run" in capsys.readouterr().err


def test_train_job_refuses_a_directory_holding_a_run(tiny_cfg, tmp_path):
    cfg = tiny_cfg("lines", "cnn_basic")
    run_dir = _fake_run(Path(cfg.paths.output_dir), {"run.json": '{"status": "complete"}', "metrics.csv": "a\n1\n"})
    before = _snapshot(run_dir)
    with pytest.raises(RunDirInUseError, match="already holds a run"):
        run_training(cfg)
    assert _snapshot(run_dir) == before


def test_resume_into_the_runs_own_directory_keeps_its_metrics(tiny_cfg, tmp_path):
    first = run_training(tiny_cfg("lines", "cnn_basic"))
    run_dir = Path(first["run_dir"])
    cfg = tiny_cfg("lines", "cnn_basic", [f"resume={first['last_checkpoint']}", "trainer.max_epochs=2"])
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)  # hydra.run.dir=<the run being resumed>
    HydraConfig.instance().set_config(cfg)
    second = run_training(cfg)
    assert Path(second["run_dir"]) == run_dir and second["status"] == "complete"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "complete" and record["resumed_from"] == first["last_checkpoint"]
    with open(run_dir / "metrics.csv") as fh:
        epochs = {r["epoch"] for r in csv.DictReader(fh) if r.get("train/loss_epoch")}
    assert epochs == {"0", "1"}  # the first epoch's rows are still there
    assert not list(run_dir.glob("metrics.before_resume*"))


def _guard_cfg(tmp_path: Path, overrides: list[str], config_name: str = "train"):
    """The composed config with Hydra's node, and the Hydra callbacks it configures."""
    cfg = compose_cfg(tmp_path, overrides, config_name)
    callbacks = [hydra.utils.instantiate(c) for c in cfg.hydra.callbacks.values()]
    return cfg, callbacks


def test_an_existing_sweep_directory_is_refused(tmp_path, capsys):
    sweep = _fake_run(tmp_path / "sweep" / "0_lines_cnn_basic", {"run.json": "{}"}).parent
    cfg, callbacks = _guard_cfg(tmp_path, [f"hydra.sweep.dir={sweep}"])
    with pytest.raises(SystemExit) as info:
        for cb in callbacks:
            cb.on_multirun_start(config=cfg)
    assert info.value.code == 2
    assert f"hydra.sweep.dir={sweep} already holds a run (0_lines_cnn_basic/)" in capsys.readouterr().err


@contextlib.contextmanager
def read_only(path: Path):
    """``path`` made unwritable, for root too (chattr +i) when chmod is not enough."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o555)
    immutable = False
    if os.access(path, os.W_OK) and shutil.which("chattr"):
        immutable = subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    try:
        if os.access(path, os.W_OK):
            pytest.skip("cannot make a folder read-only here (root without chattr)")
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        os.chmod(path, 0o755)


def test_a_read_only_outputs_folder_is_refused_before_hydra_writes(tmp_path, capsys):
    cfg, callbacks = _guard_cfg(tmp_path, [*TINY["lines"]])
    with read_only(tmp_path / "outputs"):
        with pytest.raises(SystemExit) as info:
            for cb in callbacks:
                cb.on_run_start(config=cfg)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert f"{tmp_path / 'outputs'} is read-only" in err and "paths.root_dir=DIR" in err
        assert list((tmp_path / "outputs").iterdir()) == []


def test_a_read_only_cache_folder_is_a_clear_error(tmp_path, capsys):
    cfg = compose_cfg(tmp_path, [*TINY["lines"], "model=cnn_basic", *QUIET_TRAINER])
    with read_only(tmp_path / "cache"):
        with pytest.raises(SystemExit) as info:
            run_job(run_training, cfg)
        assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"cannot write {tmp_path / 'cache'}" in err and "paths.cache_dir=DIR" in err
    assert not Path(cfg.paths.output_dir).exists()  # no empty run directory left behind
