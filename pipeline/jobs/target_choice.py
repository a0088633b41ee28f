"""``gradcam.target``: which class each map explains, read from the config and checked before any work.

* ``null``: each image's predicted class (one map per image and head; the default);
* an int ``k``: class ``k`` for every image (per head, so it must be a class of every head computed);
* ``topK`` (``top1``, ``top2``...): each image's K-th most probable class under the model (per head;
  ``top1`` is the prediction);
* a list of those, ``[top1,top2]`` or ``[3,7]``: one map per image, head and target, drawn side by
  side (one column per target) and stored per target (``attribution/<method>/<head>/<layer>/<target>``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from pipeline.errors import CnnvisError

__all__ = ["TargetSpec", "parse_targets", "is_target_list", "rank_classes", "head_logits"]

_TOP = re.compile(r"^top([1-9][0-9]*)$")


@dataclass(frozen=True)
class TargetSpec:
    """One target: ``rank`` (1 = most probable) or ``index`` (a class); neither = the prediction."""
    rank: int | None = None
    index: int | None = None

    @property
    def label(self) -> str:
        """Its name in figures and the HDF5 layout: ``top2``, ``class3`` or ``predicted``."""
        if self.rank is not None:
            return f"top{self.rank}"
        return "predicted" if self.index is None else f"class{self.index}"

    def classes(self, probs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """``{head: long [n]}`` for ``probs`` ``{head: [n, K]}`` (None: let the method take the prediction)."""
        if self.rank is None and self.index is None:
            return None
        if self.index is not None:
            return {h: torch.full((len(p),), self.index, dtype=torch.long) for h, p in probs.items()}
        return {h: rank_classes(p)[:, self.rank - 1] for h, p in probs.items()}


def rank_classes(probs: torch.Tensor) -> torch.Tensor:
    """[n, K] class indices of each row from most to least probable (ties: the lower index first)."""
    return torch.sort(-probs.detach().float(), dim=1, stable=True).indices


def is_target_list(target) -> bool:
    return isinstance(target, Sequence) and not isinstance(target, (str, bytes))


def _one(item, key: str) -> TargetSpec:
    if isinstance(item, bool):
        raise CnnvisError(f"{key}={item} is not a target: use a class index, topK (top1, top2, ...) or null")
    if isinstance(item, int):
        return TargetSpec(index=item)
    if isinstance(item, str):
        m = _TOP.match(item.strip().lower())
        if m:
            return TargetSpec(rank=int(m.group(1)))
    raise CnnvisError(f"{key}={item!r} is not a target: use null (the predicted class), a class index (3), "
                      f"topK (top1, top2, ...: each image's K-th most probable class) or a list of them ([top1,top2])")


def parse_targets(target, head_classes: Mapping[str, int], multihead: bool, key: str = "gradcam.target") -> list[TargetSpec]:
    """The checked targets for the heads being computed (``head_classes``: head -> number of classes)."""
    if target is None:
        return [TargetSpec()]
    items = list(target) if is_target_list(target) else [target]
    if not items:
        raise CnnvisError(f"{key}=[] names no target: give null, a class index, topK or a non-empty list")
    specs = [_one(item, key) for item in items]
    if len(set(specs)) != len(specs):
        raise CnnvisError(f"{key}={list(items)} names a target twice")
    for spec in specs:
        for h, k in head_classes.items():
            where = f" of head {h}" if multihead else ""
            if spec.index is not None and not 0 <= spec.index < k:
                raise CnnvisError(f"{key}={spec.index} is out of range{where}: valid classes are 0..{k - 1}")
            if spec.rank is not None and spec.rank > k:
                hint = " (choose a head with more classes, e.g. gradcam.head=angle)" if multihead else ""
                raise CnnvisError(f"{key}={spec.label} is out of range{where}: it has {k} classes, so top1..top{k}"
                                  f"{hint}")
    return specs


def head_logits(net, images: torch.Tensor, batch_size: int, device) -> dict[str, torch.Tensor]:
    """``{head: logits [n, K]}`` on the CPU (``"class"`` for a single-output model), in batches, no grad."""
    outs = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            o = net(images[i:i + batch_size].to(device))
            outs.append(o if isinstance(o, dict) else {"class": o})
    return {h: torch.cat([o[h] for o in outs]).cpu() for h in outs[0]}
