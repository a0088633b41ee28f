"""Stop a training run whose loss diverged, instead of recording it as complete.

``model.optimizer.lr=inf`` makes every weight NaN after one step and ``lr=1e9`` drives the loss
to 1e32: both used to finish as ``status: complete`` and be picked by the visualizer. The
:class:`StopOnDivergence` callback checks the training loss after every step; a non-finite loss,
or one above ``max_loss`` (far above any loss these classifiers reach: a chance-level loss is
about 4.6 for 96 classes), raises :class:`TrainingDiverged`. The train job then records the run
as ``failed`` with the reason, and no one picks or resumes it.
"""
from __future__ import annotations

import math

import pytorch_lightning as pl

from pipeline.errors import CnnvisError


class TrainingDiverged(CnnvisError, RuntimeError):
    """The training loss became non-finite or exploded; the message says when and what to change."""


class StopOnDivergence(pl.Callback):
    def __init__(self, max_loss: float = 1.0e6):
        if not (isinstance(max_loss, (int, float)) and max_loss > 0):
            raise ValueError(f"callbacks.divergence.max_loss={max_loss!r} is invalid: it must be a positive number")
        self.max_loss = float(max_loss)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        value = float(loss.detach())
        bad = not math.isfinite(value) or value > self.max_loss
        if trainer.world_size > 1:  # every process stops together (the loss is per process)
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        lr = (getattr(pl_module, "hparams", {}).get("optimizer") or {}).get("lr")  # the configured one
        if not isinstance(lr, (int, float)):
            lrs = [g.get("lr") for opt in trainer.optimizers for g in opt.param_groups]
            lr = lrs[0] if lrs else None
        shown = f"model.optimizer.lr={lr:g}" if isinstance(lr, (int, float)) else "the learning rate"
        what = f"became {value}" if not math.isfinite(value) else f"reached {value:.3g} (above {self.max_loss:g})"
        raise TrainingDiverged(
            f"training diverged: the training loss {what} at epoch {trainer.current_epoch}, step "
            f"{trainer.global_step} with {shown}. The run is recorded as failed and will not be used "
            f"by visualize.py or resume=latest. Train again with a smaller learning rate, e.g. "
            f"model.optimizer.lr={_smaller(lr)}.")


def _smaller(lr) -> str:
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0 or lr > 0.01:
        return "0.001"
    return f"{lr / 10:g}"
