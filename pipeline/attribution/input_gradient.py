"""The base of the methods that attribute to the input pixels (no target layer).

Every result keeps the input-space, per-channel attribution in ``attributions`` ``[N, C, H, W]``
and a channel-reduced map in ``maps`` ``[N, H, W]`` (``layer_maps`` is the same map). All heads
of a multi-head model share each forward pass (one backward per head); ``batch_size`` is the
number of rows of one forward pass (images, or noisy copies / integration steps for the
methods that average over several rows per image, see :meth:`InputGradient._integrate`).
With ``guided = True`` the forwards run through guided-backprop ReLUs (:func:`guided_relus`).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from pipeline.attribution.base import AttributionMethod, CallState, Scored
from pipeline.attribution.fast_backward import affine_batchnorm_grads

__all__ = ["InputGradient", "guided_relus", "affine_batchnorm_grads", "ROWS_PER_CHUNK"]

# rows (noisy copies, integration steps) materialized per chunk by the methods that run several rows
# per image; they still go through the model ``batch_size`` rows at a time
ROWS_PER_CHUNK = 8192


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


class InputGradient(AttributionMethod):
    """Shared pieces of the input-gradient methods; a subclass defines ``_chunk``."""

    needs_layer = False
    guided = False

    def _images_for_rows(self, per_image: int) -> int:
        """Images per chunk for a method running ``per_image`` rows per image: up to ``batch_size``
        images and :data:`ROWS_PER_CHUNK` rows, so the forwards on the images themselves (targets,
        baselines) run in big batches too; the rows' batches are the same whatever the chunk
        (``batch_size`` rows, in image order)."""
        return max(1, min(self.batch_size, ROWS_PER_CHUNK // max(1, per_image)))

    def _input_forward(self, leaf: torch.Tensor, state: CallState) -> dict[str, torch.Tensor]:
        """``{head: logits}`` of a forward recorded from ``leaf`` (through guided ReLUs if ``guided``;
        eval-mode batch norms with their cheap affine backward, :func:`affine_batchnorm_grads`)."""
        gates = guided_relus(self.model) if self.guided else contextlib.nullcontext()
        with gates, affine_batchnorm_grads(self.model):
            torch.set_grad_enabled(True)
            out, _ = self._forward(leaf, state)
        return self._outputs(out, state, len(leaf))

    def _clean(self, xb: torch.Tensor, sl: slice, state: CallState) -> dict[str, Scored]:
        """Targets, scores and probabilities on the images themselves (no graph)."""
        torch.set_grad_enabled(False)
        return self._scored(self._outputs(self._forward(xb, state)[0], state, len(xb)), state, sl)

    def _integrate(self, rows: torch.Tensor, per: int, row_w: torch.Tensor, scored: dict[str, Scored],
                   state: CallState, transform=None) -> dict[str, torch.Tensor]:
        """``{head: sum_r row_w[r] * transform(dScore/drow_r)}`` per image, for ``rows`` holding
        ``per`` consecutive rows per image, run ``batch_size`` rows at a time."""
        n = len(rows) // per
        img = torch.arange(n, device=rows.device).repeat_interleave(per)
        row_targets = {h: s.target[img] for h, s in scored.items()}
        acc = {h: rows.new_zeros((n,) + tuple(rows.shape[1:])) for h in scored}
        b = self.batch_size
        for j in range(0, len(rows), b):
            leaf = rows[j:j + b].detach().requires_grad_(True)
            outputs = self._input_forward(leaf, state)
            scores = {h: Scored(row_targets[h][j:j + b], row_targets[h][j:j + b](outputs[h]), None) for h in scored}
            for h, g in self._head_grads(scores, leaf, "the input"):
                if transform is not None:
                    g = transform(g)
                acc[h].index_add_(0, img[j:j + b], g * row_w[j:j + b].view(-1, 1, 1, 1))
        return acc
