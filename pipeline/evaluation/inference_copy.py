"""A copy of an eval-mode model for scoring many images without gradients (deletion/insertion).

Every ``Conv2d -> BatchNorm2d`` pair that follows each other inside an ``nn.Sequential`` is folded
into one convolution (``torch.nn.utils.fusion.fuse_conv_bn_eval``: the batch norm's running
statistics and affine parameters absorbed into the convolution's weight and bias) and the batch
norm becomes an ``nn.Identity``, so module names stay. In eval mode that is the same function up to
float rounding (about 1e-7 of the logits of the project's models); the batch norm's pass over the
activations, a third of a forward on the CPU, is gone (docs/evaluation.md measures it).

The original model is never changed. A model in train mode, or one without such pairs, is
returned as it is (not copied).
"""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["folded_copy", "foldable_pairs"]


def foldable_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(conv name, batch-norm name)`` of every adjacent Conv2d -> BatchNorm2d in a Sequential."""
    pairs = []
    for prefix, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats \
                    and bn.num_features == conv.out_channels:
                pairs.append((f"{prefix}.{a}" if prefix else a, f"{prefix}.{b}" if prefix else b))
    return pairs


def folded_copy(model: nn.Module) -> nn.Module:
    """``model`` with its Conv2d -> BatchNorm2d pairs folded (a deep copy), or ``model`` itself
    when it is in train mode or has no such pair."""
    if model.training or not foldable_pairs(model):
        return model
    work = copy.deepcopy(model)
    for conv_name, bn_name in foldable_pairs(work):
        parent_name, _, conv_key = conv_name.rpartition(".")
        parent = work.get_submodule(parent_name) if parent_name else work
        bn_key = bn_name.rpartition(".")[2]
        parent._modules[conv_key] = fuse_conv_bn_eval(parent._modules[conv_key], parent._modules[bn_key])
        parent._modules[bn_key] = nn.Identity()
    for p in work.parameters():
        p.requires_grad_(False)
    return work.eval()
