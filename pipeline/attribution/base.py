"""The base class of every attribution method: ``Method(model, target_layer)(x, targets)``.

A subclass supplies only what makes it different: ``_chunk`` (the maps of one chunk of
images; :class:`~pipeline.attribution.gradient_cam.GradientCAM` reduces that further to the
channel weights, as pytorch-grad-cam's ``BaseCAM``/``GradCAM``), and optionally ``prepare``
(per-call set-up such as a noise generator) and ``_images_per_chunk``. Everything else lives
here, once:

* checks before any work: images ``[N, C, H, W]`` (or one ``[C, H, W]``), heads, targets (see
  :mod:`pipeline.attribution.targets`); a model without ``head_classes`` is checked against
  its outputs after the first forward;
* batching: ``batch_size`` rows per forward pass, results concatenated per head;
* a multi-head model: every head from ONE forward pass; ``heads_backward="per_head"`` (default)
  runs one backward per head on the shared graph, ``"batched"`` every head's gradient in ONE
  ``torch.autograd.grad(is_grads_batched=True)`` (equal; slower on the CPU, where vmap has no
  batching rule for the convolution backward: docs/gradcam.md); ``heads=`` restricts the heads; a model returning one tensor gives one :class:`AttributionResult`, a model
  returning a dict ``{head: AttributionResult}``;
* grad enabled explicitly (``torch.inference_mode(False)``), so a call from inside a Lightning
  ``predict_step`` works; grad mode restored afterwards; no parameter's ``.grad`` touched;
* hooks exist only during a forward and are removed in ``finally``; the context manager marks
  the method closed; the model's ``train()/eval()`` mode is never changed (call ``model.eval()``);
* three fast paths, in eval mode only: the target layer's captured output (a leaf requiring grad)
  is handed to the rest of the model as it is, not copied (an in-place op on it raises, and the
  chunk is redone with the copy); the part of the forward below the target layer gets a
  ``channels_last`` input (by default for float32 models on the CPU, where oneDNN is faster in
  that layout; the layer hands the rest of the model an ordinary contiguous tensor), and heads
  nobody asked for are cut to an empty batch (a model whose ``heads`` is an ``nn.ModuleDict``
  keyed like ``head_classes``, e.g. the project's MultiHead). If the model's code rejects either,
  the first chunk is redone without them and the method remembers it.
* placement of a layer's map on the input (``placement``, the CAMs): ``"receptive_field"`` (default)
  puts each cell at its receptive field's centre (:mod:`pipeline.visualization.receptive_field`),
  ``"stretch"`` stretches the map over the image as Captum and pytorch-grad-cam do; both agree for
  "same"-padded layers. A layer whose geometry cannot be found is stretched, with a logged note.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from pipeline.attribution.forward import forward_at_layer, unused_head_hooks
from pipeline.attribution.result import AttributionResult, ChunkMaps
from pipeline.attribution.targets import check_heads, target_for, targets_by_head
from pipeline.visualization.layers import resolve_layer
from pipeline.visualization.receptive_field import ChainTrace, LayerGeometry, layer_geometry, place_maps

log = logging.getLogger(__name__)
PLACEMENTS = ("receptive_field", "stretch")
HEADS_BACKWARD = ("per_head", "batched")

__all__ = ["AttributionMethod", "CallState", "Scored", "batched_head_grads", "HEADS_BACKWARD"]


@dataclass
class CallState:
    """What one call knows about itself; nothing is kept from one call to the next."""

    n: int                               # images
    size: tuple[int, int]                # their height and width
    targets: Any                         # as the caller gave them
    heads: list[str] | None = None       # the heads computed (None until the first forward shows them)
    given: dict | None = None            # head -> checked targets: None (prediction), long [n] or a target
    dict_model: bool = False             # the model returns {head: logits}
    channels_last: bool = False          # this chunk's fast paths
    skip_heads: bool = False
    share_layer_output: bool = False     # the layer's captured output handed on without a copy
    prepared: Any = None                 # what the method's prepare() returned


@dataclass
class Scored:
    """One head on one chunk: the target, its differentiable score and its probability."""

    target: Any
    score: torch.Tensor
    probs: torch.Tensor

    def record(self, maps: torch.Tensor, **fields) -> ChunkMaps:
        return ChunkMaps(maps=maps, targets=self.target.index, scores=self.score.detach(), probs=self.probs,
                         binary=bool(self.target.binary), **fields)


class AttributionMethod:
    """Shared machinery of the attribution methods (see the module docstring).

    ``Method(model, target_layer=None, heads=None, batch_size=256, channels_last=None,
    skip_unused_heads=True, placement="receptive_field", heads_backward="per_head", **params)``; ``target_layer`` is a module name
    (``"features.conv3"``) or the module; it is required when ``needs_layer`` and must be None
    otherwise (the input-gradient methods).
    """

    method_name = ""                     # the name results carry (default: the class name, lower case)
    needs_layer = True
    zero_reason = "no positive evidence for the target"

    def __init__(self, model: nn.Module, target_layer: str | nn.Module | None = None,
                 heads: Sequence[str] | str | None = None, batch_size: int = 256,
                 channels_last: bool | None = None, skip_unused_heads: bool = True,
                 placement: str = "receptive_field", heads_backward: str = "per_head"):
        self.model = model
        if heads_backward not in HEADS_BACKWARD:
            raise ValueError(f"heads_backward must be one of {HEADS_BACKWARD}, got {heads_backward!r}")
        self.heads_backward = heads_backward
        self._batched_ok = True
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        self.placement = placement
        self._geometries: dict[tuple, LayerGeometry | None] = {}
        self.placement_notes: list[str] = []   # what could not be placed by its receptive field, and why
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
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        hc = getattr(model, "head_classes", None)
        self.head_classes: dict[str, int] | None = dict(hc) if isinstance(hc, Mapping) and hc else None
        if heads is not None:
            heads = [heads] if isinstance(heads, str) else list(heads)
            if not heads:
                raise ValueError("heads is empty")
            if self.head_classes is not None:
                check_heads(heads, list(self.head_classes))
        self.heads = heads
        self.channels_last = channels_last
        self.skip_unused_heads = skip_unused_heads
        self._fast_ok = True
        self._closed = False

    # -- context manager ------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Hooks only exist during a call and are always removed; this marks the object closed."""
        self._closed = True

    # -- what a subclass supplies -----------------------------------------------------------
    def prepare(self, x: torch.Tensor, state: CallState) -> Any:
        """Per-call set-up (a noise generator, a baseline); stored in ``state.prepared``."""
        return None

    def _images_per_chunk(self) -> int:
        return self.batch_size

    def _chunk(self, xb: torch.Tensor, sl: slice, state: CallState) -> dict[str, ChunkMaps]:
        raise NotImplementedError

    # -- the call ---------------------------------------------------------------------------
    def __call__(self, x, targets=None):
        x = self._images(x)
        device = next((p.device for p in self.model.parameters()), x.device)
        pdtype = next((p.dtype for p in self.model.parameters()), torch.float32)
        cl = self.channels_last if self.channels_last is not None else (device.type == "cpu" and pdtype == torch.float32)
        fast = not self.model.training and self._fast_ok
        parts: dict[str, list[ChunkMaps]] = {}
        prev_grad = torch.is_grad_enabled()
        with torch.inference_mode(False):
            try:
                state = self._state(x, targets)
                state.prepared = self.prepare(x, state)
                step = self._images_per_chunk()
                for i in range(0, len(x), step):
                    xb = x[i:i + step]
                    xb = (xb.clone() if xb.is_inference() else xb).to(device)
                    sl = slice(i, i + len(xb))
                    res = None
                    if fast:
                        try:
                            res = self._chunk_with(xb, sl, state, bool(cl) and self.layer is not None,
                                                   self.skip_unused_heads, True)
                        except Exception:
                            if i > 0:
                                raise
                            fast = False  # retry without the fast paths
                    if res is None:
                        if i == 0:
                            state.prepared = self.prepare(x, state)  # afresh: e.g. the noise generator's seed
                        res = self._chunk_with(xb, sl, state, False, False, False)
                        if i == 0 and self._fast_ok and not self.model.training:
                            self._fast_ok = False  # the fast paths failed where the plain forward works
                    for h, r in res.items():
                        parts.setdefault(h, []).append(r.cpu())
            finally:
                torch.set_grad_enabled(prev_grad)
            name = self.method_name or type(self).__name__.lower()
            results = {h: AttributionResult.from_chunks(p, layer=self.layer_name, head=h, method=name,
                                                        zero_reason=self.zero_reason) for h, p in parts.items()}
        return results if state.dict_model else next(iter(results.values()))

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
        return x if x.is_floating_point() else x.float()

    def _state(self, x: torch.Tensor, targets) -> CallState:
        state = CallState(n=len(x), size=tuple(x.shape[-2:]), targets=targets)
        if self.head_classes is not None:
            state.heads = self.heads if self.heads is not None else list(self.head_classes)
            state.given = targets_by_head(targets, state.heads, state.n, {h: self.head_classes.get(h) for h in state.heads})
        return state

    def _chunk_with(self, xb, sl, state: CallState, channels_last: bool, skip_heads: bool,
                    share: bool) -> dict[str, ChunkMaps]:
        state.channels_last, state.skip_heads, state.share_layer_output = channels_last, skip_heads, share
        return self._chunk(xb, sl, state)

    # -- pieces for _chunk ------------------------------------------------------------------
    def geometry(self, xb: torch.Tensor) -> LayerGeometry | None:
        """The target layer's receptive-field geometry for inputs shaped like ``xb`` (found once per
        shape); None with ``placement="stretch"``, for the input methods, or where it is unknown."""
        if self.placement == "stretch" or self.layer is None:
            return None
        key = tuple(xb.shape[1:])
        if key not in self._geometries:
            self._set_geometry(key, xb, None)
        return self._geometries[key]

    def _set_geometry(self, key: tuple, xb: torch.Tensor, trace: ChainTrace | None) -> None:
        g, note = layer_geometry(self.model, self.layer, xb[:1].detach(), trace)
        if note:
            note = f"{self.method_name or type(self).__name__} at {self.layer_name}: {note}"
            log.warning(note)
            self.placement_notes.append(note)
        self._geometries[key] = g

    def _upsample(self, cam: torch.Tensor, xb: torch.Tensor, mode: str = "bilinear",
                  clamp: bool = True) -> torch.Tensor:
        """Layer maps ``[n, h, w]`` -> ``[n, H, W]`` at ``xb``'s size, placed as ``placement`` says."""
        return place_maps(cam, xb.shape[-2:], self.geometry(xb), mode, clamp)

    def _forward(self, xb: torch.Tensor, state: CallState, capture: bool = False, grad: bool = False,
                 keep_layout: bool = False, on_hand_on=None):
        """The model's forward on ``xb`` with this chunk's fast paths; ``(out, a)`` with the target
        layer's output as ``a`` when ``capture`` (see :func:`~pipeline.attribution.forward.forward_at_layer`)."""
        skip = unused_head_hooks(self.model, state.heads, self.head_classes, self.layer) if state.skip_heads else []
        key, trace = tuple(xb.shape[1:]), None
        if capture and self.layer is not None and self.placement != "stretch" and key not in self._geometries:
            trace = ChainTrace(self.model, self.layer)   # the receptive field, traced on this very forward
            skip = [*trace.handles, *skip]
        res = forward_at_layer(self.model, xb, self.layer, self.layer_name, capture=capture, grad=grad,
                               channels_last=state.channels_last, share=state.share_layer_output,
                               keep_layout=keep_layout, on_hand_on=on_hand_on, hooks=skip)
        if trace is not None:
            self._set_geometry(key, xb, trace)
        return res

    def _outputs(self, out, state: CallState, rows: int) -> dict[str, torch.Tensor]:
        """``{head: logits [rows, K]}`` of the heads computed (checked against the outputs once)."""
        state.dict_model = isinstance(out, Mapping)
        if state.dict_model:
            outputs = dict(out)
        else:  # one output: named "class", or the single name in head_classes
            known = state.heads or []
            outputs = {known[0] if len(known) == 1 else "class": out}
        if state.given is None:  # a model without head_classes: learn its heads from the outputs
            valid = list(outputs)
            heads = list(self.heads) if self.heads is not None else valid
            check_heads(heads, valid)
            n_classes = {h: 2 if outputs[h].dim() == 1 or outputs[h].shape[1] == 1 else int(outputs[h].shape[1])
                         for h in heads}
            state.heads, state.given = heads, targets_by_head(state.targets, heads, state.n, n_classes)
        missing = [h for h in state.heads if h not in outputs]
        if missing:
            raise ValueError(f"head(s) {missing} not in the model's outputs {list(outputs)}")
        res = {}
        for h in state.heads:
            lg = outputs[h] if outputs[h].dim() > 1 else outputs[h].unsqueeze(1)
            if lg.shape[0] != rows:
                raise RuntimeError(f"head {h!r} returned {lg.shape[0]} rows for {rows} images")
            res[h] = lg
        return res

    def _scored(self, outputs: dict[str, torch.Tensor], state: CallState, sl: slice) -> dict[str, Scored]:
        """Per head: this chunk's target (given or predicted), its score (with graph) and probability."""
        res = {}
        for h, logits in outputs.items():
            given = state.given.get(h)
            target = target_for(logits, None if given is None else given[sl])
            res[h] = Scored(target, target(logits), target.probability(logits))
        return res

    def _head_grads(self, scored: dict[str, Scored], wrt: torch.Tensor, what: str):
        """``(head, dScore/dwrt)`` per head, as ``heads_backward`` says: ``"batched"``, every head in
        ONE backward (``torch.autograd.grad(is_grads_batched=True)``: the scores stacked ``[H, n]``,
        the grad outputs the rows of an identity, vmapped); ``"per_head"``, one backward per head
        on the shared graph. A graph whose backward vmap cannot batch falls back to one backward per
        head (remembered, logged once)."""
        heads = list(scored)
        for h in heads:
            if not scored[h].score.requires_grad:
                raise ValueError(f"head {h!r} does not depend on {what}")
        if self.heads_backward == "batched" and len(heads) > 1 and self._batched_ok:
            try:
                grads = batched_head_grads([scored[h].score for h in heads], wrt)
            except RuntimeError as exc:
                self._batched_ok = False
                log.warning("%s: the heads' batched backward failed (%s: %s); one backward per head from now on",
                            type(self).__name__, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            else:
                yield from zip(heads, grads)
                return
        for j, h in enumerate(heads):
            g, = torch.autograd.grad(scored[h].score.sum(), wrt, retain_graph=j < len(heads) - 1, allow_unused=True)
            yield h, (torch.zeros_like(wrt) if g is None else g)


def batched_head_grads(scores: Sequence[torch.Tensor], wrt: torch.Tensor) -> list[torch.Tensor]:
    """``[dscores[k].sum()/dwrt for k]`` in ONE backward: the ``[n]`` scores stacked ``[H, n]``,
    ``torch.autograd.grad(..., is_grads_batched=True)`` with one identity row per head as the grad
    output. The graph is kept, so a caller can still fall back to one backward per head."""
    s = torch.stack([sc.reshape(-1) for sc in scores])
    k = len(scores)
    eye = torch.eye(k, dtype=s.dtype, device=s.device)
    go = eye[:, :, None].expand(k, k, s.shape[1])
    g, = torch.autograd.grad(s, wrt, grad_outputs=go, is_grads_batched=True, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(wrt) for _ in scores] if g is None else list(g.unbind(0))
