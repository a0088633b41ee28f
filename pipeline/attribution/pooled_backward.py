"""The gradient at a CAM's layer written by hand where the layer is followed by a pooled chain.

Many classifiers end their features in ``layer -> [BatchNorm2d] -> [ReLU] -> global average
pool`` and read only the pooled vector ``z`` ``[N, C]`` (the project's MultiHead at
``features.conv3``). There ``dScore/dA = u[:, :, None, None] * s * mask / (h * w)`` exactly, with
``u = dScore/dz`` (a backward through the heads only), ``s`` the eval-mode batch norm's
per-channel scale ``w / sqrt(var + eps)`` and ``mask = ReLU output > 0``: one cheap multiply
instead of three full-size backward ops per head, and Grad-CAM's weights ``mean_hw(dScore/dA) = u *
s * mean_hw(mask) / (h * w)`` need no full-size tensor at all.

:class:`PooledChain` watches one forward (hooks on the modules right after the layer) and says
whether it applies: modules of exactly these types (eval-mode ``BatchNorm2d`` with running
statistics, ``ReLU``, ``AdaptiveAvgPool2d(1)``), each fed the previous one's output (tensor
identity), no forward hooks of anyone else's on them, and no score depending on ``A`` except through ``z``
(checked on the autograd graph). Otherwise the caller uses autograd; the graph is always recorded,
so nothing is redone. ``closed_form_backward=False`` on a CAM switches it off.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["PooledChain", "PooledGrad", "likely_pooled_chain"]


class _SharedMask:
    """The ReLU's 0/1 mask in the gradient's dtype, made on first use and shared by every head
    (Grad-CAM never needs it: its weights use only the mask's spatial mean)."""

    def __init__(self, active: torch.Tensor, dtype: torch.dtype):
        self.active, self.dtype, self._mask = active, dtype, None

    def get(self) -> torch.Tensor:
        if self._mask is None:
            self._mask = (self.active > 0).to(self.dtype)  # 0/1: one exact multiply per head
        return self._mask


@dataclass
class PooledGrad:
    """``dScore/dA = coeff[:, :, None, None] * mask`` without materializing it unless asked."""

    coeff: torch.Tensor                 # [n, C]: u * s / (h * w)
    shared_mask: _SharedMask | None     # the ReLU's mask [n, C, h, w] (None: no ReLU, all ones)
    frac: torch.Tensor | None           # [n, C]: mean_hw(mask)
    shape: tuple

    @property
    def mask(self) -> torch.Tensor | None:
        return None if self.shared_mask is None else self.shared_mask.get()

    def dense(self, rows=None) -> torch.Tensor:
        c = self.coeff if rows is None else self.coeff[rows]
        if self.shared_mask is None:
            shape = (len(c),) + tuple(self.shape[1:])
            return c[:, :, None, None].expand(shape).clone()
        m = self.mask if rows is None else self.mask[rows]
        return c[:, :, None, None] * m

    def mean_hw(self) -> torch.Tensor:
        return self.coeff if self.frac is None else self.coeff * self.frac

    def zero_rows(self, rows) -> torch.Tensor:
        """Bool ``[len(rows)]``: whether ``dense(rows)`` is zero everywhere, without making it: a
        product ``coeff * mask`` is non-zero where a channel has ``coeff != 0`` and an active
        position (``frac > 0``), or a non-finite ``coeff`` (``inf * 0`` is NaN)."""
        c = self.coeff[rows]
        live = c != 0
        if self.frac is not None:
            live = live & ((self.frac[rows] > 0) | ~torch.isfinite(c))
        return ~live.any(1)


def _pool_to_one(m: nn.Module) -> bool:
    size = m.output_size
    return size in (1, (1, 1), [1, 1])


def _kind(m: nn.Module) -> str | None:
    t = type(m)
    if t is nn.BatchNorm2d and not m.training and m.running_var is not None:
        return "bn"
    if t is nn.ReLU:
        return "relu"
    if t is nn.AdaptiveAvgPool2d and _pool_to_one(m):
        return "pool"
    return None


def likely_pooled_chain(model: nn.Module, layer: nn.Module) -> list[nn.Module]:
    """The modules right after ``layer`` in its parent ``nn.Sequential`` that may form the chain
    (``[bn] [relu] pool``), or ``[]``: a static guess, confirmed by :class:`PooledChain` on the forward."""
    for parent in model.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        kids = list(parent)
        idx = next((i for i, k in enumerate(kids) if k is layer), None)
        if idx is None:
            continue
        chain, order = [], ("bn", "relu", "pool")
        pos = 0
        for k in kids[idx + 1:]:
            kind = _kind(k)
            if kind is None or kind not in order[pos:]:
                return []
            pos = order.index(kind) + 1
            chain.append(k)
            if kind == "pool":
                return chain
        return []
    return []


class PooledChain:
    """Hooks on ``modules`` (from :func:`likely_pooled_chain`) during one forward; afterwards
    :meth:`grads` gives every head's :class:`PooledGrad`, or None where autograd must be used."""

    def __init__(self, modules: list[nn.Module]):
        self.modules = modules
        self.handles = []
        self.steps: list[tuple[str, nn.Module]] = []
        self.start: torch.Tensor | None = None   # the tensor the layer handed on
        self.cur: torch.Tensor | None = None
        self.relu_out: torch.Tensor | None = None
        self.z: torch.Tensor | None = None
        # forward hooks already on the chain (the caller's affine_batchnorm_grads' on a batch norm
        # aside) may change its outputs: then the formula does not hold. Hooks added after ours
        # (the receptive-field trace) only look.
        self.broken = any(len(m._forward_hooks) > (1 if _kind(m) == "bn" else 0) for m in modules)
        for m in modules:
            self.handles.append(m.register_forward_hook(self._hook))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def begin(self, handed_on: torch.Tensor) -> None:
        self.start = self.cur = handed_on

    def _hook(self, module, inputs, out):
        if self.broken or self.z is not None:
            self.broken = True  # a module of the chain ran again
            return None
        if self.cur is None or not inputs or inputs[0] is not self.cur:
            self.broken = True
            return None
        kind = _kind(module)
        self.steps.append((kind, module))
        self.cur = out
        if kind == "relu":
            self.relu_out = out
        elif kind == "pool":
            self.z = out
        return None

    def grads(self, scores: dict[str, torch.Tensor], a: torch.Tensor) -> dict[str, PooledGrad] | None:
        """``{head: PooledGrad}`` if the chain ran as expected and every score reaches ``a`` only
        through the pooled ``z``; else None."""
        if self.broken or self.z is None or not self.z.requires_grad or a.grad_fn is not None:
            return None
        if not all(s.requires_grad for s in scores.values()):
            return None  # autograd says which head does not depend on the layer
        if any(_reaches(s, a, self.z) for s in scores.values()):
            return None
        n, c, h, w = a.shape
        scale = torch.ones(c, dtype=a.dtype, device=a.device)
        for kind, m in self.steps:
            if kind == "bn":
                s = torch.rsqrt(m.running_var.detach() + m.eps)
                if m.weight is not None:
                    s = s * m.weight.detach()
                scale = scale * s.to(a.dtype)
        shared = frac = None
        if self.relu_out is not None:
            active = self.relu_out.detach()
            shared = _SharedMask(active, a.dtype)
            # mean_hw(mask): the ReLU's output is >= 0, so its sign is the mask; the pool's sums of 0/1
            # are exact integers, so this equals count / (h * w) bit for bit, in the layout's fast kernel
            frac = torch.nn.functional.adaptive_avg_pool2d(torch.sign(active), 1).reshape(n, c).to(a.dtype)
        z = self.z
        res = {}
        names = list(scores)
        for j, name in enumerate(names):
            u, = torch.autograd.grad(scores[name].sum(), z, retain_graph=True, allow_unused=True)
            u = torch.zeros((n, c), dtype=a.dtype, device=a.device) if u is None else u.reshape(n, c)
            # (u / hw) * s: the order autograd rounds in (the mean's backward, then the norm's scale)
            res[name] = PooledGrad(coeff=(u / (h * w)) * scale, shared_mask=shared, frac=frac, shape=tuple(a.shape))
        return res


def _reaches(score: torch.Tensor, a: torch.Tensor, z: torch.Tensor) -> bool:
    """Whether ``score``'s graph reaches the leaf ``a`` other than through ``z``'s node."""
    stop = z.grad_fn
    seen = set()
    todo = [score.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node is stop or node in seen:
            continue
        seen.add(node)
        if getattr(node, "variable", None) is a:
            return True
        todo.extend(nxt for nxt, _ in node.next_functions)
    return False
