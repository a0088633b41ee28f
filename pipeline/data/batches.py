"""Batches straight from in-memory tensors.

The datasets here are small enough to live in memory as uint8 tensors, so a batch is one
``index_select`` plus one conversion to float: no per-sample ``__getitem__``, no collate, no
worker processes. ``TensorBatches`` is a plain iterable with ``__len__``, which Lightning
accepts wherever it takes a DataLoader. Under DDP each process takes its own shard of the
(shuffled) order, padded so that every process gets the same number of batches.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def to_float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N,C,H,W] in 0..255 -> float32 in [0, 1] (the models' input range)."""
    return images.to(torch.float32).div_(255.0)


class TensorBatches:
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False):
        if len(images) != len(labels):
            raise ValueError(f"images ({len(images)}) and labels ({len(labels)}) differ in length")
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.epoch = 0

    def _shard_size(self) -> int:
        _, world = _rank_and_world()
        return math.ceil(len(self.images) / world)

    def __len__(self) -> int:
        n = self._shard_size()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self) -> torch.Tensor:
        n = len(self.images)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=g)
            self.epoch += 1
        else:
            order = torch.arange(n)
        rank, world = _rank_and_world()
        if world > 1:
            total = self._shard_size() * world
            if total > n:  # pad by repeating the start, as DistributedSampler does
                order = torch.cat([order, order[: total - n]])
            order = order[rank::world]
        return order

    def __iter__(self):
        order = self._order()
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield to_float_images(self.images[idx]), self.labels[idx]
