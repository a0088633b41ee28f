"""dataset=image_folder: class folders of any-size grey/RGB images, resized, channels inferred or converted, cached."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from pipeline.data import image_folder as imf
from pipeline.data.image_folder import ImageFolderError
from pipeline.data.image_folder_datamodule import ImageFolderDataModule


def _folder(root, sizes=((40, 30), (64, 64), (20, 50)), mode="RGB", per_class=4):
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            w, h = sizes[i % len(sizes)]
            arr = np.full((h, w, 3), 200 if c == "a" else 40, np.uint8)
            Image.fromarray(arr).convert(mode).save(root / c / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def test_any_size_is_resized_and_rgb_inferred(tmp_path):
    dm = ImageFolderDataModule(root=str(_folder(tmp_path / "f")), image_size=16, progress=False)
    assert dm.channels == 3 and dm.class_names == ["a", "b"] and dm.num_classes == 2
    dm.setup("fit")
    images = np.concatenate([dm.train.images.numpy(), dm.val.images.numpy(), dm.test.images.numpy()])
    assert images.shape == (8, 3, 16, 16) and images.dtype == np.uint8
    assert set(np.unique(images)) <= set(range(35, 206))  # flat images stay flat through bilinear resizing
    assert len(dm.test) >= 2 and set(dm.test.labels.tolist()) == {0, 1}  # stratified


def test_grey_is_inferred_and_channels_convert(tmp_path):
    root = _folder(tmp_path / "g", mode="L")
    assert ImageFolderDataModule(root=str(root), image_size=8).channels == 1
    dm = ImageFolderDataModule(root=str(root), image_size=8, channels=3, progress=False)
    dm.setup("fit")
    x = dm.train.images
    assert x.shape[1] == 3 and bool((x[:, 0] == x[:, 1]).all())
    rgb = _folder(tmp_path / "c")
    dm = ImageFolderDataModule(root=str(rgb), image_size=8, channels=1, progress=False)
    dm.setup("fit")
    assert dm.train.images.shape[1] == 1


def test_a_grey_rgb_mix_is_listed_unless_channels_are_given(tmp_path):
    root = _folder(tmp_path / "m")
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(root / "b" / "grey.png")
    with pytest.raises(ImageFolderError, match=r"b/grey.png: greyscale image in a folder of mostly RGB images.*"
                                               r"data.channels=1 or data.channels=3"):
        ImageFolderDataModule(root=str(root))
    assert ImageFolderDataModule(root=str(root), channels=3).channels == 3


def test_bad_arguments_and_too_few_images(tmp_path):
    root = _folder(tmp_path / "f", per_class=2)
    with pytest.raises(ValueError, match="data.channels=4 is invalid"):
        ImageFolderDataModule(root=str(root), channels=4)
    with pytest.raises(ValueError, match="data.num_classes=5 does not match"):
        ImageFolderDataModule(root=str(root), num_classes=5)
    with pytest.raises(ImageFolderError, match="no such folder"):
        ImageFolderDataModule(root=str(tmp_path / "nope"))
    with pytest.raises(ImageFolderError, match=r"at least 3 images.*a/ \(2 images\)"):
        ImageFolderDataModule(root=str(root), progress=False).setup("fit")


def test_decoded_once_then_cached_and_a_changed_file_read_again(tmp_path, monkeypatch):
    root, cache = _folder(tmp_path / "f"), tmp_path / "cache"
    first = ImageFolderDataModule(root=str(root), image_size=8, cache_dir=str(cache), progress=False)
    first.setup("fit")
    calls = []
    real = imf.decode_files
    monkeypatch.setattr(imf, "decode_files", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = ImageFolderDataModule(root=str(root), image_size=8, cache_dir=str(cache), progress=False)
    again.setup("fit")
    assert calls == [] and bool((again.train.images == first.train.images).all())
    target = root / "a" / "0.jpg"
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(target)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    ImageFolderDataModule(root=str(root), image_size=8, cache_dir=str(cache), progress=False).setup("fit")
    assert calls == [1] and len(list(cache.glob("*.h5"))) == 2


def test_config_composes(tmp_path):
    from omegaconf import OmegaConf

    from tests.conftest import compose_cfg

    cfg = compose_cfg(tmp_path, ["dataset=image_folder", "model=custom"])
    assert OmegaConf.is_missing(cfg.data, "root") and cfg.data.channels is None and cfg.data.image_size == 64
    assert OmegaConf.is_missing(cfg.model.net, "_target_")
