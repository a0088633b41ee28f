"""LightningDataModules for lines, mnist and fashion_mnist.

Each module loads its whole dataset once into uint8 tensors (``train``, ``val``, ``test``
splits, each a :class:`Split`), and serves batches with :class:`TensorBatches`. The
visualizer uses the same modules to pick test images (and, for lines, their ground-truth
line masks).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pytorch_lightning as pl
import torch

from pipeline.data.batches import TensorBatches

log = logging.getLogger(__name__)


@dataclass
class Split:
    images: torch.Tensor            # uint8 [N, C, H, W]
    labels: torch.Tensor            # int64 [N]
    masks: torch.Tensor | None = None  # bool [N, H, W] (lines only: which pixels the line covers)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> "Split":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Split(self.images[idx], self.labels[idx], None if self.masks is None else self.masks[idx])


def _check_positive(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"data.{name}={value!r} is invalid: it must be a positive integer")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"data.{name}={value!r} is invalid: it must lie strictly between 0 and 1")


def fit_val_test_indices(labels: np.ndarray, test_fraction: float, val_fraction: float,
                         seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified (fit, validation, test) indices: the test share first, then the validation share
    of the rest, both drawn with one ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = stratified_split(labels, 1.0 - test_fraction, rng)
    fit_pos, val_pos = stratified_split(labels[train_idx], 1.0 - val_fraction, rng)
    return train_idx[fit_pos], train_idx[val_pos], test_idx


def stratified_split(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (first, second): ``round(len * fraction)`` images in ``first``, shared among the
    classes in proportion (largest remainders), each class with at least one image on both sides
    when it has two or more."""
    classes, counts = np.unique(labels, return_counts=True)
    total = int(round(len(labels) * fraction))
    exact = counts * fraction
    quota = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - quota), kind="stable")[: max(total - quota.sum(), 0)]:
        quota[i] += 1
    quota = np.where(counts >= 2, np.clip(quota, 1, counts - 1), quota)
    first, second = [], []
    for c, k in zip(classes, quota):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        first.append(idx[:k])
        second.append(idx[k:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


class InMemoryDataModule(pl.LightningDataModule):
    """Common part: batching, splits held as tensors, class names."""

    name: str = ""
    channels: int = 1
    image_size: int = 28
    class_names: list[str] = []
    heads: dict[str, int] | None = None   # per-head class counts for multi-head models (lines only)

    def __init__(self, batch_size: int = 128, eval_batch_size: int | None = None, split_seed: int = 0,
                 channels: int | None = None, num_classes: int | None = None):
        """``channels`` / ``num_classes`` are the config's declared values (other configs
        interpolate them, e.g. the model's ``in_channels``); they must match the data."""
        super().__init__()
        self._declared = {"channels": channels, "num_classes": num_classes}
        _check_positive("batch_size", batch_size)
        _check_positive("eval_batch_size", eval_batch_size, allow_none=True)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or max(batch_size, 512))
        self.split_seed = int(split_seed)
        self.train: Split | None = None
        self.val: Split | None = None
        self.test: Split | None = None
        self.split_indices: dict[str, np.ndarray] = {}  # positions in the full dataset of each split

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _check_declared(self) -> None:
        for key, declared in self._declared.items():
            actual = getattr(self, key)
            if declared is not None and declared != actual:
                raise ValueError(f"data.{key}={declared} does not match dataset {self.name}, which has {actual}; "
                                 f"remove the override")

    def load_splits(self) -> tuple[Split, Split, Split]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train is None:
            self.train, self.val, self.test = self.load_splits()
            log.info("%s: %d train / %d val / %d test images", self.name, len(self.train), len(self.val), len(self.test))

    def train_dataloader(self):
        return TensorBatches(self.train.images, self.train.labels, self.batch_size, shuffle=True, seed=self.split_seed)

    def val_dataloader(self):
        return TensorBatches(self.val.images, self.val.labels, self.eval_batch_size)

    def test_dataloader(self):
        return TensorBatches(self.test.images, self.test.labels, self.eval_batch_size)

    def predict_dataloader(self):
        return self.test_dataloader()


class LinesDataModule(InMemoryDataModule):
    """The generated lines dataset (96 classes), course split 60% train / 40% test, stratified,
    with a validation slice carved from train. ``style`` is how the lines are drawn
    (:data:`pipeline.data.line_styles.STYLES`); with ``augment`` on (by default for ``course``), the training images are
    drawn with randomized factors (:class:`pipeline.data.line_styles.Augment`), the validation
    and test images in the style itself."""

    name = "lines"
    channels = 3

    def __init__(self, per_class: int = 1000, generator_seed: int = 0, image_size: int = 28,
                 margin: float = 1.0, test_fraction: float = 0.4, val_fraction: float = 0.1,
                 style: str = "sheet", augment=None,
                 cache_dir: str | None = None, progress: bool = True, name: str = "lines", **kwargs):
        super().__init__(**kwargs)
        from pipeline.data import lines_labels
        from pipeline.data.line_styles import Augment, get_style

        _check_positive("per_class", per_class)
        _check_fraction("test_fraction", test_fraction)
        _check_fraction("val_fraction", val_fraction)
        if per_class < 3:
            raise ValueError(f"data.per_class={per_class} is too small: each class needs at least 3 images "
                             "(train, val and test)")
        self.per_class, self.generator_seed = int(per_class), int(generator_seed)
        self.image_size, self.margin = int(image_size), float(margin)
        self.test_fraction, self.val_fraction = float(test_fraction), float(val_fraction)
        self.style = get_style(style).name
        self.augment = Augment.from_config(augment, get_style(style))
        self.cache_dir, self.progress = cache_dir, progress
        self.class_names = lines_labels.class_names()
        self.heads = dict(lines_labels.HEADS)
        self._check_declared()

    def load_splits(self):
        from pipeline.data.lines import generate_lines
        from pipeline.data.lines_labels import NUM_CLASSES
        from pipeline.data.lines_cache import load_or_generate_lines

        labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), self.per_class)
        rng = np.random.default_rng(self.split_seed)
        train_idx, test_idx = stratified_split(labels, 1.0 - self.test_fraction, rng)
        fit_idx, val_idx = stratified_split(labels[train_idx], 1.0 - self.val_fraction, rng)
        fit_idx, val_idx = train_idx[fit_idx], train_idx[val_idx]
        augmented = None
        if self.augment is not None:
            augmented = np.zeros(len(labels), dtype=bool)
            augmented[fit_idx] = True
        kw = dict(per_class=self.per_class, seed=self.generator_seed, image_size=self.image_size,
                  margin=self.margin, progress=self.progress, style=self.style, augment=self.augment,
                  augmented=augmented, pools=self._pools(len(labels), fit_idx, val_idx, test_idx))
        arrays = load_or_generate_lines(self.cache_dir, **kw) if self.cache_dir else generate_lines(**kw)
        full = Split(torch.from_numpy(arrays.images), torch.from_numpy(arrays.labels.astype(np.int64)),
                     torch.from_numpy(arrays.masks))
        self.split_indices = {"train": fit_idx, "val": val_idx, "test": test_idx}
        return full.subset(fit_idx), full.subset(val_idx), full.subset(test_idx)

    @staticmethod
    def _pools(n: int, fit_idx, val_idx, test_idx) -> np.ndarray:
        """0 train, 1 validation, 2 test: the course style gives each its own line positions."""
        pools = np.zeros(n, dtype=np.int64)
        pools[val_idx], pools[test_idx] = 1, 2
        return pools

    def render_params(self, split: str = "test"):
        """The drawing parameters (:class:`~pipeline.data.line_styles.RenderParams`) of a split's
        images in the style, in split order: change a field and :func:`~pipeline.data.line_styles.render`
        to redraw the same lines another way (the shortcut probe does). Validation and test images
        are drawn exactly so; training images, when augmented, were drawn with randomized factors."""
        from pipeline.data.line_styles import draw_params, get_style
        from pipeline.data.lines_labels import NUM_CLASSES

        if not self.split_indices:
            self.setup()
        labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), self.per_class)
        pools = self._pools(len(labels), *(self.split_indices[k] for k in ("train", "val", "test")))
        params = draw_params(labels, get_style(self.style), self.generator_seed, self.image_size, self.margin,
                             pools=pools)
        return params.subset(self.split_indices[split])


class IdxDataModule(InMemoryDataModule):
    """MNIST / Fashion-MNIST from IDX files (found, verified, or downloaded by
    :mod:`pipeline.data.mnist_files`).

    ``split="standard"``: the official 60,000 / 10,000 split, ``val_size`` images of train held
    out for validation. ``split="course"``: all 70,000 images re-split 60% train / 40% test
    (stratified), validation carved from train. ``max_train_samples`` / ``max_test_samples``
    take a stratified subset (for quick runs and tests).
    """

    channels = 1

    def __init__(self, name: str = "mnist", data_dir: str | None = None, download: bool = True,
                 mirrors: Sequence[str] | None = None, cache_dir: str | None = None,
                 split: str = "standard", val_size: int = 5000, test_fraction: float = 0.4,
                 max_train_samples: int | None = None, max_test_samples: int | None = None,
                 image_size: int = 28, **kwargs):
        super().__init__(**kwargs)
        from pipeline.data.idx_specs import SPECS

        if name not in SPECS:
            raise ValueError(f"unknown IDX dataset {name!r}; valid: {', '.join(SPECS)}")
        if split not in ("standard", "course"):
            raise ValueError(f"data.split={split!r} is invalid: use 'standard' (60,000/10,000) or 'course' (60%/40%)")
        _check_positive("val_size", val_size)
        _check_fraction("test_fraction", test_fraction)
        _check_positive("max_train_samples", max_train_samples, allow_none=True)
        _check_positive("max_test_samples", max_test_samples, allow_none=True)
        self.name = name
        self.data_dir, self.download, self.mirrors, self.cache_dir = data_dir, download, mirrors, cache_dir
        self.split, self.val_size, self.test_fraction = split, int(val_size), float(test_fraction)
        self.max_train_samples, self.max_test_samples = max_train_samples, max_test_samples
        self.class_names = list(SPECS[name].classes)
        if image_size != 28:
            raise ValueError(f"data.image_size={image_size} is invalid for {name}: its images are 28x28")
        self._check_declared()

    def load_splits(self):
        from pipeline.data.mnist_files import load_idx_dataset

        arrays = load_idx_dataset(self.name, data_dir=self.data_dir, download=self.download,
                                  mirrors=self.mirrors, cache_dir=self.cache_dir)
        images = np.concatenate([arrays.train_images, arrays.test_images])[:, None]  # [N,1,28,28]
        labels = np.concatenate([arrays.train_labels, arrays.test_labels]).astype(np.int64)
        n_train = len(arrays.train_labels)
        rng = np.random.default_rng(self.split_seed)
        if self.split == "standard":
            train_idx, test_idx = np.arange(n_train), np.arange(n_train, len(labels))
        else:
            train_idx, test_idx = stratified_split(labels, 1.0 - self.test_fraction, rng)
        if self.max_train_samples and self.max_train_samples < len(train_idx):
            train_idx = train_idx[stratified_split(labels[train_idx], self.max_train_samples / len(train_idx), rng)[0]]
        if self.max_test_samples and self.max_test_samples < len(test_idx):
            test_idx = test_idx[stratified_split(labels[test_idx], self.max_test_samples / len(test_idx), rng)[0]]
        val_fraction = min(self.val_size / len(train_idx), 0.5)
        fit_pos, val_pos = stratified_split(labels[train_idx], 1.0 - val_fraction, rng)
        full = Split(torch.from_numpy(images), torch.from_numpy(labels))
        self.split_indices = {"train": train_idx[fit_pos], "val": train_idx[val_pos], "test": test_idx}
        return full.subset(train_idx[fit_pos]), full.subset(train_idx[val_pos]), full.subset(test_idx)
