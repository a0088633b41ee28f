"""HiResCAM (Draelos & Carin, 2020): ``relu(sum_c g_c * A_c)`` per location (Grad-CAM without
the spatial averaging of the gradient)."""
from __future__ import annotations

from pipeline.attribution.gradient_cam import GradientCAM

__all__ = ["HiResCAM"]


class HiResCAM(GradientCAM):
    """HiResCAM at one layer (``weights`` is None)."""

    method_name = "hirescam"

    def _combine(self, a, g):
        return (g * a).sum(1), None
