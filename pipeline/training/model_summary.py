"""The model summary printed when training starts: the network's layers, not the metric containers.

Lightning's default summary lists the LightningModule's children, here ``net`` and four rows of
torchmetrics containers (``train_acc``, ``val_metrics``, ... as ``ModuleDict``), which say nothing
about the network. :class:`NetworkSummary` (``callbacks.model_summary`` in conf/callbacks/default.yaml)
leaves out every module that holds only metrics and goes ``max_depth`` levels deep, so the rows are
``net``, ``net.features``, ``net.features.conv1``, ... (the names visualize.py takes, with ``net.``).
"""
from __future__ import annotations

from pytorch_lightning.callbacks import ModelSummary
from pytorch_lightning.callbacks.progress.rich_progress import _RICH_AVAILABLE
from pytorch_lightning.utilities.model_summary.model_summary import ModelSummary as _Summary
from torch import nn
from torchmetrics import Metric, MetricCollection


def holds_only_metrics(module: nn.Module) -> bool:
    """A torchmetrics metric or collection, or a container (ModuleDict...) of nothing else."""
    if isinstance(module, (Metric, MetricCollection)):
        return True
    children = list(module.children())
    return bool(children) and all(holds_only_metrics(c) for c in children)


def _without_metrics(mods: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    hidden = [name for name, m in mods if holds_only_metrics(m)]
    return [(name, m) for name, m in mods if not any(name == h or name.startswith(h + ".") for h in hidden)]


class _LayersOnly(_Summary):
    @property
    def named_modules(self) -> list[tuple[str, nn.Module]]:
        return _without_metrics(super().named_modules)

    @property
    def total_training_modes(self) -> dict[str, int]:   # "Modules in train mode": the network's, not the metrics'
        modes = [m.training for _, m in _without_metrics(list(self._model.named_modules())[1:])]
        return {"train": modes.count(True), "eval": modes.count(False)}


if _RICH_AVAILABLE:  # the same table style Lightning would pick
    from pytorch_lightning.callbacks import RichModelSummary as _Base
else:
    _Base = ModelSummary


class NetworkSummary(_Base):
    """Lightning's model summary callback without the metric rows, ``max_depth`` levels deep."""

    def __init__(self, max_depth: int = 3, **summarize_kwargs) -> None:
        super().__init__(max_depth=max_depth, **summarize_kwargs)

    def _summary(self, trainer, pl_module):
        return _LayersOnly(pl_module, max_depth=self._max_depth)
