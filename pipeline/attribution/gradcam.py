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

__all__ = ["GradCAM"]


class GradCAM(GradientCAM):
    """Grad-CAM at one layer; ``weights`` holds ``w`` ``[N, C]``."""

    method_name = "gradcam"
    closed_form_keeps_layout = True  # its weights are means: another layout's rounding stays ~1e-7
    zero_reason = "all gradients non-positive where the layer is active (the evidence argues against the target)"

    def _combine(self, a, g):
        weights = g.mean(dim=(2, 3))
        return torch.einsum("nc,nchw->nhw", weights, a), weights

    def _combine_pooled(self, a, g):
        weights = g.mean_hw()  # no full-size gradient needed
        return torch.einsum("nc,nchw->nhw", weights, a), weights
