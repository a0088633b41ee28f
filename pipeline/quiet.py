"""Console lines from Lightning that mislead a newcomer on every run, silenced (issue 11):

- "`isinstance(treespec, LeafSpec)` is deprecated ...": Lightning's own use of a torch API, nothing
  the user can act on;
- "Experiment logs directory ... exists and is not empty. Previous log files ... will be deleted":
  printed on every fresh run (the run directory already holds config.yaml and run.json; a resumed
  run's metrics.csv is set aside and joined back by pipeline/training/artifacts.py);
- "`.fit(ckpt_path=None)` was called without a model. The last model of the previous `fit` call will
  be used" followed by ".fit(ckpt_path="last") is set, but there is no last checkpoint available. No
  checkpoint will be loaded": a pair that contradicts itself, printed at the start of every fresh
  training run because the interrupt checkpoint (OnExceptionCheckpoint) is configured; a fresh run
  loads nothing (resume= passes its checkpoint explicitly);
- "💡 Tip: ... try installing [litlogger] ...": an advertisement.
"""
from __future__ import annotations

import logging
import warnings

WARNINGS = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",
            r"Experiment logs directory .* exists and is not empty",
            # a fresh fit with the interrupt checkpoint: "ckpt_path=None ... the last model of the previous
            # fit will be used", then 'ckpt_path="last" ... no last checkpoint ... none will be loaded'
            r"`\.fit\(ckpt_path=None\)` was called without a model\. The last model",
            r'\.fit\(ckpt_path="last"\) is set, but there is no last checkpoint available')
INFO_PREFIXES = ("💡 Tip: For seamless cloud logging",
                 # our own summary callback replaces Lightning's (pipeline/training/model_summary.py)
                 "Trainer already configured with model summary callbacks")
LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
           "lightning_fabric.utilities.rank_zero")


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(INFO_PREFIXES)


def quiet_lightning() -> None:
    """Install the filters (idempotent)."""
    for pattern in WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in LOGGERS:
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in log.filters):
            log.addFilter(_DropTips())
