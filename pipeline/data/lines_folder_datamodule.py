"""``dataset=lines_folder``: the lines classes read from image files (the folders are read and
checked by :mod:`pipeline.data.lines_folder`)."""
from __future__ import annotations

import logging

import numpy as np
import torch

from pipeline.data import lines_labels
from pipeline.data.datamodules import InMemoryDataModule, Split, fit_val_test_indices
from pipeline.data.lines_folder import (IMAGE_SIZE, MAX_LISTED, LinesFolderError, check_root, find_duplicates,
                                        load_lines_folder)

log = logging.getLogger(__name__)

__all__ = ["LinesFolderDataModule"]


class LinesFolderDataModule(InMemoryDataModule):
    """The lines dataset read from image files (``dataset=lines_folder data.root=DIR``).

    Same 96 classes and heads as ``lines`` (so the multihead model trains and is evaluated on
    it); no ground-truth masks. Split like lines: ``test_fraction`` of every class for test
    (stratified, ``split_seed``), ``val_fraction`` of the rest for validation.
    ``test_fraction=1.0`` makes every image a test image and leaves train and validation empty:
    for ``eval.py`` only, training refuses it. Training also needs every class in the folder.

    Exact copies (the course's folders show each image 4-37 times) are found and reported;
    ``split_by="distinct"`` (the default) splits the distinct images, every copy following its
    image, so no image is in two splits; ``split_by="file"`` splits the files as if they were all
    different (the course's own random split: copies of test images are trained on).
    """

    name = "lines_folder"
    channels = 3

    def __init__(self, root: str | None = None, test_fraction: float = 0.4, val_fraction: float = 0.1,
                 cache_dir: str | None = None, progress: bool = True, image_size: int = IMAGE_SIZE,
                 name: str = "lines_folder", split_by: str = "distinct", **kwargs):
        super().__init__(**kwargs)
        self.root = check_root(root)
        if not 0.0 < float(test_fraction) <= 1.0:
            raise ValueError(f"data.test_fraction={test_fraction!r} is invalid: it must lie in (0, 1] "
                             f"(1.0 = every image is a test image, for eval.py)")
        if not 0.0 < float(val_fraction) < 1.0:
            raise ValueError(f"data.val_fraction={val_fraction!r} is invalid: it must lie strictly between 0 and 1")
        if split_by not in ("distinct", "file"):
            raise ValueError(f"data.split_by={split_by!r} is invalid: use 'distinct' (copies of an image stay in one "
                             f"split) or 'file' (every file drawn on its own, copies may leak into test)")
        self.split_by = split_by
        if image_size != IMAGE_SIZE:
            raise ValueError(f"data.image_size={image_size} is invalid for lines_folder: its images are 28x28")
        self.test_fraction, self.val_fraction = float(test_fraction), float(val_fraction)
        self.cache_dir, self.progress = cache_dir, progress
        self.image_size = IMAGE_SIZE
        self.class_names = lines_labels.class_names()
        self.heads = dict(lines_labels.HEADS)
        self.paths: list[str] = []
        self.duplicates = None           # pipeline.data.lines_folder.Duplicates, after setup
        self.distinct_images: dict[str, int] = {}   # distinct images per split, after setup
        self._check_declared()

    def load_splits(self):
        arrays = load_lines_folder(self.root, self.cache_dir, self.progress)
        self.paths = list(arrays.paths)
        labels = arrays.labels
        dup = self.duplicates = find_duplicates(arrays.images, labels)
        if dup.copies:
            log.info("lines_folder %s: %s; split by %s", self.root, dup.describe(),
                     "distinct image" if self.split_by == "distinct" else "file (copies can be in two splits)")
        if self.test_fraction >= 1.0:
            fit_idx = val_idx = np.empty(0, dtype=np.int64)
            test_idx = np.arange(len(labels))
        elif self.split_by == "distinct":
            first = np.unique(dup.groups, return_index=True)[1]      # one file per distinct image, in group order
            parts = fit_val_test_indices(labels[first], self.test_fraction, self.val_fraction, self.split_seed)
            fit_idx, val_idx, test_idx = (np.flatnonzero(np.isin(dup.groups, p)) for p in parts)
        else:
            fit_idx, val_idx, test_idx = fit_val_test_indices(labels, self.test_fraction, self.val_fraction,
                                                              self.split_seed)
        self.distinct_images = {k: int(len(np.unique(dup.groups[idx])))
                                for k, idx in (("train", fit_idx), ("val", val_idx), ("test", test_idx))}
        full = Split(torch.from_numpy(arrays.images), torch.from_numpy(labels))
        self.split_indices = {"train": fit_idx, "val": val_idx, "test": test_idx}
        return full.subset(fit_idx), full.subset(val_idx), full.subset(test_idx)

    def test_copied_in_training(self):
        """bool ``[test files]``: the file shows an image that a training file shows too (only
        possible with ``split_by="file"``); see :mod:`pipeline.training.leak_check`."""
        if self.duplicates is None or not hasattr(self, "split_indices"):
            return None
        groups = self.duplicates.groups
        return np.isin(groups[self.split_indices["test"]], groups[self.split_indices["train"]])

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if stage in ("fit", "validate"):
            self.check_trainable()

    def check_trainable(self) -> None:
        """Raise a clear error when this folder cannot train a model: no training split
        (``test_fraction=1.0``) or classes without any image."""
        if self.train is None or len(self.train) == 0 or len(self.val) == 0:
            raise LinesFolderError(
                f"data.root={self.root} with data.test_fraction={self.test_fraction:g} leaves no training or "
                f"validation images. test_fraction=1.0 is for testing a trained checkpoint on every image: "
                f"python eval.py ckpt=PATH dataset=lines_folder data.root={self.root} data.test_fraction=1.0")
        present = set(torch.cat([self.train.labels, self.val.labels, self.test.labels]).unique().tolist())
        missing = [name for c, name in enumerate(self.class_names) if c not in present]
        if missing:
            shown = ", ".join(missing[:MAX_LISTED]) + (f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else "")
            raise LinesFolderError(
                f"data.root={self.root} has no images of {len(missing)} of the {len(self.class_names)} classes "
                f"({shown}): training needs every class. Add them, or test a trained checkpoint on these images "
                f"with python eval.py ckpt=PATH dataset=lines_folder data.root={self.root} data.test_fraction=1.0")

    def train_dataloader(self):
        if self.train is None or len(self.train) == 0:
            self.check_trainable()
        return super().train_dataloader()
