"""The gradient-ascent loop of the filter patterns (:class:`~pipeline.visualization.filters.FilterVisualizer`)
and its regularizers: jitter (a seeded roll per step), decay towards grey, Gaussian blur,
clipping to the input range; steps normalized by the gradient's RMS per image."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["gaussian_blur", "filter_objective", "gradient_ascent"]

_EPS = 1e-8


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[N, C, H, W]`` images (replicate padding, radius 3 sigma)."""
    if sigma <= 0:
        return x
    radius = max(1, int(math.ceil(3.0 * sigma)))
    coords = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (coords / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def filter_objective(act: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
    """Mean activation of channel ``filt[i]`` on image ``i`` -> ``[F]``."""
    rows = torch.arange(len(filt), device=act.device)
    sel = act[rows, filt]
    return sel.flatten(1).mean(1) if sel.dim() > 1 else sel


def gradient_ascent(to_layer: Callable[[torch.Tensor], torch.Tensor], filt: torch.Tensor, start: torch.Tensor,
                    shifts: torch.Tensor, *, step_size: float, decay: float, blur_every: int, blur_sigma: float,
                    value_range: tuple[float, float], channels_last: bool, bar=None):
    """Image ``i`` of ``start`` raised towards filter ``filt[i]``: one step per row of ``shifts``
    (the jitter of that step). ``to_layer`` runs the model up to the layer. Returns the patterns,
    final scores, start scores and the per-step history (on the CPU), and whether the
    channels_last layout worked (the model's code may reject it; the call then goes on without)."""
    lo, hi = value_range
    mid = (lo + hi) / 2.0
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = start
    history = []
    with torch.no_grad():
        try:
            start_scores = filter_objective(to_layer(x.contiguous(memory_format=fmt)), filt)
        except RuntimeError:
            if fmt is torch.contiguous_format:
                raise
            fmt = torch.contiguous_format
            start_scores = filter_objective(to_layer(x), filt)
    for s, (dy, dx) in enumerate(shifts.tolist()):
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            inp = torch.roll(leaf, shifts=(dy, dx), dims=(2, 3)) if (dy or dx) else leaf
            obj = filter_objective(to_layer(inp.contiguous(memory_format=fmt)), filt)
            g, = torch.autograd.grad(obj.sum(), leaf)
        with torch.no_grad():
            history.append(obj.detach())
            rms = g.pow(2).flatten(1).mean(1).sqrt().view(-1, 1, 1, 1)
            x = x + step_size * (g / (rms + _EPS))
            if decay:
                x = mid + (1.0 - decay) * (x - mid)
            if blur_every and (s + 1) % blur_every == 0:
                x = gaussian_blur(x, blur_sigma)
            x = x.clamp_(lo, hi)
        if bar is not None:
            bar.update(1)
    with torch.no_grad():
        scores = filter_objective(to_layer(x.contiguous(memory_format=fmt)), filt)
    hist = torch.stack(history) if history else torch.empty((0, len(filt)), device=x.device)
    return (x.detach().float().cpu(), scores.float().cpu(), start_scores.float().cpu(), hist.float().cpu(),
            fmt is torch.channels_last or not channels_last)
