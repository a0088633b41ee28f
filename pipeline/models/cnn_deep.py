"""cnn_deep: the project's stronger classifier.

Small 3x3 filters, four conv blocks with batch norm, two max pools, dropout after each pool and
in the classifier. Trained with AdamW (weight decay) and a cosine learning-rate decay (see
conf/model/cnn_deep.yaml).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from pipeline.models.blocks import conv_stack, mlp, pooled_size


class CNNDeep(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 channels: Sequence[int] = (32, 32, 64, 64), kernel_size: int = 3,
                 pool_after: Sequence[int] = (2, 4), hidden: Sequence[int] = (256,),
                 conv_dropout: float = 0.1, dropout: float = 0.3):
        super().__init__()
        self.features = conv_stack(in_channels, channels, kernel_size, pool_after, True, conv_dropout)
        side = pooled_size(image_size, len(pool_after))
        self.classifier = mlp(channels[-1] * side * side, hidden, num_classes, dropout)
        self.head_classes = {"class": num_classes}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
