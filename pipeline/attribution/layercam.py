"""Layer-CAM (Jiang et al., 2021): ``relu(sum_c relu(g_c) * A_c)`` per location."""
from __future__ import annotations

from pipeline.attribution.gradient_cam import GradientCAM

__all__ = ["LayerCAM"]


class LayerCAM(GradientCAM):
    """Layer-CAM at one layer (``weights`` is None: the gradient weighs each location)."""

    method_name = "layercam"

    def _combine(self, a, g):
        return (g.clamp_min(0) * a).sum(1), None
