"""``dataset=image_folder data.root=DIR``: your own class-per-folder images (read and checked by
:mod:`pipeline.data.image_folder`)."""
from __future__ import annotations

import logging

import numpy as np
import torch

from pipeline.data.datamodules import InMemoryDataModule, Split, fit_val_test_indices
from pipeline.data.image_folder import (ImageFolderError, infer_channels, load_image_folder, raise_problems,
                                        scan_image_folder)

log = logging.getLogger(__name__)

__all__ = ["ImageFolderDataModule", "fill_inferred"]   # its config schema: pipeline.config.ImageFolderDataSchema


class ImageFolderDataModule(InMemoryDataModule):
    """Class folders of PNG/JPEG images of any size, resized to ``image_size`` (bilinear).

    ``channels``: 1 or 3 (images converted), or None to infer it (all greyscale: 1, all RGB: 3,
    a mix is refused). ``num_classes``: None (the number of class folders) or that number.
    Split like lines: ``test_fraction`` of every class for test (stratified, ``split_seed``),
    ``val_fraction`` of the rest for validation. The folder is scanned (names and image headers)
    when the module is built, so bad input fails before anything is trained or written.
    """

    name = "image_folder"

    def __init__(self, root: str | None = None, image_size: int = 64, channels: int | None = None,
                 num_classes: int | None = None, test_fraction: float = 0.2, val_fraction: float = 0.1,
                 cache_dir: str | None = None, progress: bool = True, name: str = "image_folder", **kwargs):
        super().__init__(channels=None, num_classes=None, **kwargs)
        if channels not in (None, 1, 3):
            raise ValueError(f"data.channels={channels!r} is invalid: use 1 (greyscale), 3 (RGB) or null (inferred)")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 4:
            raise ValueError(f"data.image_size={image_size!r} is invalid: it must be an integer >= 4")
        if not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"data.test_fraction={test_fraction!r} is invalid: it must lie strictly between 0 and 1")
        if not 0.0 < float(val_fraction) < 1.0:
            raise ValueError(f"data.val_fraction={val_fraction!r} is invalid: it must lie strictly between 0 and 1")
        self.name = name
        self.image_size = int(image_size)
        self.test_fraction, self.val_fraction = float(test_fraction), float(val_fraction)
        self.cache_dir, self.progress = cache_dir, progress
        self.scan = scan_image_folder(root)
        self.root = self.scan.root
        self.channels = infer_channels(self.scan, channels)
        raise_problems(self.scan)
        self.class_names = list(self.scan.class_names)
        if num_classes is not None and num_classes != len(self.class_names):
            raise ValueError(f"data.num_classes={num_classes} does not match data.root={self.root}, which has "
                             f"{len(self.class_names)} class folders ({', '.join(self.class_names)}); remove the override")
        self.paths: list[str] = []

    def load_splits(self):
        arrays = load_image_folder(self.scan, self.image_size, self.channels, self.cache_dir, self.progress)
        self.paths = list(arrays.paths)
        labels = arrays.labels
        counts = np.bincount(labels, minlength=len(self.class_names))
        few = [f"{n}/ ({c} image{'s' if c != 1 else ''})" for n, c in zip(self.class_names, counts) if c < 3]
        if few:
            raise ImageFolderError(f"data.root={self.root}: every class needs at least 3 images (train, validation "
                                   f"and test); too few in: {', '.join(few)}")
        fit_idx, val_idx, test_idx = fit_val_test_indices(labels, self.test_fraction, self.val_fraction,
                                                          self.split_seed)
        full = Split(torch.from_numpy(arrays.images), torch.from_numpy(labels))
        self.split_indices = {"train": fit_idx, "val": val_idx, "test": test_idx}
        return full.subset(fit_idx), full.subset(val_idx), full.subset(test_idx)


def fill_inferred(cfg, datamodule) -> None:
    """Put the values a dataset inferred (``data.channels``, ``data.num_classes``, ``data.image_size``)
    into the config where it left them null, so ``${data.channels}`` in a model config resolves."""
    from omegaconf import open_dict

    with open_dict(cfg.data):
        for key in ("channels", "num_classes", "image_size"):
            if cfg.data.get(key) is None and getattr(datamodule, key, None) is not None:
                cfg.data[key] = int(getattr(datamodule, key))

