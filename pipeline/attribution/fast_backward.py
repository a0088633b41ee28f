"""Cheaper backward passes with the same gradient, for the forwards the attribution methods record.

:func:`affine_batchnorm_grads`: an eval-mode batch norm is a per-channel affine map, so its
gradient is ``grad * w / sqrt(var + eps)``; the native batch-norm backward computes the same
several times slower on the CPU. Used by the input-gradient methods (every batch norm of the
model) and the CAMs (the batch norms above the target layer: below it no graph is recorded).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

__all__ = ["affine_batchnorm_grads"]


class _AffineGrad(torch.autograd.Function):
    """``out`` (already computed, detached) whose backward to ``x`` is ``grad * scale``.

    ``out`` is returned as it is, marked dirty (its history replaced, as an in-place op's would be):
    no copy of the activation."""

    @staticmethod
    def forward(ctx, x, out, scale):
        ctx.save_for_backward(scale)
        ctx.mark_dirty(out)
        return out

    @staticmethod
    def backward(ctx, g):
        scale, = ctx.saved_tensors
        return g * scale, None, None


@contextlib.contextmanager
def affine_batchnorm_grads(model: nn.Module):
    """Eval-mode batch norms with a cheap backward, for the forwards run inside the block.

    In eval mode a batch norm is the per-channel affine map ``x * w / sqrt(var + eps) + b``. A
    forward hook keeps the module's own output (the values are unchanged) but routes the
    gradient through ``grad * w / sqrt(var + eps)`` instead of the native batch-norm backward
    (several times slower on the CPU; the same gradient up to float rounding). Batch norms in
    training mode or without running statistics are left alone. Hooks are removed on exit.
    """
    def hook(module, inputs, out):
        x = inputs[0]
        if not (torch.is_grad_enabled() and x.requires_grad):
            return out
        scale = torch.rsqrt(module.running_var.detach() + module.eps)
        if module.weight is not None:
            scale = scale * module.weight.detach()
        return _AffineGrad.apply(x, out.detach(), scale.view((1, -1) + (1,) * (x.dim() - 2)).to(x.dtype))

    handles = []
    try:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.training and m.running_var is not None:
                handles.append(m.register_forward_hook(hook))
        yield len(handles)
    finally:
        for h in handles:
            h.remove()
