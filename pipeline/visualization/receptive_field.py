"""Where a layer's cells sit in the input: receptive-field geometry, and maps placed by it.

A CAM is computed at a layer's resolution ``h x w`` and shown at the input's ``H x W``. Stretching
it (``F.interpolate(bilinear, align_corners=False)``, as Captum and pytorch-grad-cam do) assumes
cell ``j`` is centred at input pixel ``(j + 0.5) * H / h - 0.5``. That holds for "same"-padded
convolutions and 2x2 pools, not for an unpadded one: cnn_basic's 7x7 conv (no padding) gives
22x22 cells whose centres are the pixels 3..24, and stretching them to 0..27 moves the heat by up
to 3 px. Here each cell is put at its receptive field's centre (pixel centres at integer
coordinates): cell ``j`` of an axis is centred at ``offset + stride * j``, and the map is
interpolated between those centres (held constant beyond the outermost ones).

* :func:`layer_geometry` finds ``(stride, offset, extent)`` per axis for a layer, in this order:
  1. **traced**: hooks on the leaf modules during a forward (the attribution method's own first
     forward, :class:`ChainTrace`); if the input reaches the layer through a chain of modules each
     reading the previous one's output (any
     ``nn.Sequential`` model: the project's models), the geometry is composed from them:
     ``Conv2d`` (kernel, stride, padding incl. ``"same"``/``"valid"``, dilation),
     ``MaxPool2d``/``AvgPool2d`` (kernel, stride, padding, dilation), the ``*Pad2d`` modules;
     batch/instance/group norm, activations, dropout and ``Identity`` keep it.
  2. **probed** (a branch, a residual sum, a functional op, an unknown module; model in eval mode):
     the input-gradient support of two interior cells per axis over 4 random images gives each
     cell's receptive-field centre, hence stride and offset.
  3. otherwise ``None`` with the reason (a map is then stretched as before, and the caller logs it):
     a model in training mode that the trace cannot follow (batch statistics couple all pixels),
     fewer than two probed cells of an axis with an uncut receptive field, a 1-cell axis.
* :func:`place_maps` upsamples ``[n, h, w]`` maps by a geometry (``None``: the plain stretch). A
  geometry equal to the stretch's (any "same"-padded net) is drawn by ``F.interpolate`` itself, so
  those maps are bit-identical to Captum's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AxisGeometry", "ChainTrace", "LayerGeometry", "layer_geometry", "place_maps", "stretch_geometry",
           "trace_geometry", "probe_geometry"]


@dataclass(frozen=True)
class AxisGeometry:
    """One axis: cell ``j`` of the layer is centred at input pixel ``offset + stride * j``
    (pixel ``i``'s centre at ``i``); ``extent`` is the receptive field's size in pixels (0: unknown)."""

    stride: float
    offset: float
    extent: int = 0

    def centre(self, j: float) -> float:
        return self.offset + self.stride * j

    def then(self, kernel: int, stride: int, padding: int, dilation: int = 1) -> "AxisGeometry":
        """The geometry after one more sliding window (conv or pool) on this axis."""
        k = dilation * (kernel - 1) + 1
        return AxisGeometry(self.stride * stride, self.offset + ((k - 1) / 2 - padding) * self.stride,
                            self.extent + (k - 1) * int(self.stride))


@dataclass(frozen=True)
class LayerGeometry:
    """Both axes of a layer, and how they were found (``traced`` or ``probed``)."""

    y: AxisGeometry
    x: AxisGeometry
    how: str = "traced"

    def is_stretch(self, layer_size: Sequence[int], size: Sequence[int]) -> bool:
        """True when placing by it is exactly what the bilinear stretch does."""
        s = stretch_geometry(layer_size, size)
        return all(abs(a.stride - b.stride) < 1e-9 and abs(a.offset - b.offset) < 1e-9
                   for a, b in ((self.y, s.y), (self.x, s.x)))


def stretch_geometry(layer_size: Sequence[int], size: Sequence[int]) -> LayerGeometry:
    """The geometry that ``F.interpolate(align_corners=False)`` assumes: stride ``H/h``, offset ``(H/h - 1)/2``."""
    axes = []
    for h, big in zip(layer_size, size):
        s = big / h
        axes.append(AxisGeometry(s, (s - 1) / 2))
    return LayerGeometry(axes[0], axes[1], how="stretch")


# --------------------------------------------------------------------------- placing maps
def _axis_weights(g: AxisGeometry, n_cells: int, n_pixels: int, mode: str, dtype, device) -> torch.Tensor:
    """``[n_pixels, n_cells]``: each output pixel's interpolation weights over the cells."""
    u = (torch.arange(n_pixels, dtype=torch.float64) - g.offset) / g.stride
    u = u.clamp(0, n_cells - 1)
    m = torch.zeros(n_pixels, n_cells, dtype=torch.float64)
    rows = torch.arange(n_pixels)
    if mode == "nearest":
        m[rows, torch.floor(u + 0.5).long().clamp_max(n_cells - 1)] = 1.0
    else:
        i0 = torch.floor(u).long().clamp_max(n_cells - 1)
        i1 = (i0 + 1).clamp_max(n_cells - 1)
        w1 = u - i0
        m[rows, i0] += 1 - w1
        m[rows, i1] += w1
    return m.to(device=device, dtype=dtype)


def place_maps(cam: torch.Tensor, size: Sequence[int], geometry: LayerGeometry | None,
               mode: str = "bilinear", clamp: bool = True) -> torch.Tensor:
    """``[n, h, w]`` -> ``[n, H, W]``: cell ``(j, k)`` at its receptive field's centre, interpolated
    between centres (``mode`` bilinear or nearest), constant beyond the outermost; clamped at 0 (``clamp``).
    ``geometry=None`` or one equal to the stretch: ``F.interpolate`` (bilinear: ``align_corners=False``)."""
    size = tuple(int(s) for s in size)
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    if geometry is None or geometry.is_stretch(cam.shape[-2:], size):
        kw = {"align_corners": False} if mode == "bilinear" else {}
        out = F.interpolate(cam.unsqueeze(1), size=size, mode=mode, **kw)[:, 0]
        return out.clamp_min(0) if clamp else out
    h, w = cam.shape[-2:]
    my = _axis_weights(geometry.y, h, size[0], mode, cam.dtype, cam.device)
    mx = _axis_weights(geometry.x, w, size[1], mode, cam.dtype, cam.device)
    out = torch.einsum("Yh,nhw,Xw->nYX", my, cam, mx)
    return out.clamp_min(0) if clamp else out


# --------------------------------------------------------------------------- finding the geometry
_KEEP = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.Dropout, nn.Dropout2d, nn.AlphaDropout,
         nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
         nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus)
_PADS = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _step(m: nn.Module, g: LayerGeometry) -> LayerGeometry | None:
    """The geometry after leaf module ``m``; None when ``m`` is not understood."""
    if isinstance(m, _KEEP):
        return g
    if isinstance(m, nn.Conv2d) or isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k, s = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
        d = _pair(getattr(m, "dilation", 1))
        p = m.padding
        if p == "valid":
            p = (0, 0)
        elif p == "same":  # PyTorch pads total d*(k-1), the smaller half first
            p = tuple(dd * (kk - 1) // 2 for kk, dd in zip(k, d))
        p = _pair(p)
        return LayerGeometry(g.y.then(k[0], s[0], p[0], d[0]), g.x.then(k[1], s[1], p[1], d[1]), g.how)
    if isinstance(m, _PADS):
        left, _, top, _ = (m.padding if isinstance(m.padding, tuple) else (m.padding,) * 4)
        return LayerGeometry(g.y.then(1, 1, int(top)), g.x.then(1, 1, int(left)), g.how)
    return None


def _leaves_and(model: nn.Module, layer: nn.Module) -> list[nn.Module]:
    mods = [m for m in model.modules() if not any(True for _ in m.children())]
    return mods if any(m is layer for m in mods) else mods + [layer]


def _keep_buffers(model: nn.Module):
    """Snapshot of the buffers (a train-mode forward updates batch-norm running statistics)."""
    return [(b, b.detach().clone()) for b in model.buffers()]


class ChainTrace:
    """Forward hooks that record the leaf modules (and ``layer``) of one forward pass, in order;
    :meth:`geometry` then follows the chain from the input to ``layer``. ``handles`` are removed by
    whoever runs the forward (or :meth:`remove`). The chain starts at the first leaf module, which must
    read a tensor of the input's shape (the model may copy, view or re-layout its input first)."""

    def __init__(self, model: nn.Module, layer: nn.Module):
        self.model, self.layer, self.records = model, layer, []

        def hook(m, args, out):
            self.records.append((m, args[0] if args else None, out))

        self.handles = [m.register_forward_hook(hook) for m in _leaves_and(model, layer)]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def geometry(self, shape: Sequence[int]) -> tuple[LayerGeometry | None, str]:
        """``(geometry, "")`` or ``(None, why)`` for an input of ``shape`` ``[N, C, H, W]``; forgets the records."""
        records, self.records = self.records, []
        model, layer = self.model, self.layer
        if not records:
            return None, "the forward pass ran no module"
        first = records[0][1]
        if not isinstance(first, torch.Tensor) or tuple(first.shape[1:]) != tuple(shape[1:]):
            return None, f"the first module, {_name(model, records[0][0])}, does not read the input image"
        cur, g = first, LayerGeometry(AxisGeometry(1.0, 0.0, 1), AxisGeometry(1.0, 0.0, 1))
        for m, inp, out in records:
            is_layer = m is layer
            if is_layer and any(True for _ in m.children()):  # a container: its children ran before it
                return (g, "") if out is cur else (None, f"{_name(model, m)} is not a chain of modules")
            if inp is not cur:
                return None, (f"{type(m).__name__} {_name(model, m)} does not read the previous module's output "
                              "(a branch, a residual sum or a functional op)")
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                return None, f"{type(m).__name__} {_name(model, m)} does not give a 4-D tensor"
            nxt = _step(m, g)
            if nxt is None:
                return None, f"{type(m).__name__} {_name(model, m)} is not a module whose geometry is known"
            g, cur = nxt, out
            if is_layer:
                return g, ""
        return None, "the layer was not reached"


def trace_geometry(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> tuple[LayerGeometry | None, str]:
    """``(geometry, "")`` when the input reaches ``layer`` through a chain of understood modules,
    else ``(None, why)``; one forward of ``x`` (``[1, C, H, W]``); nothing of the model is changed."""
    saved = _keep_buffers(model) if model.training else []
    trace = ChainTrace(model, layer)
    try:
        with torch.no_grad():
            model(x)
    finally:
        trace.remove()
        with torch.no_grad():
            for b, v in saved:
                b.copy_(v)
    return trace.geometry(x.shape)


def _name(model: nn.Module, m: nn.Module) -> str:
    return next((n for n, mm in model.named_modules() if mm is m), "?")


def _support_span(grad: torch.Tensor, dim: int) -> tuple[int, int] | None:
    """The first and last input index along ``dim`` where ``grad`` is non-zero (None: nowhere)."""
    other = tuple(d for d in range(grad.dim()) if d != dim)
    nz = torch.nonzero(grad.abs().sum(other) > 0).flatten()
    return (int(nz[0]), int(nz[-1])) if len(nz) else None


def _centres(spans: dict[int, tuple[int, int]]) -> list[tuple[int, float]]:
    """The receptive-field centres of the cells whose support spans the full extent (the widest
    span): a narrower one is cut by the image border or by padding, and its centre is not the field's."""
    if not spans:
        return []
    extent = max(hi - lo for lo, hi in spans.values())
    return [(j, (lo + hi) / 2) for j, (lo, hi) in sorted(spans.items()) if hi - lo == extent]


def probe_geometry(model: nn.Module, layer: nn.Module, shape: Sequence[int], images: int = 4,
                   seed: int = 0) -> tuple[LayerGeometry | None, str]:
    """The geometry measured: per axis, two cells' input-gradient support (over ``images`` random
    images) and their centres. Eval mode only (batch statistics would couple all pixels)."""
    if model.training:
        return None, "the model is in training mode (batch statistics couple all pixels; probe needs eval mode)"
    c, hh, ww = (int(s) for s in shape)
    gen = torch.Generator().manual_seed(seed)
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    dt = next((p.dtype for p in model.parameters()), torch.float32)
    x = torch.rand(images, c, hh, ww, generator=gen).to(dev, dt).requires_grad_(True)
    got = {}

    def hook(m, args, out):
        got.setdefault("a", out)

    with torch.inference_mode(False), torch.enable_grad():
        handle = layer.register_forward_hook(hook)
        try:
            model(x)
        finally:
            handle.remove()
        a = got.get("a")
        if not isinstance(a, torch.Tensor) or a.dim() != 4:
            return None, "the layer's output is not [N, C, h, w]"
        h, w = a.shape[-2:]
        axes = []
        for axis, (n_cells, n_px, across) in enumerate(((h, hh, w), (w, ww, h))):
            if n_cells < 2:
                return None, "the layer has a single cell along an axis"
            spans = {}
            for j in sorted({n_cells // 4, n_cells // 2, (3 * n_cells) // 4, 0, n_cells - 1}):
                idx = (slice(None), slice(None), j, across // 2) if axis == 0 else \
                      (slice(None), slice(None), across // 2, j)
                g, = torch.autograd.grad(a[idx].abs().sum(), x, retain_graph=True, allow_unused=True)
                span = None if g is None else _support_span(g, 2 + axis)
                if span is not None:
                    spans[j] = span
            found = _centres(spans)
            if len(found) < 2:
                return None, "fewer than two probed cells have an uncut receptive field"
            (j1, c1), (j2, c2) = found[0], found[-1]
            stride = (c2 - c1) / (j2 - j1)
            axes.append(AxisGeometry(stride, c1 - stride * j1, 0))
    return LayerGeometry(axes[0], axes[1], how="probed"), ""


def layer_geometry(model: nn.Module, layer: nn.Module, x: torch.Tensor,
                   trace: ChainTrace | None = None) -> tuple[LayerGeometry | None, str]:
    """``(geometry, note)``: traced, else probed, else ``(None, why)``; ``x``: the input (only
    ``x[:1]`` runs; only its shape matters to the probe); ``trace``: a :class:`ChainTrace` that
    already saw a forward of ``x`` (no forward of its own then). ``note`` says what was done."""
    g, why = trace.geometry(x.shape) if trace is not None else trace_geometry(model, layer, x[:1])
    if g is not None:
        return g, ""
    g, why_probe = probe_geometry(model, layer, x.shape[1:])
    if g is not None:
        return g, f"receptive field probed (trace failed: {why})"
    return None, f"receptive field unknown, map stretched to the input: trace failed ({why}); probe failed ({why_probe})"
