"""Score-CAM (Wang et al., 2020): no gradients; each channel ``A_c`` of the layer is upsampled
(bilinear, each cell at its receptive field's centre as the map itself) to the input size and min-max normalized to ``[0, 1]``; the input is multiplied by it
and the weight ``w_c`` is the target's probability (softmax, or sigmoid for a binary head) on
that masked input (minus the probability on an all-zero input with ``subtract_baseline=True``,
the paper's ``f(X_b)``). A constant channel cannot be normalized and gets ``w_c = 0`` (as in the
authors' code). Map ``relu(sum_c w_c A_c)``.

The masked inputs of all images of a chunk run in batches of ``mask_batch_size`` rows (default
``batch_size``); one forward of a masked batch serves every head, and gets the same fast paths
as the first forward (channels_last below the layer, unrequested heads skipped).
"""
from __future__ import annotations

import torch

from pipeline.attribution.base import AttributionMethod

__all__ = ["ScoreCAM"]


class ScoreCAM(AttributionMethod):
    """Score-CAM at one layer; ``weights`` holds the channel weights."""

    method_name = "scorecam"
    zero_reason = "the score-weighted activations are nowhere positive"

    def __init__(self, model, target_layer, heads=None, batch_size: int = 256,
                 subtract_baseline: bool = False, mask_batch_size: int | None = None, **fast_paths):
        super().__init__(model, target_layer, heads=heads, batch_size=batch_size, **fast_paths)
        self.subtract_baseline = bool(subtract_baseline)
        mb = self.batch_size if mask_batch_size is None else int(mask_batch_size)
        if mb < 1:
            raise ValueError(f"mask_batch_size must be >= 1, got {mask_batch_size}")
        self.mask_batch_size = mb

    def _chunk(self, xb, sl, state):
        out, a = self._forward(xb, state, capture=True)
        scored = self._scored(self._outputs(out, state, len(xb)), state, sl)
        n, c = a.shape[:2]
        up = self._upsample(a.flatten(0, 1), xb, clamp=False).view(n, c, *state.size)
        flat = up.flatten(2)
        mn, mx = flat.amin(2), flat.amax(2)
        valid = mx > mn  # a constant channel cannot be normalized: weight 0
        rng = torch.where(valid, mx - mn, torch.ones_like(mx))
        masks = (up - mn[..., None, None]) / rng[..., None, None]
        pairs = torch.nonzero(valid)
        weights = {h: torch.zeros(n, c, device=a.device) for h in scored}
        with torch.inference_mode():
            for j in range(0, len(pairs), self.mask_batch_size):
                ii, kk = pairs[j:j + self.mask_batch_size].unbind(1)
                masked = xb[ii] * masks[ii, kk].unsqueeze(1)
                outputs = self._outputs(self._forward(masked, state)[0], state, len(ii))
                for h, s in scored.items():
                    weights[h][ii, kk] = s.target[ii].probability(outputs[h]).to(a.dtype)
            if self.subtract_baseline:
                base = self._outputs(self._forward(torch.zeros_like(xb), state)[0], state, n)
                for h, s in scored.items():
                    pb = s.target.probability(base[h]).to(a.dtype)
                    weights[h] = torch.where(valid, weights[h] - pb[:, None], torch.zeros_like(weights[h]))
        res = {}
        for h, s in scored.items():
            cam = torch.einsum("nc,nchw->nhw", weights[h], a).clamp_min(0)
            res[h] = s.record(self._upsample(cam, xb), layer_maps=cam, weights=weights[h])
        return res
