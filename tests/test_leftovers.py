"""Partial files a killed run left are removed by the next run; those of running processes (a
parallel sweep job) or of another host are not."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from pipeline.cli import run_job
from pipeline.leftovers import LEGACY_GRACE_S, partial_path, remove_own_partials, remove_stale_partials
from pipeline.processes import hostname
from tests.conftest import TINY, compose_cfg


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def _old(path: Path) -> Path:
    t = time.time() - LEGACY_GRACE_S - 60
    os.utime(path, (t, t))
    return path


def _layout(root: Path) -> dict[str, Path]:
    dead, me = _dead_pid(), os.getpid()
    run = root / "outputs" / "visualize" / "lines" / "gradcam" / "t"
    run.mkdir(parents=True)
    (root / "outputs" / "cache" / "lines").mkdir(parents=True)
    files = {
        "dead_h5": run / f"visualization.h5.partial-{dead}@{hostname()}",
        "dead_cache": root / "outputs" / "cache" / "lines" / f".lines.h5.partial-{dead}@{hostname()}~ab12cd",
        "live_h5": run / f"index.html.partial-{me}@{hostname()}",
        "other_host": run / f"summary.json.partial-{dead}@another-node",
        "legacy_old": run / f"visualization.h5.partial-{dead}",
        "legacy_new": run / f"index.html.partial-{dead}",
        "real": run / "visualization.h5",
    }
    for p in files.values():
        p.write_text("x")
    files["dead_figures"] = run / f"figures.partial-{dead}@{hostname()}"
    files["dead_figures"].mkdir()
    (files["dead_figures"] / "a.png").write_text("png")
    _old(files["legacy_old"])
    return files


def test_stale_partials_are_removed_and_live_ones_kept(tmp_path):
    files = _layout(tmp_path)
    removed = set(remove_stale_partials(tmp_path / "outputs"))
    gone = {"dead_h5", "dead_cache", "dead_figures", "legacy_old"}
    assert removed == {files[k] for k in gone}
    assert {k for k, p in files.items() if p.exists()} == set(files) - gone


def test_every_run_cleans_up_at_its_start(tmp_path):
    files = _layout(tmp_path)
    cfg = compose_cfg(tmp_path, [*TINY["lines"]], config_name="visualize")
    assert run_job(lambda c: None, cfg) is None
    assert not files["dead_h5"].exists() and not files["dead_cache"].exists() and files["live_h5"].exists()


def test_a_process_removes_its_own_partials(tmp_path):
    mine = partial_path(tmp_path / "index.html")
    mine.write_text("x")
    other = tmp_path / "index.html.partial-1@elsewhere"
    other.write_text("x")
    assert remove_own_partials(tmp_path) == [mine] and other.exists()
