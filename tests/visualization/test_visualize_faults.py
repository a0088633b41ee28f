"""Faults a user meets in visualize.py, through the entry point's error handling (pipeline/cli.py):
an unknown layer name and Ctrl-C in the middle of a job each give one clear message (exit 2 /
130), no traceback, and leave no files."""
from __future__ import annotations

import _thread
import signal
import threading
import time
from pathlib import Path

import pytest

from pipeline.cli import run_job
from pipeline.training.train import run_training
from pipeline.visualize_run import run_visualize
from tests.conftest import QUIET_TRAINER, TINY, compose_cfg


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vis_faults")
    run_training(compose_cfg(root, [*TINY["mnist"], "model=cnn_basic", *QUIET_TRAINER]))
    return root


def _files(root: Path) -> list[Path]:
    out = root / "outputs" / "visualize"
    return [p for p in out.rglob("*") if p.is_file()] if out.exists() else []


def test_an_unknown_layer_is_one_clear_message(root, capsys):
    cfg = compose_cfg(root, [*TINY["mnist"], "search_cut_short=true", "job=activations", "layer=features.nope"], config_name="visualize")
    with pytest.raises(SystemExit) as info:
        run_job(run_visualize, cfg)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "KeyError" not in err
    assert "error: unknown layer 'features.nope'" in err and "Valid layer names: features.conv1" in err
    assert _files(root) == []


def _partial_files(run_dir: Path) -> bool:
    try:
        return run_dir.is_dir() and any(".partial" in p.name for p in run_dir.iterdir())
    except FileNotFoundError:  # removed while we looked: the cleanup ran
        return False


def _interrupt_when_partial_files_appear(run_dir: Path, stop: threading.Event) -> None:
    """Press Ctrl-C (KeyboardInterrupt in the main thread) once the job is writing its partial files.

    Pressed again if the partial files are still there 5 s later, as a user would: one suite run
    under xdist lost the single press and ran the 20,000 steps to the end (where it was lost is not
    known; Python delivers the press at the main thread's next bytecode, and a KeyboardInterrupt
    raised inside a finalizer is printed as "Exception ignored" and dropped)."""
    while not stop.is_set():
        if _partial_files(run_dir):
            _thread.interrupt_main()
            if stop.wait(5.0):
                return
            continue
        time.sleep(0.05)


@pytest.fixture
def python_sigint_handler():
    """Ctrl-C as a user's terminal delivers it: Python's own SIGINT handler (an earlier test of the
    session -- Lightning, a launcher -- may have left another one installed, which would swallow the
    simulated key press)."""
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_during_a_job_stops_cleanly(root, capsys, python_sigint_handler):
    # many steps (minutes), never endless: a lost key press fails the test instead of hanging the suite
    cfg = compose_cfg(root, [*TINY["mnist"], "search_cut_short=true", "job=filters", "filters.steps=20000", "image=[0]"],
                      config_name="visualize")
    run_dir = Path(cfg.paths.output_dir)
    stop = threading.Event()
    watcher = threading.Thread(target=_interrupt_when_partial_files_appear, args=(run_dir, stop), daemon=True)
    watcher.start()
    try:
        with pytest.raises(SystemExit) as info:
            run_job(run_visualize, cfg)
    finally:
        stop.set()
    assert info.value.code == 130
    err = capsys.readouterr().err
    assert "error: interrupted (Ctrl-C)" in err and "Traceback" not in err
    assert not run_dir.exists() and _files(root) == []  # no half-written store, figures or empty run dir
