"""The LightningModule that trains every model of the project.

``LitClassifier`` takes the network as a config (``_target_`` + arguments) and builds it
itself, so that a checkpoint alone is enough to rebuild the model
(``LitClassifier.load_from_checkpoint(path)``).

Single-output networks (cnn_basic, cnn_deep) are trained with cross-entropy on the class
label; their one head is called ``class``. The multi-head network returns ``{head: logits}``
and is trained on the lines label split into its four variations: binary cross-entropy on
1-unit heads, cross-entropy on the others, summed with configurable weights. Its
``aggregate`` head is the 96-class prediction put back together from the four heads: an image
counts as right when all four heads are right.

Logged metrics: ``{stage}/loss``, ``{stage}/acc`` (class accuracy, or aggregate for
multi-head), and per head ``{stage}/acc_{head}``; macro F1 per head on val and test;
confusion matrices per head on test (kept in ``self.test_confusion``).
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Mapping, Sequence

import hydra
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from pipeline.data.lines_labels import join_label, split_label  # the lines label encoding
from pipeline.errors import ConfigError


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, (DictConfig, ListConfig)) else cfg


def head_predictions(logits: torch.Tensor) -> torch.Tensor:
    """Predicted class per row: argmax, or (logit > 0) for a 1-unit (sigmoid) head."""
    return (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)


def head_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """[N, K] class probabilities; a 1-unit head gives [1 - sigmoid, sigmoid]."""
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], 1)
    return logits.softmax(1)


def head_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype))
    return F.cross_entropy(logits, target)


class LitClassifier(pl.LightningModule):
    def __init__(self, net: Mapping, optimizer: Mapping, scheduler: Mapping | None = None,
                 name: str = "model", class_names: Sequence[str] | None = None,
                 head_weights: Mapping[str, float] | None = None, dataset: str | None = None,
                 input_shape: Sequence[int] | None = None, normalize: Mapping | None = None,
                 channels_last: bool = False, **_ignored):
        from pipeline.models.custom import build_net, head_classes_of, normalize_inputs

        super().__init__()
        self.save_hyperparameters({
            "net": _plain(net), "optimizer": _plain(optimizer), "scheduler": _plain(scheduler),
            "name": name, "dataset": dataset, "class_names": list(class_names or []),
            "head_weights": _plain(head_weights), "input_shape": _plain(input_shape), "normalize": _plain(normalize),
        })
        self.channels_last = bool(channels_last)  # a speed setting only: not saved, any checkpoint loads either way
        self.compile_net = False  # trainer.compile (set by train.py): torch.compile the net while Lightning runs it
        self._compiled = None
        self.net: nn.Module = build_net(self.hparams.net)
        normalize_inputs(self.net, self.hparams.normalize)  # model.normalize: inside the forward, images stay in [0, 1]
        # any nn.Module (model=custom): heads learned from one forward pass, kept on the net for the visualizers
        self.head_classes: dict[str, int] = head_classes_of(self.net, self.hparams.input_shape,
                                                            f"model.net._target_={self.hparams.net.get('_target_')}")
        if not hasattr(self.net, "head_classes"):
            self.net.head_classes = dict(self.head_classes)
        self.multihead = len(self.head_classes) > 1
        self.head_weights = {h: float((head_weights or {}).get(h, 1.0)) for h in self.head_classes}
        # metric heads: every network head, plus the re-joined 96-class "aggregate" for multi-head
        self.metric_heads = dict(self.head_classes)
        if self.multihead:
            n = 1
            for k in self.head_classes.values():
                n *= k
            self.metric_heads["aggregate"] = n
        # training accuracy: no per-step input validation (the labels come from our own datamodules)
        self.train_acc = nn.ModuleDict({h: MulticlassAccuracy(k, average="micro", validate_args=False)
                                        for h, k in self.metric_heads.items()})
        self.val_metrics = nn.ModuleDict({h: self._collection(k) for h, k in self.metric_heads.items()})
        self.test_metrics = nn.ModuleDict({h: self._collection(k) for h, k in self.metric_heads.items()})
        self.test_cm = nn.ModuleDict({h: MulticlassConfusionMatrix(k) for h, k in self.metric_heads.items()})
        self.test_results: dict[str, dict] = {}
        self.test_confusion: dict[str, torch.Tensor] = {}

    @staticmethod
    def _collection(k: int) -> MetricCollection:
        return MetricCollection({"acc": MulticlassAccuracy(k, average="micro"),
                                 "f1": MulticlassF1Score(k, average="macro")})

    @property
    def main_head(self) -> str:
        return "aggregate" if self.multihead else next(iter(self.head_classes))

    def forward(self, x: torch.Tensor):
        return self.net(x)

    # -- memory layout (model.channels_last) ---------------------------------------------------
    # NHWC ("channels last") convolutions run about 1.3x faster than NCHW on x86 CPUs (oneDNN);
    # the arithmetic is the same. Only while Lightning trains or tests: the net returns to the
    # default layout afterwards, and checkpoints load into a default-layout net (visualize.py).
    def setup(self, stage: str) -> None:
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if self.compile_net and self._compiled is None:
            # kept outside the module tree (no "_orig_mod." keys in state_dict): checkpoints stay plain
            object.__setattr__(self, "_compiled", torch.compile(self.net))

    def teardown(self, stage: str) -> None:
        if self.channels_last:
            self.net.to(memory_format=torch.contiguous_format)
        object.__setattr__(self, "_compiled", None)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    # -- shared step -------------------------------------------------------------------------
    def _targets(self, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.multihead:
            return split_label(labels, self.head_classes)
        return {self.main_head: labels}

    def _step(self, batch):
        x, labels = batch
        out = (self._compiled if self._compiled is not None else self.net)(self._layout(x))
        logits = out if isinstance(out, dict) else {self.main_head: out}
        targets = self._targets(labels)
        loss = sum(self.head_weights[h] * head_loss(logits[h], targets[h]) for h in self.head_classes)
        preds = {h: head_predictions(logits[h]) for h in self.head_classes}
        if self.multihead:
            preds["aggregate"] = join_label(preds, self.head_classes)
            targets["aggregate"] = labels
        return loss, preds, targets

    def _log_acc(self, stage: str, h: str, metric_value) -> None:
        name = f"{stage}/acc" if h == self.main_head else f"{stage}/acc_{h}"
        self.log(name, metric_value, on_step=False, on_epoch=True, prog_bar=(h == self.main_head))

    def training_step(self, batch, batch_idx):
        loss, preds, targets = self._step(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        for h, metric in self.train_acc.items():
            metric.update(preds[h], targets[h])  # accumulate only; computed once per epoch when logged
            self._log_acc("train", h, metric)
        return loss

    def _eval_step(self, stage: str, metrics: nn.ModuleDict, batch) -> torch.Tensor:
        loss, preds, targets = self._step(batch)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        for h, coll in metrics.items():
            coll.update(preds[h], targets[h])
        if stage == "test":
            for h, cm in self.test_cm.items():
                cm.update(preds[h], targets[h])
        return loss

    def _log_eval_epoch(self, stage: str, metrics: nn.ModuleDict) -> dict[str, dict]:
        results = {}
        for h, coll in metrics.items():
            values = coll.compute()
            self._log_acc(stage, h, values["acc"])
            self.log(f"{stage}/f1_{h}", values["f1"], on_step=False, on_epoch=True)
            results[h] = {"accuracy": float(values["acc"]), "f1_macro": float(values["f1"])}
            coll.reset()
        return results

    def validation_step(self, batch, batch_idx):
        return self._eval_step("val", self.val_metrics, batch)

    def on_validation_epoch_end(self):
        self._log_eval_epoch("val", self.val_metrics)

    def test_step(self, batch, batch_idx):
        return self._eval_step("test", self.test_metrics, batch)

    def on_test_epoch_end(self):
        self.test_results = self._log_eval_epoch("test", self.test_metrics)
        for h, cm in self.test_cm.items():
            self.test_confusion[h] = cm.compute().cpu()
            cm.reset()

    def predict_step(self, batch, batch_idx):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        out = self.net(x)
        logits = out if isinstance(out, dict) else {"class": out}
        return {h: head_predictions(v) for h, v in logits.items()}

    # -- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self):
        opt_cfg = dict(self.hparams.optimizer)
        optimizer = hydra.utils.instantiate(opt_cfg, params=self.parameters())
        sched_cfg = self.hparams.scheduler
        if not sched_cfg:
            return optimizer
        sched_cfg = dict(sched_cfg)
        interval = sched_cfg.pop("interval", "epoch")
        # a run-length argument the config leaves null (whatever the scheduler class) is the whole run:
        # T_max in epochs, or in optimizer steps with interval=step; total_steps in optimizer steps
        takes = inspect.signature(hydra.utils.get_class(sched_cfg["_target_"])).parameters
        self._run_length = None  # (argument, value) filled in from the run's length: re-planned on resume
        if "T_max" in takes and sched_cfg.get("T_max") is None:
            total = self.trainer.estimated_stepping_batches if interval == "step" else self.trainer.max_epochs
            sched_cfg["T_max"] = max(int(total or 1), 1)
            self._run_length = ("T_max", sched_cfg["T_max"])
        if "total_steps" in takes and sched_cfg.get("total_steps") is None:
            total = self.trainer.estimated_stepping_batches
            if not math.isfinite(total):
                raise ConfigError(f"model.scheduler={sched_cfg['_target_']} needs the run's length, but the run has "
                                  f"no end (trainer.max_epochs=-1 without trainer.max_steps): set "
                                  f"trainer.max_epochs, trainer.max_steps or model.scheduler.total_steps")
            sched_cfg["total_steps"] = max(int(total), 1)
            self._run_length = ("total_steps", sched_cfg["total_steps"])
            interval = "step"
        self._sched_cfg = sched_cfg
        scheduler = hydra.utils.instantiate(sched_cfg, optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

    def on_train_start(self):
        self._replan_schedule()

    def _replan_schedule(self) -> None:
        """Resuming with another run length (``trainer.max_epochs``): the scheduler state that came back
        from the checkpoint still holds the old length (a one-cycle schedule would stop the run with
        "Tried to step N times"). The schedule is re-planned for the new length from the step reached:
        ``T_max`` (cosine) is set to the new value, continuing from the current learning rate; a one-cycle
        schedule (``total_steps``) is rebuilt for the new total and moved to the step reached, so the rest
        of the run follows the new curve. A length already reached is left alone (nothing more to train)."""
        length = getattr(self, "_run_length", None)
        if length is None or self.trainer is None or not self.trainer.lr_scheduler_configs:
            return
        key, planned = length
        for config in self.trainer.lr_scheduler_configs:
            old = config.scheduler
            if getattr(old, key, planned) == planned or planned <= old.last_epoch:
                continue
            if key == "T_max":
                old.T_max = planned
                continue
            new = hydra.utils.instantiate(self._sched_cfg, optimizer=old.optimizer)
            new.last_epoch = old.last_epoch - 1
            new._step_count = old._step_count
            new.step()  # the learning rate (and momentum) of the new plan at the step reached
            config.scheduler = new

