"""More class-activation maps: Grad-CAM++, Score-CAM, Layer-CAM and HiResCAM.

Every method has Grad-CAM's call shape (:mod:`pipeline.visualization.gradcam`)::

    Method(model, target_layer, heads=None, batch_size=256, **params)(x, targets=None)

and returns an :class:`AttributionResult` (a :class:`CAMResult` with a few more fields) for a
model that returns a tensor of logits, ``{head: AttributionResult}`` for a model that returns a
dict. Targets, scores and probabilities follow Grad-CAM: the default target is the predicted
class; the differentiated score is the target's logit (pre-softmax), or for a 1-unit (binary)
head ``+logit`` for class 1 and ``-logit`` for class 0; ``probs`` is the softmax (sigmoid)
probability of the target.

With ``A`` the layer's activation ``[C, h, w]`` and ``g = dScore/dA``:

* :class:`GradCAMPlusPlus` (Chattopadhyay et al., 2018), closed form under the exp(score)
  assumption as in pytorch-grad-cam: ``alpha = g^2 / (2 g^2 + sum_hw(A) g^3)`` (0 where
  ``g = 0``; computed as the equal ``1 / (2 + sum_hw(A) g)``, which does not underflow),
  ``w_c = sum_hw(alpha * relu(g))``, map ``relu(sum_c w_c A_c)``. No epsilon is added to the
  denominator (pytorch-grad-cam adds 1e-6, which matters when gradients are small);
* :class:`ScoreCAM` (Wang et al., 2020): each channel ``A_c`` is upsampled (bilinear) to the
  input size and min-max normalized to ``[0, 1]``; the input is multiplied by it and the
  weight ``w_c`` is the target's probability (softmax, or sigmoid for a binary head) on that
  masked input (minus the probability on an all-zero input with ``subtract_baseline=True``);
  a constant channel cannot be normalized and gets ``w_c = 0`` (as in the authors' code).
  Map ``relu(sum_c w_c A_c)``. No gradients at all. The masked inputs of all images of a
  chunk are run in batches of ``mask_batch_size`` (default ``batch_size``) rows, and one
  forward of a masked batch serves every head;
* :class:`LayerCAM` (Jiang et al., 2021): ``relu(sum_c relu(g_c) * A_c)`` per location;
* :class:`HiResCAM` (Draelos & Carin, 2020): ``relu(sum_c g_c * A_c)`` per location (no
  spatial averaging of the gradient).

Maps are computed at the layer's resolution (``layer_maps``) and upsampled to the input size
with ``F.interpolate(mode="bilinear", align_corners=False)`` (``maps``), exactly as Grad-CAM.

Machinery shared with :mod:`pipeline.visualization.gradients` lives in
:class:`AttributionMethod`: input/target/head validation (Grad-CAM's own helpers are reused),
batching, grad enabled explicitly (works under ``torch.inference_mode()``, e.g. inside a
Lightning loop), hooks registered per call and removed in ``finally``, the model's
``train()/eval()`` mode left alone (call ``model.eval()`` first), and no parameter ``.grad``
ever touched (``torch.autograd.grad`` w.r.t. the activation or the input only). The gradient
CAMs share one forward pass across heads and do one backward per head, like Grad-CAM: the
forward runs without a graph below the target layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.visualization.gradcam import (CAMResult, GradCAM, _parse_heads_and_batch, cat_parts, normalize_maps,
                                            result_fields, target_scores)
from pipeline.visualization.layers import resolve_layer

__all__ = ["AttributionResult", "AttributionMethod", "GradientCAM", "GradCAMPlusPlus", "ScoreCAM",
           "LayerCAM", "HiResCAM", "target_scores", "upsample_maps"]


@dataclass
class AttributionResult(CAMResult):
    """A :class:`CAMResult` with what the other methods add.

    attributions  float32 [N, C, H, W] or None: input-space, per-channel attribution of the
                  gradient methods (``maps`` is its channel reduction); None for the CAMs
    method        the registry name of the method that made it
    extras        method-specific per-image tensors (e.g. Integrated Gradients' ``delta``)
    zero_reason   why a map of this method can be all zeros (used by :meth:`notes`)
    """

    attributions: torch.Tensor | None = None
    method: str = ""
    extras: dict = field(default_factory=dict)
    zero_reason: str = "no positive evidence for the target"

    def _note_prefix(self) -> str:
        return f"{super()._note_prefix()}{self.method or 'map'}: "

    def _gradient_of(self) -> str:
        return self.layer if self.layer and self.layer != "input" else "the input"

    def _no_evidence_reason(self) -> str:
        return self.zero_reason

    def _peak_maps(self) -> torch.Tensor:
        return self.maps


def upsample_maps(cam: torch.Tensor, size) -> torch.Tensor:
    """``[n, h, w]`` -> ``[n, H, W]``, bilinear, ``align_corners=False``, clamped at 0 (as Grad-CAM)."""
    return F.interpolate(cam.unsqueeze(1), size=tuple(size), mode="bilinear",
                         align_corners=False)[:, 0].clamp_min(0)


class AttributionMethod:
    """Shared base: validation, batching, grad modes, hooks, targets, assembly.

    A subclass implements ``_chunk(xb, sl, ctx) -> {head: record}`` for one chunk of images
    (``record``: a dict with ``maps``, ``targets``, ``scores``, ``probs``, ``binary`` and
    optionally ``layer_maps``, ``weights``, ``zero_grad``, ``attributions``, ``extras``), and
    sets ``needs_layer`` (the CAMs) or not (pure gradient methods: ``target_layer`` must be
    None). ``batch_size`` bounds the rows of one forward pass.
    """

    method_name = "attribution"
    needs_layer = True
    zero_reason = "no positive evidence for the target"

    # target/head validation is Grad-CAM's own, not a copy
    _check_heads = staticmethod(GradCAM._check_heads)
    _as_targets = staticmethod(GradCAM._as_targets)
    _targets_by_head = GradCAM._targets_by_head
    _n_classes = GradCAM._n_classes
    _heads_from_outputs = GradCAM._heads_from_outputs

    def __init__(self, model: nn.Module, target_layer: str | nn.Module | None = None,
                 heads: Sequence[str] | None = None, batch_size: int = 256):
        self.model = model
        name = type(self).__name__
        if self.needs_layer:
            if target_layer is None:
                raise ValueError(f"{name} needs a target layer (a module name such as 'features.conv3')")
            self.layer_name, self.layer = resolve_layer(model, target_layer)
            if self.layer is model:
                raise ValueError("the target layer must be a sub-module, not the model itself")
        else:
            if target_layer is not None:
                raise ValueError(f"{name} attributes to the input pixels; target_layer must be None, "
                                 f"got {target_layer!r}")
            self.layer_name, self.layer = "input", None
        self.batch_size, self.head_classes, self.heads = _parse_heads_and_batch(
            model, heads, batch_size, self._check_heads)
        self._closed = False

    # -- context manager ------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Hooks only exist during a call and are always removed; this marks the object closed."""
        self._closed = True

    # -- the call ---------------------------------------------------------------------------
    def _images(self, x) -> torch.Tensor:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} was closed")
        x = torch.as_tensor(x)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4:
            raise ValueError(f"expected images [N, C, H, W], got shape {tuple(x.shape)}")
        if len(x) == 0:
            raise ValueError("no images")
        if not x.is_floating_point():
            x = x.float()
        return x

    def _context(self, x: torch.Tensor, targets) -> dict:
        """Everything checkable is checked before any work; a model without ``head_classes``
        is checked against its outputs after the first forward (:meth:`_outputs`)."""
        n = len(x)
        ctx: dict = {"n": n, "targets": targets, "heads": None, "by_head": None,
                     "size": tuple(x.shape[-2:])}
        if self.head_classes is not None:
            heads = self.heads if self.heads is not None else list(self.head_classes)
            ctx["heads"] = heads
            ctx["by_head"] = self._targets_by_head(targets, heads, n, {h: self._n_classes(h) for h in heads})
        return ctx

    def _device(self, x: torch.Tensor) -> torch.device:
        return next((p.device for p in self.model.parameters()), x.device)

    def _images_per_chunk(self) -> int:
        return self.batch_size

    def _begin(self, x: torch.Tensor, ctx: dict) -> None:
        """Per-call preparation of a subclass (baselines, random generators)."""

    def __call__(self, x, targets=None):
        x = self._images(x)
        ctx = self._context(x, targets)
        device = self._device(x)
        step = self._images_per_chunk()
        parts: dict[str, list[dict]] = {}
        prev_grad = torch.is_grad_enabled()
        with torch.inference_mode(False):
            try:
                self._begin(x, ctx)
                for i in range(0, len(x), step):
                    xb = x[i:i + step]
                    if xb.is_inference():
                        xb = xb.clone()
                    xb = xb.to(device)
                    res = self._chunk(xb, slice(i, i + len(xb)), ctx)
                    for h, r in res.items():
                        parts.setdefault(h, []).append(_to_cpu(r))
            finally:
                torch.set_grad_enabled(prev_grad)
            results = {h: self._assemble(h, p) for h, p in parts.items()}
        return results if ctx["dict_model"] else results["class"]

    def _chunk(self, xb: torch.Tensor, sl: slice, ctx: dict) -> dict[str, dict]:
        raise NotImplementedError

    # -- pieces for _chunk ------------------------------------------------------------------
    def _outputs(self, out, ctx: dict, rows: int) -> dict[str, torch.Tensor]:
        """``{head: logits [rows, K]}`` for the heads being computed (checks them once)."""
        dict_model = isinstance(out, Mapping)
        ctx["dict_model"] = dict_model
        outputs = dict(out) if dict_model else {"class": out}
        if ctx["by_head"] is None:  # model without head_classes: check against its outputs
            self._heads_from_outputs(outputs, ctx)
        missing = [h for h in ctx["heads"] if h not in outputs]
        if missing:
            raise ValueError(f"head(s) {missing} not in the model's outputs {list(outputs)}")
        res = {}
        for h in ctx["heads"]:
            lg = outputs[h]
            if lg.dim() == 1:
                lg = lg.unsqueeze(1)
            if lg.shape[0] != rows:
                raise RuntimeError(f"head {h!r} returned {lg.shape[0]} rows for {rows} images")
            res[h] = lg
        return res

    def _evaluate(self, outputs: dict[str, torch.Tensor], ctx: dict, sl: slice) -> dict[str, dict]:
        """Per head: targets of this chunk (given or predicted), score (with graph), prob."""
        ev = {}
        for h, logits in outputs.items():
            t = ctx["by_head"].get(h)
            t, score, prob, binary = target_scores(logits, None if t is None else t[sl])
            ev[h] = {"targets": t, "score": score, "probs": prob, "binary": binary}
        return ev

    def _head_grads(self, ev: dict[str, dict], wrt: torch.Tensor, what: str):
        """``(head, dScore/dwrt)`` for each head, one backward per head on a shared graph."""
        heads = list(ev)
        for j, h in enumerate(heads):
            score = ev[h]["score"]
            if not score.requires_grad:
                raise ValueError(f"head {h!r} does not depend on {what}")
            g, = torch.autograd.grad(score.sum(), wrt, retain_graph=j < len(heads) - 1, allow_unused=True)
            yield h, (torch.zeros_like(wrt) if g is None else g)

    def _forward_at_layer(self, xb: torch.Tensor, grad: bool):
        """Forward with the target layer's output captured as ``a`` (returns ``(out, a)``).

        No graph is built below the layer; with ``grad`` the rest of the forward is recorded
        from the leaf ``a``. The layer hands on a clone, so an in-place op after the layer
        cannot overwrite ``a``.
        """
        state: dict = {}
        name = self.layer_name

        def hook(module, inputs, out):
            if "a" in state:
                raise RuntimeError(f"layer {name!r} ran twice in one forward pass; a CAM needs a layer used once")
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"a CAM needs a layer with a spatial output [N, C, h, w]; {name!r} gives {shape}")
            a = out.detach()
            if a.is_inference():
                a = a.clone()
            if grad:
                a.requires_grad_(True)
                torch.set_grad_enabled(True)  # graph from here on only
            state["a"] = a
            return a.clone()

        handle = self.layer.register_forward_hook(hook)
        try:
            torch.set_grad_enabled(False)
            out = self.model(xb)
        finally:
            handle.remove()
        if "a" not in state:
            raise RuntimeError(f"layer {name!r} was not executed by the forward pass")
        return out, state["a"]

    # -- assembly ---------------------------------------------------------------------------
    def _assemble(self, head: str, parts: list[dict]) -> AttributionResult:
        maps = cat_parts(parts, "maps", torch.float32).clamp_min(0)
        layer_maps = cat_parts(parts, "layer_maps", torch.float32)
        extras = {k: torch.cat([p["extras"][k] for p in parts], 0) for k in parts[0].get("extras", {})}
        return AttributionResult(
            **result_fields(parts, maps, maps if layer_maps is None else layer_maps, ~(maps.flatten(1) > 0).any(1),
                            self.layer_name, head),
            attributions=cat_parts(parts, "attributions", torch.float32),
            method=self.method_name,
            extras=extras,
            zero_reason=self.zero_reason,
        )


def _to_cpu(r: dict) -> dict:
    out = {}
    for k, v in r.items():
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu()
        elif isinstance(v, dict):
            v = _to_cpu(v)
        out[k] = v
    return out


def _zero_grad_flags(g: torch.Tensor) -> torch.Tensor:
    return (g == 0).flatten(1).all(1)


class GradientCAM(AttributionMethod):
    """Base of the CAMs built from the activation ``A`` and its gradient ``g`` at one layer:
    one forward (no graph below the layer) shared by all heads, one backward per head.
    Subclasses define ``_combine(a, g) -> (layer_map [n, h, w], weights [n, C] | None)``."""

    zero_reason = "no location has positive gradient-weighted activation, map is relu'd away"

    def _combine(self, a: torch.Tensor, g: torch.Tensor):
        raise NotImplementedError

    def _chunk(self, xb, sl, ctx):
        out, a = self._forward_at_layer(xb, grad=True)
        ev = self._evaluate(self._outputs(out, ctx, len(xb)), ctx, sl)
        torch.set_grad_enabled(True)
        res = {}
        ad = a.detach()
        for h, g in self._head_grads(ev, a, f"layer {self.layer_name!r}"):
            cam, weights = self._combine(ad, g)
            cam = cam.clamp_min(0)
            res[h] = dict(maps=upsample_maps(cam, ctx["size"]), layer_maps=cam, weights=weights,
                          zero_grad=_zero_grad_flags(g), targets=ev[h]["targets"],
                          scores=ev[h]["score"].detach(), probs=ev[h]["probs"], binary=ev[h]["binary"])
        return res


class GradCAMPlusPlus(GradientCAM):
    """Grad-CAM++: ``w_c = sum_hw(alpha * relu(g))``, ``alpha = g^2 / (2 g^2 + sum_hw(A) g^3)``.

    ``weights`` holds ``w``. Where ``2 + sum_hw(A) g = 0`` (a pole of the closed form) alpha is
    set to 0, as where ``g = 0``.
    """

    method_name = "gradcam++"

    def _combine(self, a, g):
        s = a.sum(dim=(2, 3), keepdim=True)
        den = 2.0 + s * g  # g^2 (2 + S g) / g^2
        ok = (g != 0) & (den != 0)
        alpha = torch.where(ok, 1.0 / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(den))
        weights = (alpha * g.clamp_min(0)).sum(dim=(2, 3))
        return torch.einsum("nc,nchw->nhw", weights, a), weights


class LayerCAM(GradientCAM):
    """Layer-CAM: ``relu(sum_c relu(g_c) * A_c)`` per location (``weights`` is None)."""

    method_name = "layercam"

    def _combine(self, a, g):
        return (g.clamp_min(0) * a).sum(1), None


class HiResCAM(GradientCAM):
    """HiResCAM: ``relu(sum_c g_c * A_c)`` per location (``weights`` is None)."""

    method_name = "hirescam"

    def _combine(self, a, g):
        return (g * a).sum(1), None


class ScoreCAM(AttributionMethod):
    """Score-CAM: channel weights are the target's probability on the input masked by each
    upsampled, min-max normalized channel (see the module docstring).

    ``subtract_baseline``: subtract the target's probability on an all-zero input (the
    paper's ``f(X_b)``). ``mask_batch_size``: rows per forward of masked inputs (default
    ``batch_size``). ``weights`` holds the channel weights.
    """

    method_name = "scorecam"
    zero_reason = "the score-weighted activations are nowhere positive"

    def __init__(self, model, target_layer, heads=None, batch_size: int = 256,
                 subtract_baseline: bool = False, mask_batch_size: int | None = None):
        super().__init__(model, target_layer, heads=heads, batch_size=batch_size)
        self.subtract_baseline = bool(subtract_baseline)
        mb = self.batch_size if mask_batch_size is None else int(mask_batch_size)
        if mb < 1:
            raise ValueError(f"mask_batch_size must be >= 1, got {mask_batch_size}")
        self.mask_batch_size = mb

    def _chunk(self, xb, sl, ctx):
        out, a = self._forward_at_layer(xb, grad=False)
        ev = self._evaluate(self._outputs(out, ctx, len(xb)), ctx, sl)
        n, c = a.shape[:2]
        up = F.interpolate(a, size=ctx["size"], mode="bilinear", align_corners=False)
        flat = up.flatten(2)
        mn, mx = flat.amin(2), flat.amax(2)
        valid = mx > mn  # a constant channel cannot be normalized: weight 0
        rng = torch.where(valid, mx - mn, torch.ones_like(mx))
        masks = (up - mn[..., None, None]) / rng[..., None, None]
        pairs = torch.nonzero(valid)
        weights = {h: torch.zeros(n, c, device=a.device) for h in ev}
        with torch.no_grad():
            for j in range(0, len(pairs), self.mask_batch_size):
                ii, kk = pairs[j:j + self.mask_batch_size].unbind(1)
                masked = xb[ii] * masks[ii, kk].unsqueeze(1)
                outputs = self._outputs(self.model(masked), ctx, len(ii))
                for h, e in ev.items():
                    weights[h][ii, kk] = target_scores(outputs[h], e["targets"][ii])[2].to(a.dtype)
            if self.subtract_baseline:
                base = self._outputs(self.model(torch.zeros_like(xb)), ctx, n)
                for h, e in ev.items():
                    pb = target_scores(base[h], e["targets"])[2].to(a.dtype)
                    weights[h] = torch.where(valid, weights[h] - pb[:, None], torch.zeros_like(weights[h]))
        res = {}
        for h, e in ev.items():
            cam = torch.einsum("nc,nchw->nhw", weights[h], a).clamp_min(0)
            res[h] = dict(maps=upsample_maps(cam, ctx["size"]), layer_maps=cam, weights=weights[h],
                          targets=e["targets"], scores=e["score"].detach(), probs=e["probs"],
                          binary=e["binary"])
        return res
