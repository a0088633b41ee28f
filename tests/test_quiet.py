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
