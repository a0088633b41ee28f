"""Splits, batching and DDP sharding of the in-memory datamodules."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.data import batches as batches_mod
from pipeline.data.batches import TensorBatches
from pipeline.data.datamodules import IdxDataModule, LinesDataModule, stratified_split
from tests.conftest import SHARED_DATASETS


def test_lines_course_split_is_stratified_60_40_and_disjoint(tmp_path):
    dm = LinesDataModule(per_class=20, cache_dir=str(tmp_path), progress=False, batch_size=32)
    dm.setup("fit")
    n = {k: len(getattr(dm, k)) for k in ("train", "val", "test")}
    assert n["train"] + n["val"] + n["test"] == 96 * 20
    assert n["test"] == 96 * 8  # 40% of every class
    for split in (dm.train, dm.val, dm.test):
        assert torch.bincount(split.labels, minlength=96).min() > 0  # every class in every split
    # no generated sample is in two splits
    idx = [set(dm.split_indices[k].tolist()) for k in ("train", "val", "test")]
    assert not (idx[0] & idx[1]) and not (idx[0] & idx[2]) and not (idx[1] & idx[2])
    assert len(idx[0] | idx[1] | idx[2]) == 96 * 20
    assert dm.test.masks is not None and dm.test.masks.shape == (n["test"], 28, 28)
    # masks still belong to their images after the split
    assert torch.equal(dm.test.masks, dm.test.images.amax(1) > 0)


def test_mnist_standard_and_course_splits():
    d = str(SHARED_DATASETS / "mnist")
    std = IdxDataModule(name="mnist", data_dir=d, val_size=5000)
    std.setup("fit")
    assert (len(std.train), len(std.val), len(std.test)) == (55000, 5000, 10000)
    course = IdxDataModule(name="mnist", data_dir=d, split="course")
    course.setup("fit")
    assert len(course.test) == 28000 and len(course.train) + len(course.val) == 42000
    assert course.train.images.dtype == torch.uint8 and course.train.images.shape[1:] == (1, 28, 28)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(batch_size=0), "data.batch_size=0 is invalid"),
    (dict(split="random"), "data.split='random' is invalid"),
    (dict(max_train_samples=-3), "data.max_train_samples=-3 is invalid"),
])
def test_bad_datamodule_arguments(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        IdxDataModule(name="mnist", **kwargs)


def test_tensor_batches_cover_everything_once_and_reshuffle_per_epoch():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    labels = torch.arange(10)
    loader = TensorBatches(images, labels, batch_size=4, shuffle=True, seed=1)
    assert len(loader) == 3
    epoch1 = torch.cat([y for _, y in loader])
    epoch2 = torch.cat([y for _, y in loader])
    assert sorted(epoch1.tolist()) == list(range(10)) and not torch.equal(epoch1, epoch2)
    x, y = next(iter(TensorBatches(images, labels, batch_size=4)))
    assert x.dtype == torch.float32 and torch.allclose(x[:, 0, 0, 0] * 255, y.float())


def test_tensor_batches_shard_across_ddp_ranks(monkeypatch):
    labels = torch.arange(11)
    images = torch.zeros(11, 1, 2, 2, dtype=torch.uint8)
    seen = []
    for rank in range(3):
        monkeypatch.setattr(batches_mod, "_rank_and_world", lambda rank=rank: (rank, 3))
        loader = TensorBatches(images, labels, batch_size=2, shuffle=True, seed=5)
        got = torch.cat([y for _, y in loader])
        assert len(got) == 4 and len(loader) == 2  # ceil(11/3) = 4 per rank, same count on every rank
        seen.append(got)
    assert set(torch.cat(seen).tolist()) == set(range(11))


def test_stratified_split_keeps_class_fractions():
    labels = np.repeat(np.arange(5), 10)
    a, b = stratified_split(labels, 0.6, np.random.default_rng(0))
    assert np.bincount(labels[a]).tolist() == [6] * 5 and np.bincount(labels[b]).tolist() == [4] * 5
