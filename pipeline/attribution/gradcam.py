"""Grad-CAM (Selvaraju et al., 2017): channel weights ``w_c = mean_hw(dScore/dA_c)``, map
``relu(sum_c w_c A_c)``, upsampled bilinearly to the input.

``GradCAM(model, "features.conv3")(x, targets)`` -> an :class:`~pipeline.attribution.result.AttributionResult`
(``{head: result}`` for a model returning a dict of logits; every head from one forward pass).
Everything but the weights comes from :class:`~pipeline.attribution.gradient_cam.GradientCAM`
and :class:`~pipeline.attribution.base.AttributionMethod`: batching, targets, heads, hooks, the
channels_last and skip-unused-heads fast paths. The score is the target's logit (pre-softmax,
as Captum and pytorch-grad-cam), ``+logit``/``-logit`` for class 1/0 of a 1-unit head.
"""
from __future__ import annotations

import torch

from pipeline.attribution.gradient_cam import GradientCAM
from pipeline.attribution.pooled_backward import PooledGrad

__all__ = ["GradCAM"]


class GradCAM(GradientCAM):
    """Grad-CAM at one layer; ``weights`` holds ``w`` ``[N, C]``."""

    method_name = "gradcam"
    closed_form_keeps_layout = True  # its weights are means: another layout's rounding stays ~1e-7
    zero_reason = "all gradients non-positive where the layer is active (the evidence argues against the target)"

    def _combine(self, a, g):
        weights = g.mean(dim=(2, 3))
        return torch.einsum("nc,nchw->nhw", weights, a), weights

    def _combine_heads(self, a, grads):
        # the hand-written gradients come for every head or for none (PooledChain.grads)
        if not all(isinstance(g, PooledGrad) for g in grads.values()):
            return super()._combine_heads(a, grads)
        weights = {h: g.mean_hw() for h, g in grads.items()}   # no full-size gradient needed
        w = torch.stack(list(weights.values()), 1)               # [n, H, C]
        n, c, h, wd = a.shape
        if a.is_contiguous(memory_format=torch.channels_last) and not a.is_contiguous():
            # A as it lies in memory, [n, hw, C]: one batched product, no copy of A
            cams = torch.bmm(a.permute(0, 2, 3, 1).reshape(n, h * wd, c), w.transpose(1, 2))   # [n, hw, H]
            return cams.permute(2, 0, 1).reshape(len(weights), n, h, wd), weights
        return torch.einsum("nkc,nchw->knhw", w, a), weights      # every head's map from one read of A
