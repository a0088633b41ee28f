"""Grad-CAM (Selvaraju et al., 2017), hook-based and batched, for single- and multi-head models.

``GradCAM(model, "features.conv3")(x, targets)`` returns a :class:`CAMResult` for a model that
returns a tensor of logits, and ``{head: CAMResult}`` for a model that returns a dict of
logits (one map per head from ONE shared forward pass; one backward per head, w.r.t. the
layer's activation only).

How it works, per chunk of ``batch_size`` images:

* the forward runs with grad **disabled**, so no autograd graph is built below the target
  layer; a forward hook on the layer replaces its output ``out`` by ``a.clone()`` of a leaf
  ``a = out.detach().requires_grad_()`` and turns grad on for the rest of the forward. The
  clone keeps an ``nn.ReLU(inplace=True)`` after the layer from overwriting ``a`` (which is
  both the differentiation variable and the activation used for the map);
* target score per image: multi-unit head -> the target's logit (pre-softmax, like Captum and
  pytorch-grad-cam); 1-unit (binary) head -> ``+logit`` for class 1, ``-logit`` for class 0;
* ``g = autograd.grad(sum of scores, a)`` (parameters' ``.grad`` are never touched), channel
  weights ``w = mean_hw(g)``, map ``relu(sum_c w_c * a_c)`` at the layer's resolution, then
  ``F.interpolate(mode="bilinear", align_corners=False)`` to the input size.

Grad mode is restored afterwards whatever happens, and grad is enabled explicitly
(``torch.inference_mode(False)`` + grad on), so a call from inside a Lightning
``validation_step``/``predict_step`` (which run under ``torch.inference_mode()``) works.

Hooks are registered at the start of each call and removed in a ``finally`` at its end:
nothing is left on the model between calls, with or without the context manager, and nothing
is kept from one call to the next. The model's ``train()/eval()`` mode is **not** changed:
call ``model.eval()`` first (in train mode batch norm mixes the images of a chunk and dropout
is random).

Speed (CPU): the part of the forward below the layer is fed a ``channels_last`` copy of the
input (oneDNN convolutions and pooling are markedly faster in that layout on the CPU); the
layer's output is handed back to the rest of the model in the ordinary contiguous layout. Only
in eval mode, by default only for float32 models on the CPU (``channels_last=True/False``
forces it); if the model's code rejects the layout (e.g. a ``.view`` below the layer), the
call falls back to the ordinary layout once and remembers it.

Heads that were not asked for are not computed when the model's ``heads`` attribute is an
``nn.ModuleDict`` keyed like its ``head_classes`` (the project's ``MultiHead``): in eval mode a
temporary forward pre-hook cuts their input to an empty batch (``skip_unused_heads=False``
turns this off; the same once-only fallback applies).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.visualization.layers import resolve_layer

__all__ = ["CAMResult", "GradCAM", "normalize_maps"]


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Per-image min-max to [0, 1] of ``[N, H, W]`` maps, never NaN.

    An all-zero map stays exactly zero; a constant non-zero map becomes all ones.
    """
    flat = maps.flatten(1)
    mn = flat.amin(1).view(-1, 1, 1)
    mx = flat.amax(1).view(-1, 1, 1)
    rng = mx - mn
    ok = rng > 0
    safe = torch.where(ok, rng, torch.ones_like(rng))
    out = torch.where(ok, (maps - mn) / safe, (maps > 0).to(maps.dtype))
    return out.clamp_(0.0, 1.0)


def target_scores(logits: torch.Tensor, t: torch.Tensor | None = None):
    """``(targets, score, prob, binary)`` of logits ``[n, K]`` (Grad-CAM's convention).

    ``t=None``: the prediction (argmax; 1 unit: ``logit > 0``). ``score`` keeps the graph:
    the target's logit, or ``+logit`` / ``-logit`` for class 1 / 0 of a 1-unit head.
    """
    if logits.dim() == 1:
        logits = logits.unsqueeze(1)
    ld = logits.detach()
    binary = logits.shape[1] == 1
    if t is None:
        t = (ld[:, 0] > 0).long() if binary else ld.argmax(1)
    t = t.to(logits.device)
    if t.is_inference():  # e.g. built under the caller's inference_mode
        t = t.clone()
    if binary:
        score = torch.where(t == 1, logits[:, 0], -logits[:, 0])
        prob = torch.sigmoid(score.detach().float())
    else:
        score = logits.gather(1, t[:, None])[:, 0]
        prob = torch.softmax(ld.float(), 1).gather(1, t[:, None])[:, 0]
    return t, score, prob, binary


def cat_parts(parts: list[dict], key: str, dtype=None) -> torch.Tensor | None:
    """One field of the per-chunk results, concatenated (None when the chunks lack it)."""
    if parts[0].get(key) is None:
        return None
    t = torch.cat([p[key] for p in parts], 0)
    return t if dtype is None else t.to(dtype)


def result_fields(parts: list[dict], maps: torch.Tensor, layer_maps: torch.Tensor, all_zero: torch.Tensor,
                  layer: str, head: str) -> dict:
    """The :class:`CAMResult` fields every method fills the same way from its per-chunk results."""
    return dict(maps=maps, maps_normalized=normalize_maps(maps), layer_maps=layer_maps,
                targets=cat_parts(parts, "targets", torch.long), scores=cat_parts(parts, "scores", torch.float32),
                probs=cat_parts(parts, "probs", torch.float32), all_zero=all_zero,
                weights=cat_parts(parts, "weights", torch.float32), zero_grad=cat_parts(parts, "zero_grad"),
                layer=layer, head=head, binary=parts[0]["binary"])


@dataclass
class CAMResult:
    """Grad-CAM maps of one head for N images (all tensors on the CPU).

    maps             float32 [N, H, W]: upsampled to the input size, raw scale, >= 0
    maps_normalized  float32 [N, H, W]: per-image min-max to [0, 1]; all-zero maps stay 0
    layer_maps       float32 [N, h, w]: at the layer's resolution, before upsampling
    targets          long [N]: the class each map explains
    scores           float32 [N]: the differentiated score (target logit, or +/-logit)
    probs            float32 [N]: probability of the target (softmax, or sigmoid for 1 unit)
    all_zero         bool [N]: the map is zero everywhere
    weights          float32 [N, C]: channel weights mean_hw(dScore/dA)
    zero_grad        bool [N]: the gradient itself was exactly zero everywhere
    """

    maps: torch.Tensor
    maps_normalized: torch.Tensor
    layer_maps: torch.Tensor
    targets: torch.Tensor
    scores: torch.Tensor
    probs: torch.Tensor
    all_zero: torch.Tensor
    weights: torch.Tensor | None = None
    zero_grad: torch.Tensor | None = None
    layer: str = ""
    head: str = "class"
    binary: bool = field(default=False, repr=False)

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    def notes(self) -> list[str]:
        """Human-readable remarks, one per image whose map needs explaining."""
        out = []
        prefix = self._note_prefix()
        for i in torch.nonzero(self.all_zero).flatten().tolist():
            if self.zero_grad is not None and bool(self.zero_grad[i]):
                why = f"the gradient of the target score w.r.t. {self._gradient_of()} is zero everywhere"
            else:
                why = self._no_evidence_reason()
            out.append(f"{prefix}image {i} (target {int(self.targets[i])}): {why}, map is all zeros")
        flat = self._peak_maps().flatten(1)
        const = (~self.all_zero) & (flat.amax(1) == flat.amin(1))
        for i in torch.nonzero(const).flatten().tolist():
            out.append(f"{prefix}image {i} (target {int(self.targets[i])}): map is constant, "
                       "normalized to all ones")
        return out

    # what :meth:`notes` says; a subclass for another method changes these
    def _note_prefix(self) -> str:
        return "" if self.head == "class" else f"head {self.head}, "

    def _gradient_of(self) -> str:
        return self.layer or "the layer"

    def _no_evidence_reason(self) -> str:
        return "all gradients non-positive where the layer is active (the evidence argues against the target)"

    def _peak_maps(self) -> torch.Tensor:
        """The maps whose constancy is reported (the layer-resolution maps)."""
        return self.layer_maps


def _parse_heads_and_batch(model: nn.Module, heads: Sequence[str] | str | None, batch_size: int,
                           check: Callable[[Sequence[str], Sequence[str]], None]
                           ) -> tuple[int, dict[str, int] | None, list[str] | None]:
    """Validate the constructor's ``batch_size`` and ``heads`` (shared by GradCAM and the
    attribution methods of :mod:`pipeline.visualization.cams`).

    Returns ``(batch_size, head_classes, heads)``: ``head_classes`` is the model's
    ``{head: n_classes}`` (``None`` when it has none); ``heads`` is a list (one name becomes a
    one-item list) checked with ``check(heads, valid_heads)`` when the model names its heads,
    or ``None`` for all heads.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    hc = getattr(model, "head_classes", None)
    head_classes: dict[str, int] | None = dict(hc) if isinstance(hc, Mapping) and hc else None
    if heads is not None:
        heads = [heads] if isinstance(heads, str) else list(heads)
        if not heads:
            raise ValueError("heads is empty")
        if head_classes is not None:
            check(heads, list(head_classes))
    return int(batch_size), head_classes, heads


class GradCAM:
    """Grad-CAM at one layer.

    ``GradCAM(model, target_layer, heads=None, batch_size=256)``; ``target_layer`` is a module
    name (``"features.conv3"``) or the module itself; ``heads`` restricts a multi-head model to
    some heads (default: all; ignored names raise ``ValueError``).

    ``cam(x, targets=None)``: ``x`` ``[N, C, H, W]`` (or one ``[C, H, W]`` image) in the
    model's input range. ``targets``: ``None`` = the predicted class of each image (argmax;
    1-unit head: ``logit > 0``), an ``int`` for all images, a sequence/tensor of N ints (one
    per image), or for a multi-head model a dict ``{head: targets}`` (heads missing from the
    dict use their prediction). Out-of-range targets and unknown heads raise ``ValueError``.
    """

    def __init__(self, model: nn.Module, target_layer: str | nn.Module, heads: Sequence[str] | None = None,
                 batch_size: int = 256, channels_last: bool | None = None, skip_unused_heads: bool = True):
        self.model = model
        self.layer_name, self.layer = resolve_layer(model, target_layer)
        if self.layer is model:
            raise ValueError("the target layer must be a sub-module, not the model itself")
        self.batch_size, self.head_classes, self.heads = _parse_heads_and_batch(
            model, heads, batch_size, self._check_heads)
        self.channels_last = channels_last
        self.skip_unused_heads = skip_unused_heads
        self._fast_ok = True
        self._closed = False

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> "GradCAM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Hooks only exist during a call and are always removed; this marks the object closed."""
        self._closed = True

    # -- validation -----------------------------------------------------------------------
    @staticmethod
    def _check_heads(heads: Sequence[str], valid: Sequence[str]) -> None:
        bad = [h for h in heads if h not in valid]
        if bad:
            raise ValueError(f"unknown head(s) {bad}; valid heads: {list(valid)}")

    @staticmethod
    def _as_targets(t, n: int, head: str, n_classes: int | None) -> torch.Tensor | None:
        if t is None:
            return None
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
                raise ValueError(f"target {bad} out of range for head {head!r}: valid classes are "
                                 f"0..{n_classes - 1}")
        return tt

    def _targets_by_head(self, targets, heads: list[str], n: int, n_classes: Mapping[str, int | None]):
        """``{head: long[N] | None}`` (``None``: use the prediction) for the heads to compute."""
        if isinstance(targets, Mapping):
            bad = [h for h in targets if h not in heads]
            if bad:
                raise ValueError(f"targets given for unknown or unselected head(s) {bad}; "
                                 f"computing heads: {list(heads)}")
            return {h: self._as_targets(targets.get(h), n, h, n_classes[h]) for h in heads}
        return {h: self._as_targets(targets, n, h, n_classes[h]) for h in heads}

    def _n_classes(self, head: str) -> int | None:
        if self.head_classes is not None and head in self.head_classes:
            return int(self.head_classes[head])
        return None

    def _heads_from_outputs(self, outputs: Mapping[str, torch.Tensor], ctx: dict) -> None:
        """For a model without ``head_classes``: check the requested heads against the first
        forward's ``outputs`` and set ``ctx["heads"]`` and ``ctx["by_head"]`` (the class count of
        a head is its logits' width, a 1-unit head counting as 2 classes)."""
        valid = list(outputs)
        hs = list(self.heads) if self.heads is not None else valid
        self._check_heads(hs, valid)
        ncls = {}
        for h in hs:
            k = outputs[h].shape[1] if outputs[h].dim() > 1 else 1
            ncls[h] = 2 if k == 1 else int(k)
        ctx["heads"] = hs
        ctx["by_head"] = self._targets_by_head(ctx["targets"], hs, ctx["n"], ncls)

    # -- the call ---------------------------------------------------------------------------
    def __call__(self, x, targets=None):
        if self._closed:
            raise RuntimeError("this GradCAM was closed")
        x = torch.as_tensor(x)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4:
            raise ValueError(f"expected images [N, C, H, W], got shape {tuple(x.shape)}")
        n = int(x.shape[0])
        if n == 0:
            raise ValueError("no images")
        # everything that can be checked is checked before any work; a model without
        # ``head_classes`` is checked against its outputs after the first forward
        ctx: dict = {"n": n, "targets": targets, "heads": None, "by_head": None}
        if self.head_classes is not None:
            heads = self.heads if self.heads is not None else list(self.head_classes)
            ctx["heads"] = heads
            ctx["by_head"] = self._targets_by_head(targets, heads, n, {h: self._n_classes(h) for h in heads})
        device = next((p.device for p in self.model.parameters()), x.device)
        size = tuple(x.shape[-2:])

        # fast paths (eval mode only): channels_last below the layer, unrequested heads skipped;
        # if the model's code rejects either, the first chunk is redone without them, once
        fast = not self.model.training and self._fast_ok
        pdtype = next((p.dtype for p in self.model.parameters()), torch.float32)
        use_cl = (self.channels_last if self.channels_last is not None
                  else device.type == "cpu" and pdtype == torch.float32)
        use_cl = bool(use_cl) and fast

        parts: dict[str, list[dict]] = {}
        dict_model = None
        with torch.inference_mode(False):
            for i in range(0, n, self.batch_size):
                xb = x[i:i + self.batch_size]
                if xb.is_inference():
                    xb = xb.clone()
                xb = xb.to(device)
                sl = slice(i, i + len(xb))
                res = None
                if fast:
                    try:
                        xf = xb.contiguous(memory_format=torch.channels_last) if use_cl else xb
                        dict_model, res = self._chunk(xf, sl, ctx, size, skip=self.skip_unused_heads)
                    except Exception:
                        if i > 0:
                            raise
                        fast = use_cl = False  # retry: ordinary layout, every head computed
                if res is None:
                    dict_model, res = self._chunk(xb, sl, ctx, size, skip=False)
                    if i == 0 and self._fast_ok and not self.model.training:
                        self._fast_ok = False  # the fast path failed where the plain one works
                for h, r in res.items():
                    parts.setdefault(h, []).append(r)
        results = {h: self._assemble(h, p) for h, p in parts.items()}
        if not dict_model:
            return next(iter(results.values()))
        return results

    def _skip_hooks(self, heads: Sequence[str]) -> list:
        """Forward pre-hooks cutting the input of heads nobody asked for to an empty batch.

        Only for a model whose ``heads`` is an ``nn.ModuleDict`` keyed like ``head_classes``
        (the project's MultiHead), and never for the head that contains the target layer.
        """
        mh = getattr(self.model, "heads", None)
        if (not isinstance(mh, nn.ModuleDict) or self.head_classes is None
                or set(mh.keys()) != set(self.head_classes)):
            return []

        def empty(module, args):
            return tuple(a[:0] if isinstance(a, torch.Tensor) and a.dim() > 0 else a for a in args)

        handles = []
        for name, m in mh.items():
            if name not in heads and not any(sub is self.layer for sub in m.modules()):
                handles.append(m.register_forward_pre_hook(empty))
        return handles

    def _chunk(self, xb: torch.Tensor, sl: slice, ctx: dict, size, skip: bool = False):
        state: dict = {}
        layer_name = self.layer_name

        def hook(module, inputs, out):
            if "a" in state:
                raise RuntimeError(f"layer {layer_name!r} ran twice in one forward pass; Grad-CAM needs "
                                   "a layer used once")
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"Grad-CAM needs a layer with a spatial output [N, C, h, w]; "
                                 f"{layer_name!r} gives {shape}")
            a = out.detach()
            if a.is_inference():
                a = a.clone()
            a.requires_grad_(True)
            state["a"] = a
            torch.set_grad_enabled(True)  # graph from here on only
            return a.clone(memory_format=torch.contiguous_format)

        prev_grad = torch.is_grad_enabled()
        handles = [self.layer.register_forward_hook(hook)]
        try:
            if skip and ctx["heads"] is not None and len(ctx["heads"]) < len(self.head_classes or ()):
                handles += self._skip_hooks(ctx["heads"])
            torch.set_grad_enabled(False)  # no graph below the target layer
            out = self.model(xb)
            for h in handles:
                h.remove()
            handles = []
            if "a" not in state:
                raise RuntimeError(f"layer {layer_name!r} was not executed by the forward pass")
            a = state.pop("a")
            dict_model = isinstance(out, Mapping)
            if dict_model:
                outputs = dict(out)
            else:  # one output: named "class", or the single name in head_classes
                known = ctx["heads"] or []
                outputs = {known[0] if len(known) == 1 else "class": out}
            if ctx["by_head"] is None:  # model without head_classes: check against its outputs
                self._heads_from_outputs(outputs, ctx)
            hs = ctx["heads"]
            missing = [h for h in hs if h not in outputs]
            if missing:
                raise ValueError(f"head(s) {missing} not in the model's outputs {list(outputs)}")
            short = [h for h in hs if outputs[h].shape[0] != len(xb)]
            if short:
                raise RuntimeError(f"head(s) {short} returned {outputs[short[0]].shape[0]} rows for {len(xb)} images")
            chunk_targets = {h: (None if t is None else t[sl]) for h, t in ctx["by_head"].items()}
            torch.set_grad_enabled(True)
            res = {}
            for j, h in enumerate(hs):
                t, score, prob, binary = target_scores(outputs[h], chunk_targets.get(h))
                if not score.requires_grad:
                    raise ValueError(f"head {h!r} does not depend on layer {layer_name!r}")
                g, = torch.autograd.grad(score.sum(), a, retain_graph=j < len(hs) - 1, allow_unused=True)
                if g is None:
                    g = torch.zeros_like(a)
                weights = g.mean(dim=(2, 3))
                cam = torch.einsum("nc,nchw->nhw", weights, a.detach()).clamp_min_(0)
                up = F.interpolate(cam.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]
                zero_grad = torch.zeros(len(cam), dtype=torch.bool, device=cam.device)
                dead = torch.nonzero(cam.flatten(1).amax(1) <= 0).flatten()
                if len(dead):  # only all-zero maps need to know whether the gradient vanished
                    zero_grad[dead] = (g[dead] == 0).flatten(1).all(1)
                res[h] = dict(
                    maps=up.clamp_min_(0), layer_maps=cam, targets=t, scores=score.detach(), probs=prob,
                    weights=weights, zero_grad=zero_grad, binary=binary)
            return dict_model, {h: {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v)
                                    for k, v in r.items()} for h, r in res.items()}
        finally:
            for h in handles:
                h.remove()
            torch.set_grad_enabled(prev_grad)

    def _assemble(self, head: str, parts: list[dict]) -> CAMResult:
        maps = cat_parts(parts, "maps", torch.float32)
        layer_maps = cat_parts(parts, "layer_maps", torch.float32)
        return CAMResult(**result_fields(parts, maps, layer_maps, ~(layer_maps.flatten(1) > 0).any(1),
                                         self.layer_name, head))
