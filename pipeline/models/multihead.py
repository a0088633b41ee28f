"""multihead: a shared feature network and one head per line variation (lines dataset only).

Default: conv1 (16) -> conv2 (24) at 28x28 -> pool -> conv3 (64) at 14x14, each conv with BN
and ReLU; every head reads the channel means of conv3's block (``features.gap``). Why this
shape (measured with ``python visualize.py job=evaluate``, see the README): Grad-CAM at conv3
points at the line, because conv3's units see a small neighbourhood (10 px) at a 2 px grid;
and the position-free average pool makes each head's Grad-CAM weights depend on the head, so
the maps change when the head is re-initialized (the randomization sanity check). The older
7x7 layout (``channels=[16,32,64] pool_after=[1,2] global_pool=false``: pool after conv1 and
conv2, the 7x7 map flattened into the heads) trains as accurately but its angle-head Grad-CAM
peaks beside thin lines and survives randomizing the head.

``forward`` returns a dict ``{head: logits}`` in the order length, width, angle, colour.
Binary heads (length, width, colour) end in one unit: its sigmoid is the probability of the
label 1 (long / thick / blue), trained with binary cross-entropy (``BCEWithLogitsLoss``, the
sigmoid fused into the loss for numerical stability). The angle head ends in 12 units
(softmax + cross-entropy).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from pipeline.data.lines_labels import HEADS
from pipeline.models.blocks import conv_stack, mlp, pooled_size


class MultiHead(nn.Module):
    def __init__(self, in_channels: int = 3, image_size: int = 28,
                 channels: Sequence[int] = (16, 24, 64), kernel_size: int = 3,
                 pool_after: Sequence[int] = (2,), head_hidden: Sequence[int] = (128,),
                 dropout: float = 0.0, heads: Mapping[str, int] | None = None, global_pool: bool = True):
        super().__init__()
        heads = dict(heads or HEADS)  # the lines vocabulary
        self.features = conv_stack(in_channels, channels, kernel_size, pool_after, True, 0.0)
        if global_pool:  # every head sees the channel means: position-free, like the lines' labels
            self.features.add_module("gap", nn.AdaptiveAvgPool2d(1))
            flat = channels[-1]
        else:
            side = pooled_size(image_size, len(pool_after))
            flat = channels[-1] * side * side
        self.heads = nn.ModuleDict({
            name: mlp(flat, head_hidden, 1 if n == 2 else n, dropout) for name, n in heads.items()
        })
        self.head_classes = heads

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.features(x)
        return {name: head(shared) for name, head in self.heads.items()}
