"""Saliency (Simonyan et al., 2014): ``attributions = |dScore/dx|`` (as Captum's
``Saliency(abs=True)``; ``abs=False`` keeps the sign), ``maps = max_c |attributions|``."""
from __future__ import annotations

from pipeline.attribution.input_gradient import InputGradient

__all__ = ["Saliency"]


class Saliency(InputGradient):
    """The gradient of the target score w.r.t. the input pixels."""

    method_name = "saliency"
    zero_reason = "the gradient of the target score w.r.t. the input is zero everywhere"

    def __init__(self, model, target_layer=None, heads=None, batch_size: int = 256, abs: bool = True, **fast_paths):
        super().__init__(model, target_layer, heads=heads, batch_size=batch_size, **fast_paths)
        self.abs = bool(abs)

    def _chunk(self, xb, sl, state):
        leaf = xb.detach().clone().requires_grad_(True)
        scored = self._scored(self._input_forward(leaf, state), state, sl)
        res = {}
        for h, g in self._head_grads(scored, leaf, "the input"):
            attr = g.abs() if self.abs else g
            res[h] = scored[h].record(attr.abs().amax(1), attributions=attr, zero_grad=(g == 0).flatten(1).all(1))
        return res
