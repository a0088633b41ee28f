"""The base of the CAMs built from a layer's activation ``A`` and its gradient ``g = dScore/dA``.

Per chunk: one forward with no graph below the layer (its output captured as the leaf ``A``),
shared by every head; one backward per head w.r.t. ``A`` only. A subclass supplies only
``_combine(A, g) -> (map [n, h, w], weights [n, C] or None)``; the map is ReLU'd here and
upsampled to the input bilinearly, each cell at its receptive field's centre
(:func:`~pipeline.visualization.receptive_field.place_maps`; ``placement="stretch"``:
``F.interpolate(mode="bilinear", align_corners=False)`` over the whole image, as Captum; the same
for "same"-padded layers) (``maps``; ``layer_maps`` keeps the layer's resolution). Grad-CAM is the smallest example
(:mod:`pipeline.attribution.gradcam`).
"""
from __future__ import annotations

import torch

from pipeline.attribution.base import AttributionMethod, CallState
from pipeline.attribution.fast_backward import affine_batchnorm_grads
from pipeline.attribution.pooled_backward import PooledChain, PooledGrad, likely_pooled_chain
from pipeline.attribution.result import ChunkMaps
from pipeline.visualization.receptive_field import place_maps

__all__ = ["GradientCAM", "upsample_maps"]


def upsample_maps(cam: torch.Tensor, size, geometry=None) -> torch.Tensor:
    """``[n, h, w]`` -> ``[n, H, W]``, bilinear, clamped at 0: each cell at its receptive field's centre
    given a ``geometry`` (:func:`~pipeline.visualization.receptive_field.layer_geometry`), else stretched
    (``align_corners=False``)."""
    return place_maps(cam, size, geometry)


class GradientCAM(AttributionMethod):
    """A CAM from ``A`` and ``g`` at one layer; subclasses define :meth:`_combine`.

    ``closed_form_backward`` (default True): where the layer is followed by ``[BatchNorm2d] ->
    [ReLU] -> global average pool`` and the heads read only the pooled vector, ``g`` is written by
    hand (:mod:`~pipeline.attribution.pooled_backward`; checked on each forward, autograd otherwise).
    """

    zero_reason = "no location has positive gradient-weighted activation, map is relu'd away"
    # with the closed form, hand the layer's output on in its own layout (channels_last: no copy).
    # Only for a CAM whose maps are insensitive to the rounding of another layout above the layer
    # (Grad-CAM's means); Grad-CAM++'s alphas divide by near-zero sums and magnify it past 1e-5.
    closed_form_keeps_layout = False

    def __init__(self, model, target_layer=None, heads=None, batch_size: int = 256,
                 closed_form_backward: bool = True, **fast_paths):
        super().__init__(model, target_layer, heads=heads, batch_size=batch_size, **fast_paths)
        self.closed_form_backward = bool(closed_form_backward)
        self._chain_modules = likely_pooled_chain(model, self.layer) if self.closed_form_backward else []
        self._closed_form_ok = True

    def _combine(self, a: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def _combine_pooled(self, a: torch.Tensor, g: PooledGrad) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`_combine` for a hand-written gradient (a subclass may use it without materializing it)."""
        return self._combine(a, g.dense())

    def _chunk(self, xb: torch.Tensor, sl: slice, state: CallState) -> dict[str, ChunkMaps]:
        use_chain = bool(self._chain_modules) and self._closed_form_ok and state.share_layer_output
        chain = None
        with affine_batchnorm_grads(self.model):  # the batch norms above the layer: their cheap backward
            chain = PooledChain(self._chain_modules) if use_chain else None
            try:
                out, a = self._forward(xb, state, capture=True, grad=True,
                                       keep_layout=use_chain and self.closed_form_keeps_layout,
                                       on_hand_on=chain.begin if chain else None)
            finally:
                if chain is not None:
                    chain.remove()
        scored = self._scored(self._outputs(out, state, len(xb)), state, sl)
        torch.set_grad_enabled(True)
        ad = a.detach()
        pooled = chain.grads({h: s.score for h, s in scored.items()}, a) if chain is not None else None
        if chain is not None and pooled is None:
            self._closed_form_ok = False  # not this model's shape: autograd (contiguous layout) from now on
        grads = dict(pooled) if pooled is not None else dict(self._head_grads(scored, a, f"layer {self.layer_name!r}"))
        heads = list(grads)
        cams, weights = self._combine_heads(ad, grads)           # [H, n, h, w], {head: [n, C] or None}
        cams = cams.clamp_min_(0)
        maps = self._upsample(cams.flatten(0, 1), xb).unflatten(0, cams.shape[:2])   # every head in one call
        alive = cams.flatten(2).amax(2) > 0                       # [H, n]
        res = {}
        for k, h in enumerate(heads):
            g, cam = grads[h], cams[k]
            zero_grad = torch.zeros(len(cam), dtype=torch.bool, device=cam.device)
            dead = torch.nonzero(~alive[k]).flatten()
            if len(dead):  # only an all-zero map needs to know whether the gradient vanished
                zero_grad[dead] = g.zero_rows(dead) if isinstance(g, PooledGrad) else (g[dead] == 0).flatten(1).all(1)
            res[h] = scored[h].record(maps[k], layer_maps=cam, weights=weights[h], zero_grad=zero_grad)
        return res

    def _combine_heads(self, a: torch.Tensor, grads: dict) -> tuple[torch.Tensor, dict]:
        """Every head's map ``[H, n, h, w]`` (before the ReLU) and weights; one :meth:`_combine` (or
        :meth:`_combine_pooled`) per head unless a subclass does them all at once."""
        cams, weights = [], {}
        for h, g in grads.items():
            cam, w = self._combine_pooled(a, g) if isinstance(g, PooledGrad) else self._combine(a, g)
            cams.append(cam)
            weights[h] = w
        return torch.stack(cams), weights
