"""Feature visualization: the input a unit wants (objectives, parametrizations, transforms).

``FeatureVisualizer(model, "heads.angle", (3, 28, 28))(objective="class", param="fft",
transforms=["jitter", "scale", "rotate"])`` optimizes one image per target (every channel,
every centre neuron, or every class of a head) in ONE batch with Adam: each step the images
(:mod:`~pipeline.visualization.feature_param`) are moved by the step's random transforms
(:mod:`~pipeline.visualization.feature_transforms`), run through the model up to the layer
(a forward hook ends the pass there), and the objective minus the penalties times |objective|
(:mod:`~pipeline.visualization.feature_objectives`: relative weights) is raised. Scores are the objective on
the final, untransformed image. Only the input gets gradients (never the model's parameters);
the model is in eval mode for the call and its modes are restored afterwards.

:meth:`FeatureVisualizer.one_at_a_time` is the reference: the same optimization, one target per
run, from the same start with the same draws; in eval mode the images of a batch do not
interact (Adam is element-wise), so both give the same pictures.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from pipeline.visualization.feature_objectives import OBJECTIVES, diversity_term, objective_values, penalties
from pipeline.visualization.feature_param import Parametrization
from pipeline.visualization.feature_transforms import apply_transforms, check_transforms, draw_transforms
from pipeline.visualization.layers import resolve_layer

__all__ = ["FeatureResult", "FeatureVisualizer", "eval_mode", "head_layers"]


class _Stop(Exception):
    def __init__(self, out):
        super().__init__("forward stopped at the visualized layer")
        self.out = out


@dataclass
class FeatureResult:
    """Pictures for the targets of one layer and objective (tensors on the CPU).

    targets [n] long (a target repeats ``copies`` times, copies adjacent); patterns [n, C, H, W]
    in [0, 1]; scores / start_scores [n]: the objective on the final / start image; ranking [n]:
    rows by score, best first; probs [n] (class objective): the model's probability for the
    target class on its own picture; settings: the optimization settings."""

    layer: str
    objective: str
    targets: torch.Tensor
    patterns: torch.Tensor
    scores: torch.Tensor
    start_scores: torch.Tensor
    ranking: torch.Tensor
    copies: int = 1
    probs: torch.Tensor | None = None
    settings: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.targets.numel())


@contextmanager
def eval_mode(model: nn.Module):
    """The model in eval mode inside the block; every module's own mode restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def _outputs(out) -> list[torch.Tensor]:
    if isinstance(out, dict):
        return list(out.values())
    return list(out) if isinstance(out, (tuple, list)) else [out]


def head_layers(model: nn.Module, input_shape) -> dict[str, int]:
    """``{layer name: classes}`` of the modules whose output IS one of the model's outputs (outermost
    first: ``heads.angle``, ``heads.angle.out``; ``classifier``, ``classifier.out``); a one-logit head has 2."""
    seen: dict[int, tuple[list[str], torch.Tensor]] = {}

    def record(name):
        def hook(module, inputs, out):
            if isinstance(out, torch.Tensor):
                seen.setdefault(id(out), ([], out))[0].insert(0, name)  # outer modules' hooks run last
        return hook

    hooks = [m.register_forward_hook(record(name)) for name, m in model.named_modules() if name]
    try:
        p = next(model.parameters())
        with eval_mode(model), torch.inference_mode(False), torch.no_grad():
            outs = _outputs(model(torch.zeros((1,) + tuple(input_shape), device=p.device, dtype=p.dtype)))
    finally:
        for h in hooks:
            h.remove()
    heads = {}
    for o in outs:
        if id(o) in seen and o.dim() == 2:
            heads.update({name: max(2, int(o.shape[1])) for name in seen[id(o)][0]})
    return heads


class FeatureVisualizer:
    """Feature visualization for one layer of ``model`` with input ``(C, H, W)`` in [0, 1]."""

    def __init__(self, model: nn.Module, layer: str | nn.Module, input_shape=(1, 28, 28)):
        self.model = model
        self.layer_name, self.layer = resolve_layer(model, layer)
        if self.layer is model:
            raise ValueError("the layer must be a sub-module, not the model itself")
        self.input_shape = tuple(int(v) for v in input_shape)
        self._units: int | None = None

    # -- plumbing
    def _to_layer(self, x: torch.Tensor) -> torch.Tensor:
        try:
            self.model(x)
        except _Stop as stop:
            out = stop.out
            return out[0] if isinstance(out, (tuple, list)) else out
        raise RuntimeError(f"layer {self.layer_name!r} was not executed by the forward pass")

    def _hook(self):
        def stop(module, inputs, out):
            raise _Stop(out)
        return self.layer.register_forward_hook(stop)

    @property
    def n_units(self) -> int:
        """Channels (units) of the layer's output."""
        if self._units is None:
            p = next(self.model.parameters())
            h = self._hook()
            try:  # eval mode: a train-mode forward would move the batch-norm statistics
                with eval_mode(self.model), torch.inference_mode(False), torch.no_grad():
                    out = self._to_layer(torch.zeros((1,) + self.input_shape, device=p.device, dtype=p.dtype))
            finally:
                h.remove()
            self._units = int(out.shape[1])
        return self._units

    def check(self, objective: str, targets=None) -> torch.Tensor:
        """The targets as a long tensor (default: all), checked against the layer and objective."""
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
        if objective == "class":
            heads = head_layers(self.model, self.input_shape)
            if self.layer_name not in heads:
                raise ValueError(f"objective=class needs a head layer (a layer whose output is the model's "
                                 f"class scores): {', '.join(heads)}; {self.layer_name!r} is not one")
            n = heads[self.layer_name]
        else:
            n = self.n_units
        t = torch.arange(n) if targets is None else torch.as_tensor(targets).flatten().long()
        if t.numel() == 0:
            raise ValueError("no targets selected")
        bad = t[(t < 0) | (t >= n)]
        if bad.numel():
            kind = "class" if objective == "class" else "unit"
            raise ValueError(f"{kind} {int(bad[0])} is out of range for layer {self.layer_name!r}: valid are 0..{n - 1}")
        return t

    # -- the optimization
    def _optimise(self, targets, start, draws, par, s) -> tuple[torch.Tensor, ...]:
        device = next(self.model.parameters()).device
        tg = targets.to(device)
        leaf = start.detach().clone().to(device).requires_grad_(True)
        opt = torch.optim.Adam([leaf], lr=s["lr"])
        with torch.no_grad():
            start_scores = objective_values(self._to_layer(par.image(leaf)), tg, s["objective"])
        for step in range(s["steps"]):
            with torch.enable_grad():
                img = par.image(leaf)
                out = self._to_layer(apply_transforms(img, draws[step]))
                obj = objective_values(out, tg, s["objective"])
                gain = obj - obj.detach().abs() * penalties(img, l1=s["l1"], lhalf=s["lhalf"], centre=s["centre"],
                                                               tv=s["tv"], blur=s["blur"])
                if s["diversity"] and s["copies"] > 1:
                    gain = gain - obj.detach().abs() * s["diversity"] * diversity_term(out, s["copies"])
                g, = torch.autograd.grad(-gain.sum(), leaf)
            leaf.grad = g
            opt.step()
            par.project(leaf)
        if s["polish"]:
            self._polish(leaf, tg, par, s)
        with torch.no_grad():
            img = par.image(leaf)
            out = self._to_layer(img)
            scores = objective_values(out, tg, s["objective"])
            probs = None
            if s["objective"] == "class":
                probs = torch.sigmoid(scores) if out.shape[1] == 1 else torch.softmax(out, 1)[torch.arange(len(tg)), tg]
        return img.detach().float().cpu(), scores.float().cpu(), start_scores.float().cpu(), probs

    def _polish(self, leaf, tg, par, s) -> None:
        """``polish`` Adam steps (lr ``polish_lr``) on the objective alone: no transforms, no penalties, the
        parameters kept in range and the channels mask kept. With ``polish_mask`` > 0 (pixel parametrization)
        only the pixels the robust phase lit move: those whose brightest channel is above ``polish_mask`` times
        the picture's brightest pixel, grown by one pixel (a 3x3 max), so the picture keeps its structure."""
        mask = None
        if s["polish_mask"] and par.kind == "pixel":
            with torch.no_grad():
                img = par.image(leaf)
                bright = img.amax(1, keepdim=True)  # [n, 1, H, W]
                lit = (bright > s["polish_mask"] * bright.flatten(1).amax(1).view(-1, 1, 1, 1)).to(img.dtype)
                mask = torch.nn.functional.max_pool2d(lit, 3, stride=1, padding=1)
        opt = torch.optim.Adam([leaf], lr=s["polish_lr"])
        for _ in range(s["polish"]):
            with torch.enable_grad():
                obj = objective_values(self._to_layer(par.image(leaf)), tg, s["objective"])
                g, = torch.autograd.grad(-obj.sum(), leaf)
            leaf.grad = g if mask is None else g * mask
            opt.step()
            par.project(leaf)

    def _run(self, targets, batched: bool, objective="channel", param="fft", transforms=("jitter", "scale", "rotate"),
             steps=128, lr=0.05, jitter=2.0, scale=0.1, rotate=10.0, l1=0.0, lhalf=0.0, centre=0.0, tv=0.0, blur=0.0,
             diversity=0.0, copies=1, seed=0, noise=0.01, channels=None, polish=0, polish_lr=0.01, polish_mask=0.0,
             restarts=1, batch_size=None) -> FeatureResult:
        transforms = check_transforms(transforms)
        weights = (l1, lhalf, centre, tv, blur, diversity, noise, jitter, scale, rotate)
        if steps < 0 or lr <= 0 or min(weights) < 0 or copies < 1 or restarts < 1 or polish < 0 or polish_lr <= 0 \
                or not 0 <= polish_mask < 1:
            raise ValueError("steps >= 0, lr > 0, copies >= 1, restarts >= 1, polish >= 0, polish_lr > 0, "
                             "0 <= polish_mask < 1 and "
                             "l1, lhalf, centre, tv, blur, diversity, noise, jitter, scale, rotate >= 0 are required")
        if channels is not None:
            channels = sorted({int(c) for c in channels})
            if not channels or channels[0] < 0 or channels[-1] >= self.input_shape[0]:
                raise ValueError(f"channels {channels} must be a non-empty subset of 0..{self.input_shape[0] - 1}")
        with torch.inference_mode(False):  # plain tensors even when called under inference_mode
            rows = self.check(objective, targets).repeat_interleave(int(copies))
            t = rows.repeat(int(restarts))  # restart-major: restart r optimizes rows r*n .. (r+1)*n - 1
        s = dict(objective=objective, param=param, transforms=list(transforms), steps=int(steps), lr=float(lr),
                 jitter=float(jitter), scale=float(scale), rotate=float(rotate), l1=float(l1), lhalf=float(lhalf),
                 centre=float(centre), tv=float(tv), blur=float(blur), diversity=float(diversity), copies=int(copies),
                 seed=int(seed), noise=float(noise), channels=channels, polish=int(polish), polish_lr=float(polish_lr),
                 polish_mask=float(polish_mask), restarts=int(restarts))
        p = next(self.model.parameters())
        with torch.inference_mode(False):
            par = Parametrization(param, len(t), self.input_shape, seed=seed, noise=noise, channels=channels,
                                  device=p.device, dtype=p.dtype)
            draws = draw_transforms(steps, len(t), transforms, jitter=jitter, scale=scale, rotate=rotate, seed=seed)
        size = len(t) if batch_size in (None, 0) else int(batch_size) * int(copies)
        if not batched:
            size = int(copies)
        hook = self._hook()
        try:
            with eval_mode(self.model), torch.inference_mode(False):
                outs = [self._optimise(t[i:i + size], par.params[i:i + size], draws[:, i:i + size], par, s)
                        for i in range(0, len(t), size)]
        finally:
            hook.remove()
        patterns, scores, start_scores = (torch.cat([o[k] for o in outs]) for k in range(3))
        probs = torch.cat([o[3].float().cpu() for o in outs]) if objective == "class" else None
        if restarts > 1:  # per target, the restart whose copies reach the highest mean score (the objective alone)
            n, k = len(rows), int(copies)
            best = scores.view(int(restarts), n // k, k).mean(2).argmax(0)  # [targets]
            keep = best.repeat_interleave(k) * n + torch.arange(n)
            patterns, scores, start_scores = patterns[keep], scores[keep], start_scores[keep]
            probs = None if probs is None else probs[keep]
            t = rows
        return FeatureResult(layer=self.layer_name, objective=objective, targets=t, patterns=patterns, scores=scores,
                             start_scores=start_scores, ranking=torch.argsort(scores, descending=True, stable=True),
                             copies=int(copies), probs=probs, settings=s)

    def __call__(self, targets=None, **settings) -> FeatureResult:
        """All targets (default: every unit / class) in one batch (``batch_size``: targets per batch)."""
        return self._run(targets, True, **settings)

    def one_at_a_time(self, targets=None, **settings) -> FeatureResult:
        """The reference loop: one target (with its copies) per optimization."""
        return self._run(targets, False, **settings)
