"""Faithfulness: does removing (inserting) what the map ranks first change the score fast?

Deletion / insertion curves (Petsiuk et al., 2018, RISE), batched and model-agnostic.

Pixels are ranked by decreasing map value (ties broken by a stable sort: earlier pixels in
row-major order first), or by a seeded random permutation per image (``order="random"``,
the baseline a map has to beat). At step ``s`` of ``steps`` the first
``floor(s * H * W / steps)`` pixels of that order are

* ``mode="deletion"``: set to the baseline in every channel, starting from the image, or
* ``mode="insertion"``: copied from the image, starting from the baseline image,

and the score is recorded: ``curve[:, 0]`` is the intact image (deletion) / the baseline
image (insertion), ``curve[:, steps]`` the other end. AUC is the trapezoid rule over the
fraction of pixels changed (``x = count / (H * W)`` in ``[0, 1]``). A faithful map has a
LOW deletion AUC and a HIGH insertion AUC, compared with the random order.

The scorer is called as ``score_fn(x_batch, index) -> [B]``: ``x_batch`` is ``[B, C, H, W]``
and ``index`` the ``[B]`` long tensor of the images' positions in ``x`` (batches mix images
and steps, so the scorer needs it to look up each image's target; see
:func:`class_probability_fn`). All ``N * (steps + 1)`` perturbed images are scored in
batches of ``batch_size``, under ``torch.inference_mode()``. The two ends of every curve are the
image itself and the baseline image, whatever the order: a caller scoring several maps of the
same images can score those once (:func:`end_scores`) and pass them as ``ends``, and only the
``N * (steps - 1)`` images in between are run.
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ["deletion_insertion", "pixel_order", "class_probability_fn", "end_scores"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def pixel_order(maps: torch.Tensor, order: str = "map", seed: int = 0) -> torch.Tensor:
    """Long ``[N, H*W]``: the flat pixel indices of each image, most important first.

    ``order="map"``: decreasing map value, stable for ties. ``order="random"``: an
    independent random permutation per image, reproducible for ``seed`` (CPU generator;
    the global RNG is not touched).
    """
    flat = maps.flatten(1)
    if order == "map":
        return torch.sort(flat, dim=1, descending=True, stable=True).indices
    if order == "random":
        gen = torch.Generator().manual_seed(int(seed))
        keys = torch.rand(flat.shape, generator=gen, dtype=torch.float64)
        return torch.sort(keys, dim=1, stable=True).indices.to(flat.device)
    raise ValueError(f"order must be 'map' or 'random', got {order!r}")


def deletion_insertion(score_fn: ScoreFn, x: torch.Tensor, maps: torch.Tensor, steps: int = 28,
                       baseline: float | torch.Tensor = 0.0, mode: str = "deletion",
                       order: str = "map", seed: int = 0, batch_size: int = 256,
                       ends: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Deletion or insertion curves ``[N, steps + 1]`` and their AUCs ``[N]``.

    ``x``: ``[N, C, H, W]`` images; ``maps``: ``[N, H, W]`` at the same resolution;
    ``baseline``: a number or a tensor broadcastable to ``x`` (e.g. ``[C, 1, 1]`` channel
    means, or ``[N, C, H, W]`` blurred images); ``ends``: the scores ``[N]`` of the images and
    of the baseline images, as :func:`end_scores` gives them for the same ``score_fn``, ``x``
    and ``baseline`` (not recomputed then). See the module docstring.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {tuple(x.shape)}")
    maps = torch.as_tensor(maps)
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    n, c, h, w = x.shape
    if tuple(maps.shape) != (n, h, w):
        raise ValueError(f"maps must be [N, H, W] = {(n, h, w)}, got {tuple(maps.shape)}")
    base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand(n, c, h, w)

    p = h * w
    rank = torch.empty(n, p, dtype=torch.long, device=x.device)
    order_idx = pixel_order(maps.to(x.device), order, seed)
    rank.scatter_(1, order_idx, torch.arange(p, device=x.device).expand(n, p))
    counts = (torch.arange(steps + 1, device=x.device) * p) // steps  # pixels changed per step

    curves = torch.empty(n, steps + 1, dtype=torch.float64, device=x.device)
    first = 0  # the steps run: all, or those between the ends
    if ends is not None:
        intact, blank = (torch.as_tensor(e).detach().to(device=x.device, dtype=torch.float64).reshape(-1) for e in ends)
        if len(intact) != n or len(blank) != n:
            raise ValueError(f"ends must be two [N] = [{n}] score tensors")
        curves[:, 0], curves[:, steps] = (intact, blank) if mode == "deletion" else (blank, intact)
        first = 1
    per = steps + 1 - 2 * first
    total = n * per
    scores = curves[:, first:first + per]
    with torch.inference_mode():
        for start in range(0, total, batch_size):
            j = torch.arange(start, min(start + batch_size, total), device=x.device)
            img, step = j // per, j % per + first
            out = _score(score_fn, _perturbed(x, base, rank, counts, img, step, mode), img)
            scores[img, step - first] = out.to(device=x.device, dtype=torch.float64)

    frac = counts.to(torch.float64) / p
    auc = torch.trapezoid(curves, x=frac, dim=1)
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    return curves.to(dtype), auc.to(dtype)


def _perturbed(x, base, rank, counts, img, step, mode: str) -> torch.Tensor:
    h, w = x.shape[-2:]
    changed = (rank[img] < counts[step].unsqueeze(1)).view(-1, 1, h, w)
    return torch.where(changed, base[img], x[img]) if mode == "deletion" else torch.where(changed, x[img], base[img])


def _score(score_fn: ScoreFn, batch: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    out = torch.as_tensor(score_fn(batch, index))
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if tuple(out.shape) != (len(index),):
        raise ValueError(f"score_fn must return [B] = [{len(index)}] scores, got {tuple(out.shape)}")
    return out.detach()


def end_scores(score_fn: ScoreFn, x: torch.Tensor, baseline: float | torch.Tensor = 0.0,
               batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores of the images, scores of the baseline images)``, each float64 ``[N]``: the two
    ends of every deletion and insertion curve of ``x`` (``ends=`` of :func:`deletion_insertion`)."""
    n = len(x)
    base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand(x.shape)
    out = []
    for images in (x, base):
        s = torch.empty(n, dtype=torch.float64, device=x.device)
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                idx = torch.arange(start, min(start + batch_size, n), device=x.device)
                s[start:start + len(idx)] = _score(score_fn, images[idx], idx).to(device=x.device, dtype=torch.float64)
            out.append(s)
    return out[0], out[1]


def class_probability_fn(model: torch.nn.Module, targets: torch.Tensor, head: str | None = None) -> ScoreFn:
    """A ``score_fn`` for :func:`deletion_insertion`: each image's target-class probability.

    Logits ``[B, K]`` -> softmax, then the target's probability; a one-unit (binary) output
    -> ``sigmoid(logit)`` for target 1 and ``1 - sigmoid(logit)`` for target 0. For a
    model returning a dict of logits (the multihead model), ``head`` picks the output.
    The model's train/eval mode is not changed (call ``model.eval()`` first). A float32 batch
    on the CPU goes in as ``channels_last`` (the layout oneDNN is fastest in; the values are
    the same up to float rounding).
    """
    targets = torch.as_tensor(targets).long()

    def score(xb: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if xb.ndim == 4 and xb.device.type == "cpu" and xb.dtype == torch.float32:
            xb = xb.contiguous(memory_format=torch.channels_last)
        out = model(xb)
        if isinstance(out, dict):
            if head is None:
                raise ValueError(f"the model returns several outputs {list(out)}: pass head=")
            out = out[head]
        elif head is not None:
            raise ValueError("head= given but the model returns a single tensor")
        t = targets.to(out.device)[index.to(out.device)]
        if out.ndim == 1 or out.shape[1] == 1:
            prob1 = torch.sigmoid(out.reshape(-1))
            return torch.where(t == 1, prob1, 1 - prob1)
        return torch.softmax(out, dim=1).gather(1, t.view(-1, 1))[:, 0]

    return score
