"""Image parametrizations for feature visualization (``filters.param=pixel|fft``).

``pixel``: the parameters are the image itself, kept in [0, 1] by clipping after each step
(plain pixel-space ascent).

``fft`` (Olah et al. 2017, "Feature Visualization"; Lucid/Lucent): the parameters are a real
and an imaginary part per spatial frequency of each colour channel, scaled by 1/frequency
(so that every frequency gets about the same gradient step: natural images have a 1/f
spectrum), turned into an image by an inverse real FFT; for RGB the three channels are then
mixed by the square root of natural images' colour correlation (decorrelated colour), and a
sigmoid maps the result into (0, 1). :func:`fft_params_from_image` is the exact inverse, used
for tests and to start from a given image.
"""
from __future__ import annotations

import math

import torch

__all__ = ["PARAMS", "fft_scale", "fft_to_image", "fft_params_from_image", "Parametrization"]

PARAMS = ("pixel", "fft")

# square root of the colour correlation of natural images (Lucid), columns normalized to a max norm of 1
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float64)
_COLOR = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()
_EPS = 1e-6


def fft_scale(h: int, w: int, decay: float = 1.0) -> torch.Tensor:
    """Per-frequency scale ``[h, w//2+1]``: 1 / max(|f|, 1/max(h, w)) ** decay, times sqrt(h*w)."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    freqs = (fx ** 2 + fy ** 2).sqrt()
    return (1.0 / freqs.clamp_min(1.0 / max(h, w)) ** decay) * math.sqrt(h * w)


def _mix(x: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Decorrelated colour -> RGB (or back) for 3-channel ``[N, 3, H, W]``; other channel counts unchanged."""
    if x.shape[1] != 3:
        return x
    m = _COLOR.to(dtype=x.dtype, device=x.device)
    m = torch.linalg.inv(m) if inverse else m
    return torch.einsum("ij,njhw->nihw", m, x)


def fft_to_image(params: torch.Tensor, h: int, w: int, decay: float = 1.0) -> torch.Tensor:
    """``params`` [N, C, h, w//2+1, 2] -> image [N, C, h, w] in (0, 1)."""
    scale = fft_scale(h, w, decay).to(dtype=params.dtype, device=params.device)
    spectrum = torch.complex(params[..., 0], params[..., 1]) * scale
    x = torch.fft.irfft2(spectrum, s=(h, w), norm="ortho") / 4.0
    return torch.sigmoid(_mix(x))


def fft_params_from_image(image: torch.Tensor, decay: float = 1.0) -> torch.Tensor:
    """Inverse of :func:`fft_to_image` for an image [N, C, H, W] in (0, 1) (clamped to [eps, 1-eps])."""
    h, w = image.shape[-2:]
    x = torch.logit(image.clamp(_EPS, 1 - _EPS))
    x = _mix(x, inverse=True) * 4.0
    spectrum = torch.fft.rfft2(x, norm="ortho") / fft_scale(h, w, decay).to(dtype=image.dtype, device=image.device)
    return torch.stack([spectrum.real, spectrum.imag], dim=-1)


class Parametrization:
    """The parameters of a batch of ``n`` images ``(C, H, W)`` and the map to images in [0, 1].

    ``params`` is the leaf tensor to optimize; ``image()`` the images (differentiable; with ``channels``
    only those colour channels are used, the others stay 0 -- the data's colour space);
    ``project()`` keeps pixel parameters in range after an optimizer step. The start is seeded:
    mid-grey plus noise of std ``noise`` (pixel), or a spectrum of std ``noise`` (fft).
    """

    def __init__(self, kind: str, n: int, shape: tuple[int, int, int], *, seed: int = 0, noise: float = 0.01,
                 decay: float = 1.0, channels=None, device=None, dtype=torch.float32):
        if kind not in PARAMS:
            raise ValueError(f"unknown parametrization {kind!r}: use one of {', '.join(PARAMS)}")
        self.kind, self.shape, self.decay = kind, tuple(shape), float(decay)
        c, h, w = self.shape
        g = torch.Generator().manual_seed(int(seed))
        if kind == "pixel":
            start = (0.5 + noise * torch.randn((n, c, h, w), generator=g, dtype=torch.float64)).clamp(0, 1)
        else:
            start = noise * torch.randn((n, c, h, w // 2 + 1, 2), generator=g, dtype=torch.float64)
        self.params = start.to(device=device, dtype=dtype).requires_grad_(True)
        self.mask = None
        if channels is not None:
            self.mask = torch.zeros((1, c, 1, 1), device=device, dtype=dtype)
            self.mask[:, list(channels)] = 1

    def image(self, params: torch.Tensor | None = None) -> torch.Tensor:
        p = self.params if params is None else params
        img = p if self.kind == "pixel" else fft_to_image(p, self.shape[1], self.shape[2], self.decay)
        return img if self.mask is None else img * self.mask

    @torch.no_grad()
    def project(self, params: torch.Tensor | None = None) -> None:
        if self.kind == "pixel":
            (self.params if params is None else params).clamp_(0.0, 1.0)
