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
from pipeline.attribution.result import ChunkMaps
from pipeline.visualization.receptive_field import place_maps

__all__ = ["GradientCAM", "upsample_maps"]


def upsample_maps(cam: torch.Tensor, size, geometry=None) -> torch.Tensor:
    """``[n, h, w]`` -> ``[n, H, W]``, bilinear, clamped at 0: each cell at its receptive field's centre
    given a ``geometry`` (:func:`~pipeline.visualization.receptive_field.layer_geometry`), else stretched
    (``align_corners=False``)."""
    return place_maps(cam, size, geometry)


class GradientCAM(AttributionMethod):
    """A CAM from ``A`` and ``g`` at one layer; subclasses define :meth:`_combine`."""

    zero_reason = "no location has positive gradient-weighted activation, map is relu'd away"

    def _combine(self, a: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def _chunk(self, xb: torch.Tensor, sl: slice, state: CallState) -> dict[str, ChunkMaps]:
        with affine_batchnorm_grads(self.model):  # the batch norms above the layer: their cheap backward
            out, a = self._forward(xb, state, capture=True, grad=True)
        scored = self._scored(self._outputs(out, state, len(xb)), state, sl)
        torch.set_grad_enabled(True)
        ad = a.detach()
        res = {}
        for h, g in self._head_grads(scored, a, f"layer {self.layer_name!r}"):
            cam, weights = self._combine(ad, g)
            cam = cam.clamp_min(0)
            zero_grad = torch.zeros(len(cam), dtype=torch.bool, device=cam.device)
            dead = torch.nonzero(cam.flatten(1).amax(1) <= 0).flatten()
            if len(dead):  # only an all-zero map needs to know whether the gradient vanished
                zero_grad[dead] = (g[dead] == 0).flatten(1).all(1)
            res[h] = scored[h].record(self._upsample(cam, xb), layer_maps=cam, weights=weights,
                                      zero_grad=zero_grad)
        return res
