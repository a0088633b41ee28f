"""What an attribution explains: one score per image, computed from the model's output.

A target is a small callable, as pytorch-grad-cam's ``ClassifierOutputTarget``, but batch-first:
it holds one class per image.

* :class:`ClassifierOutputTarget` ``(index)``: the logit of class ``index[i]`` for image ``i``
  (pre-softmax, like Captum and pytorch-grad-cam); probability = softmax;
* :class:`BinaryClassifierOutputTarget` ``(index)``: a 1-unit (sigmoid) head's sign: ``+logit``
  for class 1, ``-logit`` for class 0; probability = sigmoid of that score.

``target(logits)`` gives the scores ``[n]`` (with the graph), ``target.probability(logits)`` the
probabilities (without), ``target[i:j]`` the target of a chunk of images and ``target.index``
the classes. What callers pass (``None`` = each image's prediction, an int, one int per image,
a target object, or ``{head: ...}`` for a multi-head model) is checked by :func:`targets_by_head`
before any work and turned into targets per chunk by :func:`target_for`.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

__all__ = ["ClassifierOutputTarget", "BinaryClassifierOutputTarget", "predicted_target", "target_for",
           "targets_by_head", "check_heads"]


class ClassifierOutputTarget:
    """The logit of class ``index[i]`` of image ``i`` (a multi-unit head)."""

    binary = False

    def __init__(self, index):
        self.index = torch.as_tensor(index, dtype=torch.long).reshape(-1)

    def _rows(self, logits: torch.Tensor) -> torch.Tensor:
        t = self.index.to(logits.device)
        return t.clone() if t.is_inference() else t  # e.g. built under the caller's inference_mode

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.gather(1, self._rows(logits)[:, None])[:, 0]

    def probability(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.detach().float(), 1).gather(1, self._rows(logits)[:, None])[:, 0]

    def __getitem__(self, rows) -> "ClassifierOutputTarget":
        if isinstance(rows, torch.Tensor):
            rows = rows.to(self.index.device)
        return type(self)(self.index[rows])

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.index.tolist()})"


class BinaryClassifierOutputTarget(ClassifierOutputTarget):
    """A 1-unit (sigmoid) head: ``+logit`` for class 1, ``-logit`` for class 0."""

    binary = True

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.where(self._rows(logits) == 1, logits[:, 0], -logits[:, 0])

    def probability(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(logits).detach().float())


def predicted_target(logits: torch.Tensor) -> ClassifierOutputTarget:
    """The target of each image's prediction: argmax, or ``logit > 0`` for a 1-unit head."""
    ld = logits.detach()
    if logits.shape[1] == 1:
        return BinaryClassifierOutputTarget((ld[:, 0] > 0).long())
    return ClassifierOutputTarget(ld.argmax(1))


def target_for(logits: torch.Tensor, given) -> ClassifierOutputTarget:
    """The target for ``logits`` ``[n, K]``: ``given`` is None (the prediction), class indices
    ``long [n]`` or a target object (used as it is)."""
    if given is None:
        return predicted_target(logits)
    if isinstance(given, torch.Tensor):
        return (BinaryClassifierOutputTarget if logits.shape[1] == 1 else ClassifierOutputTarget)(given)
    return given


def check_heads(heads: Sequence[str], valid: Sequence[str]) -> None:
    bad = [h for h in heads if h not in valid]
    if bad:
        raise ValueError(f"unknown head(s) {bad}; valid heads: {list(valid)}")


def _class_indices(t, n: int, head: str, n_classes: int | None):
    """One head's targets as the caller gave them, checked: None, a target object, or long [n]."""
    if t is None:
        return None
    if callable(t) and hasattr(t, "probability"):  # a target object
        if len(t) != n:
            raise ValueError(f"head {head!r}: the target object holds {len(t)} classes for {n} images")
        return t
    if isinstance(t, bool):
        raise ValueError(f"target for head {head!r} must be an int class index, not bool")
    if isinstance(t, int):
        tt = torch.full((n,), t, dtype=torch.long)
    else:
        tt = torch.as_tensor(t)
        if tt.dim() == 0:
            tt = tt.expand(n)
        if tt.is_floating_point() or tt.dtype == torch.bool:
            raise ValueError(f"targets for head {head!r} must be integers, got {tt.dtype}")
        tt = tt.to("cpu", torch.long).flatten()
        if tt.numel() != n:
            raise ValueError(f"head {head!r}: got {tt.numel()} targets for {n} images "
                             "(give one int, or one target per image)")
    if n_classes is not None and n > 0:
        lo, hi = int(tt.min()), int(tt.max())
        if lo < 0 or hi >= n_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(f"target {bad} out of range for head {head!r}: valid classes are 0..{n_classes - 1}")
    return tt


def targets_by_head(targets, heads: Sequence[str], n: int, n_classes: Mapping[str, int | None]) -> dict:
    """``{head: None | long [n] | target}`` for the heads being computed (``None``: the
    prediction). ``targets`` is one spec for every head or a dict ``{head: spec}`` (heads
    missing from the dict use their prediction)."""
    if isinstance(targets, Mapping):
        bad = [h for h in targets if h not in heads]
        if bad:
            raise ValueError(f"targets given for unknown or unselected head(s) {bad}; computing heads: {list(heads)}")
        return {h: _class_indices(targets.get(h), n, h, n_classes[h]) for h in heads}
    return {h: _class_indices(targets, n, h, n_classes[h]) for h in heads}
