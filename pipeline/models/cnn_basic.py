"""cnn_basic: the course's fixed architecture.

conv 7x7, 32 filters, stride 1 -> ReLU -> batch norm -> 2x2 max pool, stride 2
-> fully connected (1,024 units) -> ReLU -> classifier.  (No padding: 28 -> 22 -> 11.)
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from pipeline.models.blocks import mlp


class CNNBasic(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 conv_channels: int = 32, kernel_size: int = 7, hidden: int = 1024):
        super().__init__()
        self.features = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(in_channels, conv_channels, kernel_size, stride=1),
            relu1=nn.ReLU(),
            bn1=nn.BatchNorm2d(conv_channels),
            pool1=nn.MaxPool2d(2, 2),
        ))
        side = (image_size - kernel_size + 1) // 2
        self.classifier = mlp(conv_channels * side * side, [hidden], num_classes)
        self.head_classes = {"class": num_classes}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
