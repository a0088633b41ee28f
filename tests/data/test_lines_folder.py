"""dataset=lines_folder: the course's folders (or an export) read back, every bad input reported, the cache."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.data import lines_folder as lf
from pipeline.data.lines import export_jpegs, generate_lines
from pipeline.data.lines_labels import class_names
from pipeline.data.lines_folder import LinesFolderError, load_lines_folder, read_lines_folder
from pipeline.data.lines_folder_datamodule import LinesFolderDataModule
from pipeline.errors import CnnvisError

PER_CLASS = 3
NAMES = class_names()


@pytest.fixture(scope="module")
def generated():
    return {style: generate_lines(per_class=PER_CLASS, style=style, seed=1, progress=False)
            for style in ("course", "sheet")}


@pytest.fixture(scope="module")
def exported(generated, tmp_path_factory):
    """A valid folder in the course's layout (course style, 3 images per class), copied per test."""
    out = tmp_path_factory.mktemp("export") / "classes"
    export_jpegs(generated["course"], out)
    return out


@pytest.fixture
def folder(exported, tmp_path):
    dst = tmp_path / "classes"
    shutil.copytree(exported, dst)
    return dst


def _array_index(rel: str, label: int) -> int:
    """Position in the generated (class-major) arrays of an exported file: label * per_class + id."""
    return label * PER_CLASS + int(Path(rel).stem.rsplit("_", 1)[1])


def _save(path: Path, arr: np.ndarray, mode: str | None = None, fmt: str | None = None) -> None:
    im = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    im.save(path, format=fmt)


def _problem(root, *needles) -> str:
    with pytest.raises(LinesFolderError) as info:
        read_lines_folder(root)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, msg
    assert isinstance(info.value, CnnvisError) and isinstance(info.value, ValueError)
    return msg


# ---------------------------------------------------------------- round trip

@pytest.mark.parametrize("style", ["course", "sheet"])
@pytest.mark.parametrize("layout", ["folders", "flat"])
def test_export_and_read_back_round_trip(generated, tmp_path, style, layout):
    a = generated[style]
    paths = export_jpegs(a, tmp_path / "out", layout=layout)
    assert len(paths) == 96 * PER_CLASS
    if layout == "folders":
        assert {p.parent.name for p in paths} == set(NAMES)
        assert all(p.name.startswith(p.parent.name + "_") for p in paths)
    else:
        assert {p.parent for p in paths} == {tmp_path / "out"}
    r = read_lines_folder(tmp_path / "out")
    assert r.images.dtype == np.uint8 and r.images.shape == (96 * PER_CLASS, 3, 28, 28)
    assert r.labels.dtype == np.int64
    # sorted by class, then by id; the paths say where each image came from
    assert np.array_equal(r.labels, np.repeat(np.arange(96), PER_CLASS))
    assert r.paths[:2] == (["0_0_0_0/0_0_0_0_0.jpg", "0_0_0_0/0_0_0_0_1.jpg"] if layout == "folders"
                           else ["0_0_0_0_0.jpg", "0_0_0_0_1.jpg"])
    idx = np.array([_array_index(p, lab) for p, lab in zip(r.paths, r.labels)])
    assert np.array_equal(np.sort(idx), np.arange(len(a)))
    assert np.array_equal(a.labels[idx], r.labels)
    diff = np.abs(a.images[idx].astype(int) - r.images.astype(int))
    assert diff.mean() < 1.0 and diff.reshape(len(r), -1).mean(1).max() < 2.0  # JPEG quality 95, 4:4:4
    assert diff.max() <= 48


def test_export_rejects_an_unknown_layout(generated, tmp_path):
    with pytest.raises(ValueError, match="layout='nested' is invalid"):
        export_jpegs(generated["sheet"], tmp_path / "x", layout="nested")


def test_other_extensions_palette_images_and_hidden_files(folder):
    img = np.zeros((28, 28, 3), np.uint8)
    img[10:12, 5:20, 0] = 255
    _save(folder / "0_0_0_0" / "0_0_0_0_7.png", img, mode="P", fmt="PNG")       # palette: converted
    _save(folder / "0_0_0_0" / "0_0_0_0_8.JPEG", img, fmt="JPEG")
    (folder / ".DS_Store").write_bytes(b"\0junk")                                # hidden: ignored
    (folder / "0_0_0_0" / "._0_0_0_0_0.jpg").write_bytes(b"junk")
    r = read_lines_folder(folder)
    assert len(r) == 96 * PER_CLASS + 2
    k = r.paths.index("0_0_0_0/0_0_0_0_7.png")
    assert r.labels[k] == 0 and np.array_equal(r.images[k], img.transpose(2, 0, 1))
    assert "0_0_0_0/0_0_0_0_8.JPEG" in r.paths


# ---------------------------------------------------------------- bad input

def test_missing_root_and_root_that_is_a_file(tmp_path):
    _problem(tmp_path / "nope", "no such folder", "data.root=")
    (tmp_path / "f.jpg").write_bytes(b"x")
    _problem(tmp_path / "f.jpg", "is a file, not a folder")
    _problem(None, "pass data.root=DIR")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_bytes(b"x")
    _problem(tmp_path / "empty", "holds no image files", "Expected: class folders named L_W_A_C")


def test_misnamed_files(folder):
    img = np.asarray(Image.open(folder / "0_0_0_0" / "0_0_0_0_0.jpg"))
    _save(folder / "0_0_0_0" / "line.jpg", img)
    _save(folder / "0_0_0_0" / "0_0_12_0_1.jpg", img)
    _save(folder / "0_0_0_0" / "0_0_0_1_5.jpg", img)
    (folder / "0_0_0_0" / "notes.txt").write_text("hello")
    msg = _problem(folder, "4 problem(s)",
                   "0_0_0_0/line.jpg: file name does not parse as L_W_A_C_<id>",
                   "0_0_0_0/0_0_12_0_1.jpg: '0_0_12_0' is not a class: angle index 12 is out of range 0..11",
                   "0_0_0_0/0_0_0_1_5.jpg: class 0_0_0_1 in the file name differs from its class folder 0_0_0_0/",
                   "0_0_0_0/notes.txt: not an image file (.jpg, .jpeg or .png)",
                   "Expected: class folders named L_W_A_C")
    assert "0_0_0_0_0.jpg" not in msg  # only the bad files are listed


def test_folders_that_are_not_classes_and_files_beside_class_folders(folder, tmp_path):
    (folder / "2_0_0_0").mkdir()
    (folder / "misc").mkdir()
    shutil.copy(folder / "0_0_0_0" / "0_0_0_0_0.jpg", folder / "0_0_0_0_9.jpg")
    (folder / "0_0_0_0" / "sub").mkdir()
    _problem(folder, "2_0_0_0/: folder name is not a class (length index 2 is out of range 0..1)",
             "misc/: folder name is not a class", "0_0_0_0_9.jpg: a file next to the class folders",
             "0_0_0_0/sub/: a folder inside a class folder")
    # the parent of the class folders: the message says which folder to pass
    parent = folder.parent
    shutil.rmtree(folder / "misc")
    shutil.rmtree(folder / "2_0_0_0")
    _problem(parent, f"it holds class folders: pass data.root={folder}")


def test_unreadable_and_truncated_images(folder):
    (folder / "0_0_0_0" / "0_0_0_0_0.jpg").write_bytes(b"this is not a jpeg")
    good = (folder / "0_0_0_1" / "0_0_0_1_0.jpg").read_bytes()
    (folder / "0_0_0_1" / "0_0_0_1_0.jpg").write_bytes(good[: len(good) // 2])
    _problem(folder, "2 problem(s)", "0_0_0_0/0_0_0_0_0.jpg: cannot be read as an image",
             "0_0_0_1/0_0_0_1_0.jpg: cannot be read as an image")


def test_wrong_size_greyscale_and_four_channel_images(folder):
    _save(folder / "0_0_0_0" / "0_0_0_0_0.jpg", np.zeros((32, 30, 3), np.uint8))
    _save(folder / "0_0_0_1" / "0_0_0_1_0.jpg", np.zeros((28, 28), np.uint8))
    _save(folder / "0_0_1_0" / "0_0_1_0_0.png", np.zeros((28, 28, 4), np.uint8))
    _problem(folder, "0_0_0_0/0_0_0_0_0.jpg: 30x32 pixels, must be 28x28",
             "0_0_0_1/0_0_0_1_0.jpg: greyscale image (mode L)",
             "0_0_1_0/0_0_1_0_0.png: 4-channel image (mode RGBA)")


def test_class_folder_without_images(folder):
    for p in (folder / "1_1_11_1").iterdir():
        p.unlink()
    (folder / "1_1_11_1" / ".DS_Store").write_bytes(b"x")
    _problem(folder, "1_1_11_1/: class folder holds no images")


def test_every_problem_is_reported_at_once_and_long_lists_are_cut(folder):
    (folder / "0_0_0_0" / "0_0_0_0_0.jpg").write_bytes(b"garbage")
    _save(folder / "0_0_0_1" / "0_0_0_1_0.jpg", np.zeros((20, 20, 3), np.uint8))
    for i in range(30):
        shutil.copy(folder / "0_1_0_0" / "0_1_0_0_0.jpg", folder / "0_1_0_0" / f"bad{i}.jpg")
    msg = _problem(folder, "32 problem(s)", "0_0_0_0/0_0_0_0_0.jpg: cannot be read",
                   "0_0_0_1/0_0_0_1_0.jpg: 20x20 pixels", "... and 12 more")
    assert msg.count("does not parse") == 18  # 20 listed, the first two are the image problems


def test_flat_folder_problems(generated, tmp_path):
    export_jpegs(generated["sheet"], tmp_path / "flat", layout="flat", limit=1)
    (tmp_path / "flat" / "readme.md").write_text("x")
    (tmp_path / "flat" / "1_1_1_1_x.jpg").write_bytes(b"x")
    _problem(tmp_path / "flat", "readme.md: not an image file", "1_1_1_1_x.jpg: file name does not parse",
             "1_1_1_1_x.jpg: file name does not parse as L_W_A_C_<id> (five numbers joined by '_'); cannot be read")


def test_bad_files_write_no_cache(folder, tmp_path):
    (folder / "0_0_0_0" / "0_0_0_0_0.jpg").write_bytes(b"garbage")
    with pytest.raises(LinesFolderError, match="cannot be read as an image"):
        load_lines_folder(folder, cache_dir=tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] if (tmp_path / "cache").exists() else True


# ---------------------------------------------------------------- cache

def test_cache_is_used_and_a_changed_file_invalidates_it(folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_lines_folder(folder, cache_dir=cache)
    files = list(cache.glob("*.h5"))
    assert len(files) == 1
    ref = read_lines_folder(folder)
    assert np.array_equal(first.images, ref.images) and first.paths == ref.paths

    real_decode = lf._decode_files
    calls = []

    def counting(scan, progress=False):
        calls.append(1)
        return real_decode(scan, progress)

    monkeypatch.setattr(lf, "_decode_files", counting)
    second = load_lines_folder(folder, cache_dir=cache)
    assert calls == []  # loaded from the cache, nothing decoded
    assert np.array_equal(second.images, first.images) and np.array_equal(second.labels, first.labels)
    assert second.paths == first.paths

    # change one file's pixels (and time): the next load decodes again and sees the new image
    target = folder / "0_0_5_1" / "0_0_5_1_2.jpg"
    new = np.zeros((28, 28, 3), np.uint8)
    new[5:9, 5:9, 2] = 200
    _save(target, new, fmt="JPEG")
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    third = load_lines_folder(folder, cache_dir=cache)
    assert calls == [1]
    k = third.paths.index("0_0_5_1/0_0_5_1_2.jpg")
    assert np.array_equal(third.images, read_lines_folder(folder).images)  # the file's new pixels
    assert np.abs(third.images[k].astype(int) - new.transpose(2, 0, 1)).mean() < 3
    assert not np.array_equal(third.images[k], first.images[k])
    assert len(list(cache.glob("*.h5"))) == 2

    # a removed file also gives another digest
    target.unlink()
    n_calls = len(calls)
    assert len(load_lines_folder(folder, cache_dir=cache)) == 96 * PER_CLASS - 1
    assert len(calls) == n_calls + 1


# ---------------------------------------------------------------- datamodule

def test_datamodule_splits_like_lines(folder, tmp_path):
    dm = LinesFolderDataModule(root=str(folder), cache_dir=str(tmp_path / "cache"), progress=False,
                               test_fraction=0.4, batch_size=16)
    assert dm.name == "lines_folder" and dm.channels == 3 and dm.num_classes == 96
    assert dm.class_names == NAMES and list(dm.heads) == ["length", "width", "angle", "colour"]
    dm.setup("fit")
    n = 96 * PER_CLASS
    assert len(dm.train) + len(dm.val) + len(dm.test) == n
    assert len(dm.test) == round(n * 0.4)
    assert torch.bincount(dm.test.labels, minlength=96).min() >= 1  # stratified
    assert dm.test.masks is None and dm.test.images.dtype == torch.uint8
    idx = [set(dm.split_indices[k].tolist()) for k in ("train", "val", "test")]
    assert len(idx[0] | idx[1] | idx[2]) == n
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 3, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_test_fraction_one_is_every_image_and_cannot_train(folder):
    dm = LinesFolderDataModule(root=str(folder), test_fraction=1.0, progress=False)
    dm.setup("test")
    assert len(dm.test) == 96 * PER_CLASS and len(dm.train) == 0 and len(dm.val) == 0
    assert np.array_equal(dm.test.labels.numpy(), np.repeat(np.arange(96), PER_CLASS))
    with pytest.raises(LinesFolderError, match="python eval.py ckpt=PATH dataset=lines_folder"):
        dm.setup("fit")
    with pytest.raises(LinesFolderError, match="leaves no training or validation images"):
        dm.train_dataloader()


def test_missing_classes_stop_training_but_not_testing(folder):
    shutil.rmtree(folder / "1_1_11_1")
    shutil.rmtree(folder / "0_0_3_0")
    dm = LinesFolderDataModule(root=str(folder), progress=False)
    with pytest.raises(LinesFolderError, match=r"no images of 2 of the 96 classes \(0_0_3_0, 1_1_11_1\)"):
        dm.setup("fit")
    dm = LinesFolderDataModule(root=str(folder), test_fraction=1.0, progress=False)
    dm.setup("test")
    assert len(dm.test) == 94 * PER_CLASS


@pytest.mark.parametrize("kwargs,needle", [
    (dict(test_fraction=0.0), "data.test_fraction=0.0 is invalid"),
    (dict(test_fraction=1.5), "data.test_fraction=1.5 is invalid"),
    (dict(val_fraction=1.0), "data.val_fraction=1.0 is invalid"),
    (dict(image_size=32), "data.image_size=32 is invalid"),
    (dict(num_classes=10), "data.num_classes=10 does not match"),
])
def test_bad_datamodule_arguments(folder, kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        LinesFolderDataModule(root=str(folder), **kwargs)


def test_config_composes_and_requires_root(tmp_path):
    from omegaconf import OmegaConf

    from pipeline.config import check_required, validate_train_config
    from pipeline.errors import ConfigError
    from tests.conftest import compose_cfg

    cfg = compose_cfg(tmp_path, ["dataset=lines_folder", "model=multihead"])
    assert OmegaConf.is_missing(cfg.data, "root") and cfg.data.test_fraction == 0.4
    with pytest.raises(ConfigError, match="data.root is required: pass data.root=DIR"):
        check_required(cfg)
    cfg = compose_cfg(tmp_path, ["dataset=lines_folder", "model=multihead", f"data.root={tmp_path}",
                                 "data.test_fraction=1.0"])
    with pytest.raises(ConfigError, match="data.test_fraction=1.0 leaves no images to train on.*python eval.py"):
        validate_train_config(cfg)


# ---------------------------------------------------------------- exact copies

@pytest.fixture
def folder_with_copies(folder):
    """The folder, plus 1-4 byte-identical copies of every file (new ids): 3 distinct images per
    class shown by several files each, as the course's folders do."""
    rng = np.random.default_rng(0)
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        next_id = PER_CLASS
        for f in sorted(d.iterdir()):
            for _ in range(int(rng.integers(1, 5))):
                shutil.copyfile(f, d / f"{d.name}_{next_id}.jpg")
                next_id += 1
    return folder


def _contents(split) -> set[bytes]:
    return {x.numpy().tobytes() for x in split.images}


def test_find_duplicates_counts_copies_and_conflicts():
    a = np.zeros((6, 3, 2, 2), dtype=np.uint8)
    a[1, 0, 0, 0] = a[3, 0, 0, 0] = a[4, 0, 0, 0] = 9      # images: A B A B B C
    a[5, 2, 1, 1] = 7
    dup = lf.find_duplicates(a, labels=np.array([0, 1, 0, 1, 2, 3]))
    assert dup.groups.tolist() == [0, 1, 0, 1, 1, 2]
    assert (dup.files, dup.distinct, dup.copies, dup.with_copies, dup.most_copies, dup.conflicting) == (6, 3, 3, 2, 3, 1)
    assert "6 files show 3 distinct images: 3 files are exact copies" in dup.describe()
    assert "1 images appear under two or more classes" in dup.describe()
    assert lf.find_duplicates(a[[0, 1, 5]]).describe() == "3 files, all distinct"


def test_split_by_distinct_image_keeps_copies_in_one_split(folder_with_copies, caplog):
    dm = LinesFolderDataModule(root=str(folder_with_copies), progress=False, test_fraction=0.4)
    with caplog.at_level("INFO", logger="pipeline.data.lines_folder_datamodule"):
        dm.setup("fit")
    n_files = sum(1 for _ in folder_with_copies.glob("*/*.jpg"))
    assert dm.duplicates.files == n_files and dm.duplicates.distinct == 96 * PER_CLASS
    assert f"{n_files} files show {96 * PER_CLASS} distinct images" in caplog.text
    train, val, test = (_contents(s) for s in (dm.train, dm.val, dm.test))
    assert not (train & test) and not (train & val) and not (val & test)   # no content in two splits
    assert len(train) + len(val) + len(test) == 96 * PER_CLASS
    assert dm.distinct_images == {"train": len(train), "val": len(val), "test": len(test)}
    assert len(test) == round(96 * PER_CLASS * 0.4)          # the distinct images are split 60 / 40
    assert torch.bincount(dm.test.labels, minlength=96).min() >= 1


def test_split_by_file_leaks_copies_into_test(folder_with_copies):
    dm = LinesFolderDataModule(root=str(folder_with_copies), progress=False, split_by="file")
    dm.setup("fit")
    assert len(_contents(dm.train) & _contents(dm.test)) > 50    # what the course's random split does
    with pytest.raises(ValueError, match="data.split_by='random' is invalid"):
        LinesFolderDataModule(root=str(folder_with_copies), split_by="random")


def test_eval_summary_reports_distinct_images(folder_with_copies):
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from pipeline.training.evaluate import summary_screen

    dm = LinesFolderDataModule(root=str(folder_with_copies), progress=False, test_fraction=1.0)
    dm.setup("test")
    n = len(dm.test)
    summary = {"model": "multihead", "dataset": "lines_folder", "checkpoint": "x.ckpt", "trained_on": "lines",
               "test_images": n, "test": {}, "main_head": "aggregate", "run_dir": "out"}
    text = summary_screen(OmegaConf.create({"data": {"root": str(folder_with_copies)}}), summary, dm)
    assert f"images:     {n} (every image)" in text
    assert f"{96 * PER_CLASS} distinct: {n - 96 * PER_CLASS} files are exact copies" in text
    plain = summary_screen(OmegaConf.create({"data": {}}), summary, SimpleNamespace(train=None, val=None, test=dm.test))
    assert "distinct" not in plain
