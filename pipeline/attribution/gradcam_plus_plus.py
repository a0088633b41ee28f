"""Grad-CAM++ (Chattopadhyay et al., 2018), closed form under the exp(score) assumption as in
pytorch-grad-cam: ``alpha = g^2 / (2 g^2 + sum_hw(A) g^3)`` (0 where ``g = 0``; computed as the
equal ``1 / (2 + sum_hw(A) g)``, which does not underflow), ``w_c = sum_hw(alpha * relu(g))``,
map ``relu(sum_c w_c A_c)``. No epsilon is added to the denominator (pytorch-grad-cam adds
1e-6, which matters when gradients are small); where ``2 + sum_hw(A) g = 0`` (a pole of the
closed form) alpha is set to 0, as where ``g = 0``.
"""
from __future__ import annotations

import torch

from pipeline.attribution.gradient_cam import GradientCAM

__all__ = ["GradCAMPlusPlus"]


class GradCAMPlusPlus(GradientCAM):
    """Grad-CAM++ at one layer; ``weights`` holds ``w``."""

    method_name = "gradcam++"

    def _combine(self, a, g):
        s = a.sum(dim=(2, 3), keepdim=True)
        den = 2.0 + s * g  # g^2 (2 + S g) / g^2
        ok = (g != 0) & (den != 0)
        alpha = torch.where(ok, 1.0 / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(den))
        weights = (alpha * g.clamp_min(0)).sum(dim=(2, 3))
        return torch.einsum("nc,nchw->nhw", weights, a), weights
