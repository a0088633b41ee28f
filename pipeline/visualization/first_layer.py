"""The first convolution's unit pictures in closed form: grey plus the kernel itself.

A convolution that reads the input image is affine in the pixels: its centre unit is ``b + sum(w * x)``
over its receptive field. Under a norm bound ``||x - grey||_2 <= r`` the best input is therefore
``grey + r * w / ||w||`` -- the kernel itself -- and the largest ``r`` whose optimum stays in [0, 1] gives
``x = grey + 0.5 * w / max|w|`` on the receptive field (grey elsewhere). :func:`kernel_pictures` computes
exactly that, for every unit in one batch, from the centre unit's input gradient (which for an affine unit
*is* the kernel, placed by the layer's own stride, padding and dilation), and scores it with the neuron
objective (the centre unit's activation).

Gradient ascent on the mean of such a channel (objective ``channel``) has nothing to find: every pixel
that all positions see gets the same gradient, ``sum(w) / positions``, so the ascent only saturates the
picture to a white or black field with a frame. :func:`reads_the_input` tells when a layer is such a
first convolution.
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.visualization.feature_objectives import objective_values
from pipeline.visualization.feature_vis import FeatureResult, FeatureVisualizer, eval_mode

__all__ = ["GREY", "kernel_pictures", "reads_the_input"]

GREY = 0.5  # the blank grey image every ascent starts from


def reads_the_input(model: nn.Module, layer: str, input_shape) -> bool:
    """True when ``layer`` is a ``nn.Conv2d`` whose input is the model's input tensor itself (nothing before it)."""
    module = dict(model.named_modules()).get(layer)
    if not isinstance(module, nn.Conv2d):
        return False
    seen = []
    hook = module.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
    p = next(model.parameters())
    x = torch.zeros((1,) + tuple(int(v) for v in input_shape), device=p.device, dtype=p.dtype)
    try:
        with eval_mode(model), torch.inference_mode(False), torch.no_grad():
            model(x)
    finally:
        hook.remove()
    return len(seen) == 1 and seen[0] is x


def kernel_pictures(model: nn.Module, layer: str, input_shape, targets=None, channels=None) -> FeatureResult:
    """For each unit (channel) of the first convolution ``layer``: grey + 0.5 x its centre unit's input gradient
    / the gradient's max |.| (the kernel on the unit's receptive field), scored by the neuron objective.

    ``channels``: only these input channels (the others 0, the gradient kept to them). ``start_scores``: the
    centre unit on the blank grey image. ``settings``: ``param="kernel"``, no transforms, no steps, the channels,
    and ``window``: the rows and columns ``[r0, r1, c0, c1)`` that hold every unit's receptive field."""
    vis = FeatureVisualizer(model, layer, input_shape)
    if not reads_the_input(model, vis.layer_name, input_shape):
        raise ValueError(f"{vis.layer_name!r} is not a convolution applied to the input itself: its best input "
                         f"has no closed form")
    p = next(model.parameters())
    with torch.inference_mode(False):
        t = vis.check("neuron", targets)
        c = int(input_shape[0])
        mask = torch.ones((1, c, 1, 1), device=p.device, dtype=p.dtype)
        if channels is not None:
            mask.zero_()
            mask[:, [int(i) for i in channels]] = 1
        grey = (torch.full((len(t),) + tuple(int(v) for v in input_shape), GREY, device=p.device, dtype=p.dtype)
                * mask).requires_grad_(True)
        hook = vis._hook()
        try:
            with eval_mode(model):
                with torch.enable_grad():
                    start = objective_values(vis._to_layer(grey), t.to(p.device), "neuron")
                    g, = torch.autograd.grad(start.sum(), grey)
                g = g * mask
                peak = g.flatten(1).abs().amax(1).clamp_min(1e-30).view(-1, 1, 1, 1)
                pictures = (grey.detach() + 0.5 * g / peak).clamp(0, 1)
                with torch.no_grad():
                    scores = objective_values(vis._to_layer(pictures), t.to(p.device), "neuron")
        finally:
            hook.remove()
    lit = (g != 0).flatten(0, 1).any(0)  # [H, W]: pixels some unit's centre sees
    rows, cols = lit.any(1).nonzero().flatten(), lit.any(0).nonzero().flatten()
    window = [int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1] if len(rows) else \
        [0, int(input_shape[1]), 0, int(input_shape[2])]
    s = {"objective": "neuron", "param": "kernel", "transforms": [], "steps": 0, "grey": GREY,
         "channels": None if channels is None else sorted(int(i) for i in channels), "window": window}
    scores, start = scores.detach().float().cpu(), start.detach().float().cpu()
    return FeatureResult(layer=vis.layer_name, objective="neuron", targets=t.cpu(),
                         patterns=pictures.detach().float().cpu(), scores=scores, start_scores=start, ranking=torch.argsort(scores, descending=True, stable=True),
                         settings=s)
