"""Integrated Gradients (Sundararajan et al., 2017): ``attributions = (x - x0) * sum_k w_k
dScore/dx(x0 + a_k (x - x0))`` with Captum's quadrature (``method``: ``"gausslegendre"``
(default, as Captum), ``"riemann_trapezoid"``, ``"riemann_left"``, ``"riemann_right"``,
``"riemann_middle"``; the same nodes and weights as Captum), baseline ``x0`` zeros by default.

``attributions`` is per channel and signed (comparable to Captum's); ``maps = |sum_c
attributions|``; ``extras["delta"]`` is the completeness error ``sum(attributions) - (score(x) -
score(x0))`` per image, ``extras["delta_relative"]`` its size relative to ``|score(x) - score(x0)|``
(benchmarks/bench_ig_completeness.py measures both per quadrature rule and step count). Chunks of up to ``batch_size`` images and ``ROWS_PER_CHUNK`` (8192)
integration rows (:meth:`~pipeline.attribution.input_gradient.InputGradient._images_for_rows`), the
rows run ``batch_size`` at a time.
"""
from __future__ import annotations

import numpy as np
import torch

from pipeline.attribution.input_gradient import InputGradient

__all__ = ["IntegratedGradients", "quadrature", "completeness_relative", "IG_METHODS"]

IG_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


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


def completeness_relative(delta: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """``|delta| / |f(x) - f(x0)|`` per image; ``0`` where both are 0, ``inf`` where only the change is."""
    d, c = delta.abs(), change.abs()
    return torch.where(c > 0, d / torch.where(c > 0, c, torch.ones_like(c)),
                       torch.where(d > 0, torch.full_like(d, float("inf")), torch.zeros_like(d)))


class IntegratedGradients(InputGradient):
    """Integrated Gradients from ``baseline`` (default zeros), Captum's quadrature rules."""

    method_name = "integrated_gradients"
    zero_reason = "the image equals the baseline or the channel attributions cancel everywhere"

    def __init__(self, model, target_layer=None, heads=None, batch_size: int = 256, n_steps: int = 50,
                 method: str = "gausslegendre", baseline=0.0, **fast_paths):
        super().__init__(model, target_layer, heads=heads, batch_size=batch_size, **fast_paths)
        self.step_sizes, self.alphas = quadrature(method, n_steps)
        self.n_steps = int(n_steps)
        self.integration = method
        self.baseline = baseline

    def _images_per_chunk(self) -> int:
        return self._images_for_rows(self.n_steps)

    def prepare(self, x, state) -> torch.Tensor:
        b = torch.as_tensor(0.0 if self.baseline is None else self.baseline, dtype=x.dtype)
        b = b.clone() if b.is_inference() else b
        try:
            return b.expand_as(x)
        except RuntimeError:
            raise ValueError(f"baseline of shape {tuple(b.shape)} does not broadcast to the images "
                             f"{tuple(x.shape)}") from None

    def _chunk(self, xb, sl, state):
        scored = self._clean(xb, sl, state)
        base = state.prepared[sl].to(xb)
        diff = xb - base
        k = self.n_steps
        alphas = torch.tensor(self.alphas, dtype=xb.dtype, device=xb.device).view(1, k, 1, 1, 1)
        rows = (base.unsqueeze(1) + alphas * diff.unsqueeze(1)).flatten(0, 1)
        row_w = torch.tensor(self.step_sizes, dtype=torch.float32).to(xb).repeat(len(xb))
        acc = self._integrate(rows, k, row_w, scored, state)
        torch.set_grad_enabled(False)
        at_base = self._outputs(self._forward(base, state)[0], state, len(xb))
        res = {}
        for h, s in scored.items():
            attr = acc[h] * diff
            change = s.score - s.target(at_base[h])
            delta = attr.flatten(1).sum(1) - change
            res[h] = s.record(attr.sum(1).abs(), attributions=attr, zero_grad=(acc[h] == 0).flatten(1).all(1),
                              extras={"delta": delta, "delta_relative": completeness_relative(delta, change)})
        return res
