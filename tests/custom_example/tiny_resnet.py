"""A small residual CNN as a user would write it: in-place ReLUs, a skip connection, no
``features`` attribute, no ``head_classes``; plain logits (or a dict of them with ``heads=``)."""
from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.out_relu(y + x)


class TinyResNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 3, width: int = 8, heads: list | None = None):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(2))
        self.block = ResidualBlock(width)
        self.last_conv = nn.Conv2d(width, width, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)
        self.head_names = list(heads or [])

    def forward(self, x: torch.Tensor):
        z = self.pool(self.act(self.last_conv(self.block(self.stem(x))))).flatten(1)
        logits = self.fc(z)
        return {h: logits for h in self.head_names} if self.head_names else logits


class NotLogits(nn.Module):
    """Returns a feature map, not logits: the pipeline must refuse it with a clear error."""

    def __init__(self, in_channels: int = 3, **_):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3)

    def forward(self, x):
        return self.conv(x)
