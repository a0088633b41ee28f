"""SmoothGrad (Smilkov et al., 2017): the mean of the saliency over ``n_samples`` noisy copies
``x + N(0, sigma^2)``, ``sigma = stdev_spread * (max(x) - min(x))`` per image (as Captum's
``NoiseTunnel(Saliency(abs=True), nt_type="smoothgrad")`` with that stdev). The noise comes from
a ``torch.Generator`` seeded with ``seed`` at every call, drawn image by image as
``randn([n_samples, C, H, W]) * sigma``, so a result does not depend on ``batch_size``;
``maps = max_c attributions``. Chunks of up to ``batch_size`` images and 8192 noisy rows, the rows run
``batch_size`` at a time.
"""
from __future__ import annotations

import torch

from pipeline.attribution.input_gradient import InputGradient

__all__ = ["SmoothGrad"]


class SmoothGrad(InputGradient):
    """Mean saliency over ``n_samples`` noisy copies (``stdev_spread`` of each image's range)."""

    method_name = "smoothgrad"
    zero_reason = "the gradient of the target score is zero at every noisy copy"

    def __init__(self, model, target_layer=None, heads=None, batch_size: int = 256, n_samples: int = 25,
                 stdev_spread: float = 0.15, seed: int = 0, abs: bool = True, **fast_paths):
        super().__init__(model, target_layer, heads=heads, batch_size=batch_size, **fast_paths)
        if int(n_samples) < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        if float(stdev_spread) < 0:
            raise ValueError(f"stdev_spread must be >= 0, got {stdev_spread}")
        self.n_samples = int(n_samples)
        self.stdev_spread = float(stdev_spread)
        self.seed = int(seed)
        self.abs = bool(abs)

    def _images_per_chunk(self) -> int:
        return self._images_for_rows(self.n_samples)

    def prepare(self, x, state) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def noise(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``[N, n_samples, C, H, W]`` noise for images ``x``, drawn image by image."""
        s = self.n_samples
        sig = self.stdev_spread * (x.flatten(1).amax(1) - x.flatten(1).amin(1)).cpu()
        return torch.stack([torch.randn((s,) + tuple(x.shape[1:]), generator=generator) * sig[i]
                            for i in range(len(x))]).to(device=x.device, dtype=x.dtype)

    def _chunk(self, xb, sl, state):
        scored = self._clean(xb, sl, state)
        s = self.n_samples
        rows = (xb.unsqueeze(1) + self.noise(xb, state.prepared)).flatten(0, 1)
        row_w = torch.ones(len(rows), device=xb.device, dtype=xb.dtype)
        acc = self._integrate(rows, s, row_w, scored, state, torch.abs if self.abs else None)
        res = {}
        for h, sc in scored.items():
            attr = acc[h] / s
            res[h] = sc.record(attr.abs().amax(1), attributions=attr, zero_grad=(attr == 0).flatten(1).all(1))
        return res
