"""Lightning's misleading console lines are silenced by every entry script (issue 11)."""
from __future__ import annotations

import logging
import warnings

from pipeline.quiet import quiet_lightning


def test_leafspec_and_log_dir_warnings_and_the_litlogger_tip_are_dropped():
    quiet_lightning()
    quiet_lightning()  # idempotent
    with warnings.catch_warnings(record=True) as seen:
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)`")
        warnings.warn("Experiment logs directory /x/run0/ exists and is not empty. Previous log files in this "
                      "directory will be deleted when the new ones are saved!")
        warnings.warn("a real warning")
    assert [str(w.message) for w in seen] == ["a real warning"]
    log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    assert len(log.filters) == 1
    got: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: got.append(record.getMessage())
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
        log.info("GPU available: False, used: False")
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert got == ["GPU available: False, used: False"]


def test_a_training_run_prints_the_networks_layers_and_no_contradicting_ckpt_path_lines(tmp_path):
    """The console of a fresh run: no ckpt_path=None / ckpt_path="last" pair, and a model summary whose rows
    are the network's layers (net.features.conv1 ...), not the metric containers (val_metrics: ModuleDict)."""
    from tests.conftest import TINY, run_cli

    args = [f"paths.root_dir={tmp_path}", *TINY["lines"], "trainer=cpu", "trainer.max_epochs=1",
            "trainer.limit_train_batches=3", "trainer.enable_progress_bar=false"]
    proc = run_cli("train.py", args, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "ckpt_path" not in out and "no last checkpoint" not in out
    assert "Trainer already configured with model summary" not in out
    rows = [line for line in out.splitlines() if line.startswith(("│", "|")) or " net" in line]
    names = {cell.strip() for line in rows for cell in line.replace("│", "|").split("|")}
    assert {"net", "net.features", "net.features.conv1", "net.features.conv3", "net.heads.angle"} <= names, out[:3000]
    assert not names & {"train_acc", "val_metrics", "test_metrics", "test_cm"}, out[:3000]
    assert "Total params: 53.1 K" in out or "53.1 K    Total params" in out
