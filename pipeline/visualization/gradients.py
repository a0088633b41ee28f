"""Input-gradient attributions: Saliency, SmoothGrad, Integrated Gradients, Guided Grad-CAM.

Same call shape and conventions as Grad-CAM and :mod:`pipeline.visualization.cams`
(``Method(model, target_layer, heads=None, batch_size=256, **params)(x, targets=None)`` ->
:class:`~pipeline.visualization.cams.AttributionResult`, or ``{head: result}`` for a dict
model; default target = predicted class; 1-unit head score = ``+logit`` for class 1 and
``-logit`` for class 0). ``target_layer`` must be None for the pure gradient methods and is
required for Guided Grad-CAM. Every result keeps the input-space, per-channel attribution in
``attributions`` ``[N, C, H, W]`` and a channel-reduced map in ``maps`` ``[N, H, W]``
(``layer_maps`` is the same map, except for Guided Grad-CAM where it is Grad-CAM's map at the
layer's resolution):

* :class:`Saliency` (Simonyan et al., 2014): ``attributions = |dScore/dx|`` (as Captum's
  ``Saliency(abs=True)``; ``abs=False`` keeps the sign), ``maps = max_c |attributions|``;
* :class:`SmoothGrad` (Smilkov et al., 2017): the mean of the saliency over ``n_samples``
  noisy copies ``x + N(0, sigma^2)``, ``sigma = stdev_spread * (max(x) - min(x))`` per image
  (as Captum's ``NoiseTunnel(Saliency(abs=True), nt_type="smoothgrad")`` with that stdev).
  The noise comes from a ``torch.Generator`` seeded with ``seed`` at every call, drawn image
  by image as ``randn([n_samples, C, H, W]) * sigma``, so a result does not depend on
  ``batch_size``; ``maps = max_c attributions``;
* :class:`IntegratedGradients` (Sundararajan et al., 2017): ``attributions = (x - x0) *
  sum_k w_k dScore/dx(x0 + a_k (x - x0))`` with Captum's quadrature (``method``:
  ``"gausslegendre"`` (default, as Captum), ``"riemann_trapezoid"``, ``"riemann_left"``,
  ``"riemann_right"``, ``"riemann_middle"``; same nodes and weights as Captum), baseline
  ``x0`` zeros by default. ``attributions`` is per channel and signed (comparable to
  Captum's); ``maps = |sum_c attributions|`` (the signed channel sum is
  ``attributions.sum(1)``); ``extras["delta"]`` is the completeness error
  ``sum(attributions) - (score(x) - score(x0))`` per image;
* :class:`GuidedBackprop` (Springenberg et al., 2015): the gradient with every ``nn.ReLU``'s
  backward clamped to positive gradients (temporary forward hooks on the ``nn.ReLU`` modules
  insert a gate whose backward is ``relu(grad)``; removed after the forward), signed
  ``attributions``, ``maps = max_c |attributions|``;
* :class:`GuidedGradCAM` (Selvaraju et al., 2017), as Captum's ``GuidedGradCam``: guided
  backprop times the project's Grad-CAM upsampled to the input (``interpolate_mode``,
  default ``"bilinear"`` like Grad-CAM; Captum defaults to ``"nearest"``), signed
  ``attributions = guided * cam`` broadcast over the input channels, ``maps = max_c
  |attributions|``. Two passes: Grad-CAM's own, then guided backprop for Grad-CAM's targets.

``batch_size`` is the number of rows of one forward pass: images for Saliency and guided
backprop, noisy copies / integration steps for SmoothGrad and Integrated Gradients (chunks of
``max(1, batch_size // n)`` images, their copies run ``batch_size`` rows at a time). All
heads of a multi-head model share each forward pass (one backward per head).
"""
from __future__ import annotations

import contextlib
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.visualization.cams import AttributionMethod, AttributionResult, target_scores
from pipeline.visualization.gradcam import GradCAM, normalize_maps

__all__ = ["Saliency", "SmoothGrad", "IntegratedGradients", "GuidedBackprop", "GuidedGradCAM",
           "guided_relus", "quadrature"]

IG_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


class _PositiveGrad(torch.autograd.Function):
    """Identity whose backward lets only positive gradients through."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g.clamp_min(0)


@contextlib.contextmanager
def guided_relus(model: nn.Module):
    """Guided-backprop ReLUs for the forwards run inside the block.

    A forward hook on every ``nn.ReLU`` module passes its output through a gate whose backward
    is ``relu(grad)``: the ReLU's backward then gives ``relu(grad_out) * [out > 0]``, which is
    Captum's ``relu(grad_in)``. Works with ``inplace=True`` (the gate returns a new tensor).
    The hooks are removed on exit; graphs built inside keep the gates.
    """
    def hook(module, inputs, out):
        return _PositiveGrad.apply(out)

    handles = []
    try:
        for m in model.modules():
            if isinstance(m, nn.ReLU):
                handles.append(m.register_forward_hook(hook))
        yield len(handles)
    finally:
        for h in handles:
            h.remove()


def quadrature(method: str, n_steps: int) -> tuple[list[float], list[float]]:
    """``(step_sizes, alphas)`` of Captum's integral approximation ``method`` with ``n_steps``."""
    n = int(n_steps)
    if method == "gausslegendre":
        if n < 1:
            raise ValueError(f"n_steps must be >= 1 for gausslegendre, got {n_steps}")
        nodes, w = np.polynomial.legendre.leggauss(n)
        return list(0.5 * w), list(0.5 * (nodes + 1))
    if method not in IG_METHODS:
        raise ValueError(f"unknown integration method {method!r}; valid: {', '.join(IG_METHODS)}")
    if n < 2:
        raise ValueError(f"n_steps must be >= 2 for {method}, got {n_steps}")
    steps = [1.0 / n] * n
    kind = method.split("_")[1]
    if kind == "trapezoid":  # Captum halves the end steps of 1/n (weights sum to (n-1)/n)
        steps[0] /= 2
        steps[-1] /= 2
        alphas = torch.linspace(0, 1, n)
    elif kind == "left":
        alphas = torch.linspace(0, 1 - 1 / n, n)
    elif kind == "middle":
        alphas = torch.linspace(1 / (2 * n), 1 - 1 / (2 * n), n)
    else:
        alphas = torch.linspace(1 / n, 1, n)
    return steps, alphas.tolist()


class Saliency(AttributionMethod):
    """``|dScore/dx|`` (``abs=False``: signed), reduced by ``max_c |.|``."""

    method_name = "saliency"
    needs_layer = False
    guided = False
    zero_reason = "the gradient of the target score w.r.t. the input is zero everywhere"

    def __init__(self, model, target_layer=None, heads=None, batch_size: int = 256, abs: bool = True):
        super().__init__(model, target_layer, heads=heads, batch_size=batch_size)
        self.abs = bool(abs)

    # -- shared by the input-gradient methods ---------------------------------------------
    def _input_forward(self, leaf: torch.Tensor, ctx: dict) -> dict[str, torch.Tensor]:
        gates = guided_relus(self.model) if self.guided else contextlib.nullcontext()
        with gates:
            torch.set_grad_enabled(True)
            out = self.model(leaf)
        return self._outputs(out, ctx, len(leaf))

    def _clean(self, xb, sl, ctx) -> dict[str, dict]:
        """Targets, scores and probabilities on the images themselves (no graph)."""
        torch.set_grad_enabled(False)
        return self._evaluate(self._outputs(self.model(xb), ctx, len(xb)), ctx, sl)

    def _integrate(self, rows, per: int, row_w: torch.Tensor, ev: dict, ctx: dict, transform=None):
        """``{head: sum_r row_w[r] * transform(dScore/drow_r)}`` per image, for ``rows`` holding
        ``per`` consecutive rows per image, run ``batch_size`` rows at a time."""
        n = len(rows) // per
        img = torch.arange(n, device=rows.device).repeat_interleave(per)
        t_rows = {h: e["targets"].repeat_interleave(per) for h, e in ev.items()}
        acc = {h: rows.new_zeros((n,) + tuple(rows.shape[1:])) for h in ev}
        b = self.batch_size
        for j in range(0, len(rows), b):
            leaf = rows[j:j + b].detach().requires_grad_(True)
            outputs = self._input_forward(leaf, ctx)
            scores = {h: {"score": target_scores(outputs[h], t_rows[h][j:j + b])[1]} for h in ev}
            for h, g in self._head_grads(scores, leaf, "the input"):
                if transform is not None:
                    g = transform(g)
                acc[h].index_add_(0, img[j:j + b], g * row_w[j:j + b].view(-1, 1, 1, 1))
        return acc

    @staticmethod
    def _record(e: dict, attributions, maps, zero_grad, extras=None) -> dict:
        return dict(maps=maps, attributions=attributions, zero_grad=zero_grad, targets=e["targets"],
                    scores=e["score"].detach(), probs=e["probs"], binary=e["binary"], extras=extras or {})

    # -- saliency -------------------------------------------------------------------------------
    def _chunk(self, xb, sl, ctx):
        leaf = xb.detach().clone().requires_grad_(True)
        ev = self._evaluate(self._input_forward(leaf, ctx), ctx, sl)
        res = {}
        for h, g in self._head_grads(ev, leaf, "the input"):
            attr = g.abs() if self.abs else g
            res[h] = self._record(ev[h], attr, attr.abs().amax(1), (g == 0).flatten(1).all(1))
        return res


class GuidedBackprop(Saliency):
    """Guided backpropagation: signed gradient through positive-gradient ReLUs."""

    method_name = "guided_backprop"
    guided = True
    zero_reason = "no positive gradient path from the target to the input"

    def __init__(self, model, target_layer=None, heads=None, batch_size: int = 256):
        super().__init__(model, target_layer, heads=heads, batch_size=batch_size, abs=False)


class SmoothGrad(Saliency):
    """Mean saliency over ``n_samples`` noisy copies (``stdev_spread`` of each image's range)."""

    method_name = "smoothgrad"
    zero_reason = "the gradient of the target score is zero at every noisy copy"

    def __init__(self, model, target_layer=None, heads=None, batch_size: int = 256, n_samples: int = 25,
                 stdev_spread: float = 0.15, seed: int = 0, abs: bool = True):
        super().__init__(model, target_layer, heads=heads, batch_size=batch_size, abs=abs)
        if int(n_samples) < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        if float(stdev_spread) < 0:
            raise ValueError(f"stdev_spread must be >= 0, got {stdev_spread}")
        self.n_samples = int(n_samples)
        self.stdev_spread = float(stdev_spread)
        self.seed = int(seed)

    def _images_per_chunk(self) -> int:
        return max(1, self.batch_size // self.n_samples)

    def _begin(self, x, ctx):
        ctx["generator"] = torch.Generator().manual_seed(self.seed)

    def noise(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``[N, n_samples, C, H, W]`` noise for images ``x``, drawn image by image."""
        s = self.n_samples
        sig = self.stdev_spread * (x.flatten(1).amax(1) - x.flatten(1).amin(1)).cpu()
        return torch.stack([torch.randn((s,) + tuple(x.shape[1:]), generator=generator) * sig[i]
                            for i in range(len(x))]).to(device=x.device, dtype=x.dtype)

    def _chunk(self, xb, sl, ctx):
        ev = self._clean(xb, sl, ctx)
        s = self.n_samples
        rows = (xb.unsqueeze(1) + self.noise(xb, ctx["generator"])).flatten(0, 1)
        row_w = torch.ones(len(rows), device=xb.device, dtype=xb.dtype)
        acc = self._integrate(rows, s, row_w, ev, ctx, torch.abs if self.abs else None)
        res = {}
        for h, e in ev.items():
            attr = acc[h] / s
            res[h] = self._record(e, attr, attr.abs().amax(1), (attr == 0).flatten(1).all(1))
        return res


class IntegratedGradients(Saliency):
    """Integrated Gradients from ``baseline`` (default zeros), Captum's quadrature rules."""

    method_name = "integrated_gradients"
    zero_reason = "the image equals the baseline or the channel attributions cancel everywhere"

    def __init__(self, model, target_layer=None, heads=None, batch_size: int = 256, n_steps: int = 50,
                 method: str = "gausslegendre", baseline=0.0):
        super().__init__(model, target_layer, heads=heads, batch_size=batch_size, abs=False)
        self.step_sizes, self.alphas = quadrature(method, n_steps)
        self.n_steps = int(n_steps)
        self.integration = method
        self.baseline = baseline

    def _images_per_chunk(self) -> int:
        return max(1, self.batch_size // self.n_steps)

    def _begin(self, x, ctx):
        b = self.baseline
        b = torch.as_tensor(0.0 if b is None else b, dtype=x.dtype)
        if b.is_inference():
            b = b.clone()
        try:
            ctx["baseline"] = b.expand_as(x)
        except RuntimeError:
            raise ValueError(f"baseline of shape {tuple(b.shape)} does not broadcast to the images "
                             f"{tuple(x.shape)}") from None

    def _chunk(self, xb, sl, ctx):
        ev = self._clean(xb, sl, ctx)
        base = ctx["baseline"][sl].to(xb)
        diff = xb - base
        k = self.n_steps
        alphas = torch.tensor(self.alphas, dtype=xb.dtype, device=xb.device).view(1, k, 1, 1, 1)
        rows = (base.unsqueeze(1) + alphas * diff.unsqueeze(1)).flatten(0, 1)
        row_w = torch.tensor(self.step_sizes, dtype=torch.float32).to(xb).repeat(len(xb))
        acc = self._integrate(rows, k, row_w, ev, ctx)
        torch.set_grad_enabled(False)
        at_base = self._outputs(self.model(base), ctx, len(xb))
        res = {}
        for h, e in ev.items():
            attr = acc[h] * diff
            s0 = target_scores(at_base[h], e["targets"])[1]
            delta = attr.flatten(1).sum(1) - (e["score"] - s0)
            res[h] = self._record(e, attr, attr.sum(1).abs(), (acc[h] == 0).flatten(1).all(1),
                                  extras={"delta": delta})
        return res


class GuidedGradCAM(AttributionMethod):
    """Guided backprop times the upsampled Grad-CAM at ``target_layer`` (as Captum's
    ``GuidedGradCam``). Extra keyword arguments go to :class:`GradCAM`."""

    method_name = "guided_gradcam"
    needs_layer = True
    zero_reason = "Grad-CAM or guided backprop is zero everywhere"

    def __init__(self, model, target_layer, heads=None, batch_size: int = 256,
                 interpolate_mode: str = "bilinear", **gradcam_params):
        super().__init__(model, target_layer, heads=heads, batch_size=batch_size)
        self.interpolate_mode = interpolate_mode
        self._gradcam = GradCAM(model, self.layer, heads=heads, batch_size=batch_size, **gradcam_params)
        self._guided = GuidedBackprop(model, None, heads=heads, batch_size=batch_size)

    def close(self) -> None:
        super().close()
        self._gradcam.close()
        self._guided.close()

    def __call__(self, x, targets=None):
        x = self._images(x)
        with torch.inference_mode(False):
            cams = self._gradcam(x, targets)
            dict_model = isinstance(cams, Mapping)
            if not dict_model:
                cams = {"class": cams}
            guided = self._guided(x, {h: c.targets for h, c in cams.items()} if dict_model
                                  else cams["class"].targets)
            if not dict_model:
                guided = {"class": guided}
            out = {h: self._combine(h, cam, guided[h], tuple(x.shape[-2:])) for h, cam in cams.items()}
        return out if dict_model else out["class"]

    def _combine(self, head, cam, gb: AttributionResult, size) -> AttributionResult:
        if self.interpolate_mode == "bilinear":
            up = cam.maps
        else:
            up = F.interpolate(cam.layer_maps.unsqueeze(1), size=size, mode=self.interpolate_mode)[:, 0]
        attr = gb.attributions * up.unsqueeze(1)
        maps = attr.abs().amax(1)
        return AttributionResult(
            maps=maps, maps_normalized=normalize_maps(maps), layer_maps=cam.layer_maps, targets=cam.targets,
            scores=cam.scores, probs=cam.probs, all_zero=~(maps.flatten(1) > 0).any(1), weights=cam.weights,
            zero_grad=gb.zero_grad, layer=self.layer_name, head=head, binary=cam.binary, attributions=attr,
            method=self.method_name, zero_reason=self.zero_reason)
