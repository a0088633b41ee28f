"""A toy attribution method, added the way the README's "How to add a method" says: this one
class, plus its config file conf/methods/positive_gradcam.yaml. Nothing in pipeline/ names it.

Grad-CAM with the negative gradients dropped before the spatial mean: ``w_c = mean_hw(relu(g_c))``.
It inherits everything else -- batching, targets, heads, hooks, the fast paths -- from
:class:`~pipeline.attribution.gradient_cam.GradientCAM`.
"""
from __future__ import annotations

import torch

from pipeline.attribution.gradient_cam import GradientCAM


class PositiveGradCAM(GradientCAM):
    method_name = "positive_gradcam"

    def _combine(self, a, g):
        weights = g.clamp_min(0).mean(dim=(2, 3))
        return torch.einsum("nc,nchw->nhw", weights, a), weights
