"""A toy dataset, added the way the README's "How to add a dataset" says: this one module, plus
its config file conf/dataset/stripes.yaml. Nothing in pipeline/ names it.

28x28 greyscale images of stripes, 2 classes (0: horizontal, 1: vertical), each with a random
period and phase; deterministic for ``seed``; 60 % train, 10 % validation, 30 % test.
"""
from __future__ import annotations

import numpy as np
import torch

from pipeline.data.datamodules import InMemoryDataModule, Split


class StripesDataModule(InMemoryDataModule):
    name = "stripes"
    channels = 1
    class_names = ["horizontal", "vertical"]

    def __init__(self, per_class: int = 50, seed: int = 0, name: str = "stripes", image_size: int = 28, **kwargs):
        super().__init__(**kwargs)
        self.per_class, self.seed, self.image_size = int(per_class), int(seed), int(image_size)
        self._check_declared()

    def load_splits(self) -> tuple[Split, Split, Split]:
        rng = np.random.default_rng(self.seed)
        n, s = 2 * self.per_class, self.image_size
        labels = np.repeat([0, 1], self.per_class)
        period = rng.integers(3, 8, n)[:, None, None]
        phase = rng.integers(0, 8, n)[:, None, None]
        rows, cols = np.mgrid[:s, :s]
        coord = np.where(labels[:, None, None] == 0, rows[None], cols[None])
        images = (((coord + phase) // period) % 2 * 255).astype(np.uint8)[:, None]
        order = rng.permutation(n)
        x, y = torch.from_numpy(images[order]), torch.from_numpy(labels[order])
        a, b = int(0.6 * n), int(0.7 * n)
        return Split(x[:a], y[:a]), Split(x[a:b], y[a:b]), Split(x[b:], y[b:])
