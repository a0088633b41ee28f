"""Building blocks shared by the models: a named convolution stack and a named MLP.

Every layer gets a stable, readable name (``conv1``, ``bn1``, ``relu1``, ``pool1``, ``fc1`` ...),
so that ``features.conv2`` means the same layer in the config, the checkpoint, the HDF5 store
and the figures.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from torch import nn


def conv_stack(
    in_channels: int,
    channels: Sequence[int],
    kernel_size: int = 3,
    pool_after: Sequence[int] = (),
    batchnorm: bool = True,
    dropout: float = 0.0,
) -> nn.Sequential:
    """``conv{i} -> bn{i} -> relu{i}`` for each entry of ``channels`` (1-based names).

    ``pool_after`` lists the block numbers followed by a 2x2 max pool (``pool{i}``) and, when
    ``dropout > 0``, a ``drop{i}``. Convolutions are padded to keep the spatial size.
    """
    layers: "OrderedDict[str, nn.Module]" = OrderedDict()
    prev = in_channels
    for i, ch in enumerate(channels, start=1):
        layers[f"conv{i}"] = nn.Conv2d(prev, ch, kernel_size, padding=kernel_size // 2, bias=not batchnorm)
        if batchnorm:
            layers[f"bn{i}"] = nn.BatchNorm2d(ch)
        layers[f"relu{i}"] = nn.ReLU()
        if i in pool_after:
            layers[f"pool{i}"] = nn.MaxPool2d(2, 2)
            if dropout > 0:
                layers[f"drop{i}"] = nn.Dropout(dropout)
        prev = ch
    return nn.Sequential(layers)


def mlp(in_features: int, hidden: Sequence[int], out_features: int, dropout: float = 0.0) -> nn.Sequential:
    """``flatten -> fc{i} -> relu_fc{i} [-> drop_fc{i}] ... -> out``."""
    layers: "OrderedDict[str, nn.Module]" = OrderedDict(flatten=nn.Flatten())
    prev = in_features
    for i, width in enumerate(hidden, start=1):
        layers[f"fc{i}"] = nn.Linear(prev, width)
        layers[f"relu_fc{i}"] = nn.ReLU()
        if dropout > 0:
            layers[f"drop_fc{i}"] = nn.Dropout(dropout)
        prev = width
    layers["out"] = nn.Linear(prev, out_features)
    return nn.Sequential(layers)


def pooled_size(image_size: int, n_pools: int) -> int:
    for _ in range(n_pools):
        image_size //= 2
    return image_size
