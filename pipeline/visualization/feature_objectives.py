"""What feature visualization maximizes (``filters.objective=``), and its penalties.

- ``channel``: the mean of channel t of the layer's output over all positions;
- ``neuron``: channel t at the centre position only (for a 2-D output, unit t);
- ``class``: a head's logit for class t (a binary head with one logit: +logit for class 1,
  -logit for class 0).

Penalties (weights ``l1``, ``lhalf``, ``tv``, ``blur``, all >= 0): mean |x| (L1: the datasets' background
is black); mean sqrt(|x| + 0.01) (L½: concave, so a few bright pixels cost less than many dim ones of
the same total -- the data is one bright thin line on black); ``centre`` >= 0 weighs the L1 and L½ cost
of a pixel at distance r from the centre by 1 + centre (r / half-side)^2 (the picture is drawn at the
centre instead of tiling the image); mean absolute difference of neighbouring pixels (total variation), mean squared difference
between the image and its blurred copy. The optimization subtracts them times the picture's own
|objective| (held constant in the gradient), so one weight means the same for a channel mean of
about 1 and a logit of about 1000: at ``l1=1`` lowering mean |x| by 1 % is worth 1 % of the objective. ``diversity``
(with ``copies`` > 1 images per target; relative like the penalties) subtracts the mean pairwise cosine
similarity of the copies' Gram matrices of the layer's output (Lucid's diversity: what the layer sees,
not the pixels), pushing the copies of one target apart.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["OBJECTIVES", "objective_values", "penalties", "centre_weights", "diversity_term", "gaussian_blur"]

OBJECTIVES = ("channel", "neuron", "class")
LHALF_EPS = 0.01  # sqrt(|x| + eps): a finite slope at 0


def objective_values(out: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """``[n]``: the objective of image i for target ``targets[i]`` on the layer output ``out``."""
    rows = torch.arange(len(targets), device=out.device)
    if kind == "class":
        if out.dim() != 2:
            raise ValueError(f"a class objective needs a head's [N, K] output, got shape {tuple(out.shape)}")
        if out.shape[1] == 1:  # binary head: one logit for class 1
            sign = targets.to(out.dtype) * 2 - 1
            return out[:, 0] * sign
        return out[rows, targets]
    sel = out[rows, targets]
    if kind == "neuron" and sel.dim() == 3:  # [n, H, W]: the centre position
        h, w = sel.shape[-2:]
        return sel[:, h // 2, w // 2]
    return sel.flatten(1).mean(1) if sel.dim() > 1 else sel


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


def centre_weights(h: int, w: int, centre: float, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """``[h, w]``: 1 + centre * (r / half-side)^2, r the distance of a pixel from the image centre."""
    y = torch.arange(h, dtype=dtype, device=device) - (h - 1) / 2
    x = torch.arange(w, dtype=dtype, device=device) - (w - 1) / 2
    return 1 + centre * (y[:, None] ** 2 / (h / 2) ** 2 + x[None, :] ** 2 / (w / 2) ** 2)


def penalties(x: torch.Tensor, *, l1: float = 0.0, lhalf: float = 0.0, centre: float = 0.0, tv: float = 0.0,
              blur: float = 0.0) -> torch.Tensor:
    """``[n]``: the weighted image penalties (0 where every weight is 0). ``centre`` weighs each pixel's
    L1 / L½ cost by :func:`centre_weights` (pixels far from the centre cost more)."""
    total = x.new_zeros(len(x))
    wmap = centre_weights(*x.shape[-2:], centre, dtype=x.dtype, device=x.device) if centre else 1.0
    if l1:
        total = total + l1 * (x.abs() * wmap).flatten(1).mean(1)
    if lhalf:
        total = total + lhalf * ((x.abs() + LHALF_EPS).sqrt() * wmap).flatten(1).mean(1)
    if tv:
        dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
        dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
        total = total + tv * (dx + dy)
    if blur:
        total = total + blur * (x - gaussian_blur(x, 1.0).detach()).pow(2).flatten(1).mean(1)
    return total


def diversity_term(acts: torch.Tensor, copies: int) -> torch.Tensor:
    """``[n]``: per image, the mean cosine similarity of its Gram matrix to those of the other copies of
    its target (rows grouped target-major: copies of target 0 first). ``acts`` is the layer's output
    [n, C, H, W] (Gram: channel x channel over positions, the "style" Lucid compares) or [n, K] (a head:
    the outer product of its logits). 0 for ``copies`` == 1."""
    if copies <= 1:
        return acts.new_zeros(len(acts))
    a = acts.flatten(2) if acts.dim() > 2 else acts.unsqueeze(-1)  # [n, C, positions]
    gram = (a @ a.transpose(1, 2)).flatten(1) / a.shape[-1]
    v = F.normalize(gram, dim=1).view(-1, copies, gram.shape[1])
    sim = v @ v.transpose(1, 2)  # [T, copies, copies]
    off = (sim.sum(2) - sim.diagonal(dim1=1, dim2=2)) / (copies - 1)
    return off.reshape(-1)
