"""Filter patterns: the input that maximizes each filter's mean response (gradient ascent).

``FilterVisualizer(model, "features.conv3", input_shape=(3, 28, 28))(steps=30)`` starts from a
blank image (mid-grey of ``value_range`` plus seeded Gaussian noise of std ``noise``) and,
for ALL selected filters at once (one image per filter, one batch), repeats:

    objective_f = mean over positions of channel f of the layer output on image f
    g = d objective / d image, divided by its own RMS (+1e-8), per image
    image += step_size * g
    [jitter: the forward sees the image rolled by a random (dy, dx) in [-jitter, jitter]
     (one seeded draw per step, shared by all images); the gradient flows back through the
     roll, i.e. the roll is undone]
    [decay: image = mid + (1 - decay) * (image - mid)]
    [every blur_every steps: Gaussian blur of std blur_sigma]
    clip to value_range                                   (the loop: filter_ascent.py)

The forward stops at the layer (a forward hook raises a private exception that is caught), so
nothing after the layer is computed. Gradients are taken w.r.t. the input only (no parameter
``.grad`` is accumulated). The model is put in eval mode for the call and every module's
previous mode is restored afterwards; grad is enabled explicitly, so the call also works
under ``torch.no_grad()`` / ``torch.inference_mode()``.

:meth:`FilterVisualizer.one_at_a_time` is the reference loop: the same optimisation, one
filter per run, from the same start and with the same random draws as the batched call. In eval mode the
images of a batch do not interact, so both reach the same patterns (up to summation order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from pipeline.visualization.filter_ascent import gradient_ascent
from pipeline.visualization.layers import resolve_layer

__all__ = ["FilterResult", "FilterVisualizer"]

class _StopForward(Exception):
    """Raised by the layer hook to end the forward pass at the layer."""

    def __init__(self, out):
        super().__init__("forward stopped at the visualized layer")
        self.out = out


@dataclass
class FilterResult:
    """Patterns of F filters of one layer (tensors on the CPU).

    layer           the layer name
    filter_indices  long [F]: channel index of each row
    patterns        float32 [F, C, H, W]: the optimised inputs, within value_range
    scores          float32 [F]: final mean activation of each filter on its pattern
    start_scores    float32 [F]: the same on the blank start image
    ranking         long [F]: row indices sorted by score, best first
    history         float32 [steps, F]: the objective at each step (before its update)
    """

    layer: str
    filter_indices: torch.Tensor
    patterns: torch.Tensor
    scores: torch.Tensor
    start_scores: torch.Tensor
    ranking: torch.Tensor
    history: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.filter_indices.numel())

    def top(self, k: int) -> torch.Tensor:
        """Row indices of the ``k`` best filters (use ``filter_indices[...]`` for channel ids)."""
        return self.ranking[:k]


class FilterVisualizer:
    """Gradient-ascent filter patterns for one layer (see the module docstring).

    ``input_shape`` is ``(C, H, W)`` of the model's input (``(1, 28, 28)`` greyscale,
    ``(3, 28, 28)`` RGB); ``value_range`` the model's input range (patterns are clipped to it).
    """

    #: automatic batches on the CPU: the largest activation of a batch stays within this many
    #: bytes (about a core's L2 cache), with at least MIN_AUTO_BATCH images per batch
    CACHE_BUDGET = 1 << 20
    MIN_AUTO_BATCH = 8

    def __init__(self, model: nn.Module, layer: str | nn.Module, input_shape: tuple[int, int, int] = (1, 28, 28),
                 value_range: tuple[float, float] = (0.0, 1.0)):
        self.model = model
        self.layer_name, self.layer = resolve_layer(model, layer)
        if self.layer is model:
            raise ValueError("the layer must be a sub-module, not the model itself")
        if len(input_shape) != 3:
            raise ValueError(f"input_shape is (C, H, W), got {input_shape}")
        self.input_shape = tuple(int(v) for v in input_shape)
        lo, hi = float(value_range[0]), float(value_range[1])
        if not hi > lo:
            raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
        self.value_range = (lo, hi)
        self._n_filters: int | None = None
        self._act_bytes = 0
        #: feed the forward a channels_last copy on the CPU in float32 (oneDNN convolutions and
        #: pooling are faster in that layout); the batched call and one_at_a_time use the same setting
        self.channels_last = True

    # -- plumbing ---------------------------------------------------------------------------
    def _param(self) -> tuple[torch.device, torch.dtype]:
        for p in self.model.parameters():
            return p.device, (p.dtype if p.is_floating_point() else torch.float32)
        return torch.device("cpu"), torch.float32

    def _set_eval(self) -> list[tuple[nn.Module, bool]]:
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return modes

    @staticmethod
    def _restore(modes: list[tuple[nn.Module, bool]]) -> None:
        for m, training in modes:
            m.training = training

    def _to_layer(self, x: torch.Tensor) -> torch.Tensor:
        """Run the model on ``x`` up to the layer (the hook must be attached)."""
        try:
            self.model(x)
        except _StopForward as stop:
            out = stop.out
            if isinstance(out, (tuple, list)):
                out = out[0]
            return out
        raise RuntimeError(f"layer {self.layer_name!r} was not executed by the forward pass")

    def _attach(self):
        def stop(module, inputs, out):
            raise _StopForward(out)
        return self.layer.register_forward_hook(stop)

    @property
    def n_filters(self) -> int:
        """Number of channels of the layer's output (found with one blank forward)."""
        if self._n_filters is None:
            self._probe()
        return self._n_filters

    def _probe(self) -> None:
        """One blank single-image forward up to the layer: its channel count, and the largest
        activation (bytes per image) computed on the way, which sizes the automatic batches."""
        device, dtype = self._param()
        sizes = []

        def measure(module, inputs, out):
            if isinstance(out, torch.Tensor):
                sizes.append(out.numel() * out.element_size())

        modes = self._set_eval()
        handles = [m.register_forward_hook(measure) for m in self.model.modules() if m is not self.model]
        handles.append(self._attach())  # after `measure`: the layer's own output is counted too
        try:
            with torch.inference_mode(False), torch.no_grad():
                out = self._to_layer(torch.zeros((1,) + self.input_shape, device=device, dtype=dtype))
        finally:
            for h in handles:
                h.remove()
            self._restore(modes)
        if out.dim() < 2:
            raise ValueError(f"layer {self.layer_name!r} gives shape {tuple(out.shape)}; need [N, C, ...]")
        self._n_filters = int(out.shape[1])
        self._act_bytes = max(sizes) if sizes else 0

    def _batch_size(self, n: int, batch_size: int | None) -> int:
        """Images per batch: ``batch_size`` if given (0 = all), else automatic (see __call__)."""
        if batch_size is not None:
            return n if batch_size == 0 else min(int(batch_size), n)
        device, _ = self._param()
        if device.type != "cpu" or n <= self.MIN_AUTO_BATCH:
            return n
        if self._n_filters is None:
            self._probe()
        per_batch = max(self.MIN_AUTO_BATCH, self.CACHE_BUDGET // max(self._act_bytes, 1))
        n_batches = -(-n // per_batch)
        return -(-n // n_batches)  # equal-sized batches

    def _filters(self, filters) -> torch.Tensor:
        n = self.n_filters
        if filters is None:
            return torch.arange(n)
        if isinstance(filters, int):
            filters = [filters]
        f = torch.as_tensor(filters).flatten()
        if f.is_floating_point() or f.dtype == torch.bool:
            raise ValueError("filters must be integer channel indices")
        f = f.long()
        if f.numel() == 0:
            raise ValueError("no filters selected")
        bad = f[(f < 0) | (f >= n)]
        if bad.numel():
            raise ValueError(f"filter {int(bad[0])} out of range for layer {self.layer_name!r}: "
                             f"valid filters are 0..{n - 1}")
        return f

    def _draws(self, n: int, steps: int, seed: int, noise: float, jitter: int):
        """Start images ``[n, C, H, W]`` and per-step jitter shifts ``[steps, 2]`` (CPU)."""
        g = torch.Generator().manual_seed(int(seed))
        lo, hi = self.value_range
        mid = (lo + hi) / 2.0
        start = mid + float(noise) * torch.randn((n,) + self.input_shape, generator=g, dtype=torch.float64)
        start = start.clamp_(lo, hi)
        if jitter > 0:
            shifts = torch.randint(-int(jitter), int(jitter) + 1, (steps, 2), generator=g)
        else:
            shifts = torch.zeros((steps, 2), dtype=torch.long)
        return start, shifts

    def _optimise(self, filt: torch.Tensor, start: torch.Tensor, shifts: torch.Tensor, steps: int, step_size: float,
                  decay: float, blur_every: int, blur_sigma: float, bar) -> tuple[torch.Tensor, ...]:
        """Gradient ascent of a batch (image i for filter filt[i]); the hook must be attached."""
        device, dtype = self._param()
        fast = self.channels_last and device.type == "cpu" and dtype == torch.float32
        *out, fast_ok = gradient_ascent(self._to_layer, filt.to(device), start.to(device=device, dtype=dtype), shifts,
                                        step_size=step_size, decay=decay, blur_every=blur_every,
                                        blur_sigma=blur_sigma, value_range=self.value_range, channels_last=fast,
                                        bar=bar)
        if fast and not fast_ok:
            self.channels_last = False  # the model's code rejects channels_last (e.g. a .view): remembered
        return tuple(out)

    def _run(self, filters, steps, step_size, seed, noise, jitter, decay, blur_every, blur_sigma, progress,
             batched: bool, batch_size: int | None = None) -> FilterResult:
        if batch_size is not None and int(batch_size) < 0:
            raise ValueError(f"batch_size must be >= 0 or None, got {batch_size}")
        if steps < 0 or step_size < 0 or noise < 0 or jitter < 0 or not 0 <= decay < 1 or blur_every < 0:
            raise ValueError("steps, step_size, noise, jitter, blur_every must be >= 0 and 0 <= decay < 1")
        with torch.inference_mode(False):  # plain tensors even when called under inference_mode
            filt = self._filters(filters)
            start, shifts = self._draws(len(filt), steps, seed, noise, jitter)
        args = (steps, float(step_size), float(decay), int(blur_every), float(blur_sigma))
        modes = self._set_eval()
        handle = self._attach()
        bar = None
        try:
            with torch.inference_mode(False):
                if batched:
                    size = self._batch_size(len(filt), batch_size)
                    chunks = range(0, len(filt), size)
                    bar = tqdm(total=steps * len(chunks), desc=f"filters {self.layer_name}", disable=not progress,
                               leave=False)
                    outs = [self._optimise(filt[i:i + size], start[i:i + size], shifts, *args, bar) for i in chunks]
                else:
                    bar = tqdm(total=len(filt), desc=f"filters {self.layer_name} (one at a time)",
                               disable=not progress, leave=False)
                    outs = []
                    for i in range(len(filt)):
                        outs.append(self._optimise(filt[i:i + 1], start[i:i + 1], shifts, *args, None))
                        bar.update(1)
                patterns, scores, start_scores, history = (torch.cat([o[k] for o in outs], dim=1 if k == 3 else 0)
                                                           for k in range(4))
        finally:
            if bar is not None:
                bar.close()
            handle.remove()
            self._restore(modes)
        return FilterResult(
            layer=self.layer_name,
            filter_indices=filt.cpu(),
            patterns=patterns,
            scores=scores,
            start_scores=start_scores,
            ranking=torch.argsort(scores, descending=True, stable=True),
            history=history,
        )

    # -- public -----------------------------------------------------------------------------
    def __call__(self, filters: Sequence[int] | torch.Tensor | int | None = None, steps: int = 30,
                 step_size: float = 0.05, seed: int = 0, noise: float = 0.02, jitter: int = 0,
                 decay: float = 0.0, blur_every: int = 0, blur_sigma: float = 0.5,
                 progress: bool = False, batch_size: int | None = None) -> FilterResult:
        """Optimise the selected filters (default: every channel of the layer) batched, one image
        per filter.

        ``batch_size``: images per batch (batches run one after the other; same start, same
        draws, same result). ``0`` = all filters in one batch. ``None`` (default) = one batch,
        except on the CPU, where the filters are split into equal batches whose largest
        activation fits about a core's L2 cache (:attr:`CACHE_BUDGET`; e.g. 4 x 16 for the 64
        filters of MultiHead's ``features.conv3``): on a 2-core EPYC that is ~1.5x faster
        than one 64-image batch, whose activations spill to the shared L3.
        """
        return self._run(filters, steps, step_size, seed, noise, jitter, decay, blur_every, blur_sigma,
                         progress, batched=True, batch_size=batch_size)

    def one_at_a_time(self, filters: Sequence[int] | torch.Tensor | int | None = None, steps: int = 30,
                      step_size: float = 0.05, seed: int = 0, noise: float = 0.02, jitter: int = 0,
                      decay: float = 0.0, blur_every: int = 0, blur_sigma: float = 0.5,
                      progress: bool = False, batch_size: int | None = None) -> FilterResult:
        """Reference loop: one optimisation per filter, same start and random draws as ``__call__``
        (``batch_size`` is accepted so that both take the same keywords, and ignored)."""
        return self._run(filters, steps, step_size, seed, noise, jitter, decay, blur_every, blur_sigma,
                         progress, batched=False)
