"""What MNIST and Fashion-MNIST are made of: their four IDX files, the sha256 of each, the
mirrors, the class names; which of the files a directory holds, and the messages that say
where they were looked for and how to provide them (used by :mod:`pipeline.data.mnist_files`
and :mod:`pipeline.data.idx_download`)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["IdxDatasetSpec", "SPECS", "FILE_KEYS", "ENV_VAR", "IMAGE_SHAPE", "DatasetNotFoundError",
           "DatasetCorruptError", "IdxArrays", "get_spec", "files_in", "dir_status", "how_to_fix",
           "not_found_message", "sha256_hex"]

ENV_VAR = "CNNVIS_DATA_DIR"
FILE_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
IMAGE_SHAPE = (28, 28)


@dataclass(frozen=True)
class IdxDatasetSpec:
    name: str
    dirname: str
    files: dict[str, str]  # key -> base file name, without .gz
    sha256: dict[str, str]  # key -> sha256 of the uncompressed file
    mirrors: tuple[str, ...]
    classes: tuple[str, ...]

    def filenames(self) -> list[str]:
        return [self.files[k] for k in FILE_KEYS]


#: sha256 of each uncompressed file, in FILE_KEYS order (train images, train labels, test images, test labels)
_SHA256 = {
    "mnist": ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
              "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    "fashion_mnist": ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                      "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
_STANDARD_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                   "t10k-labels-idx1-ubyte")


def _spec(name: str, dirname: str, mirrors: tuple[str, ...], classes: tuple[str, ...]) -> IdxDatasetSpec:
    return IdxDatasetSpec(name=name, dirname=dirname, files=dict(zip(FILE_KEYS, _STANDARD_FILES)),
                          sha256=dict(zip(FILE_KEYS, _SHA256[name])), mirrors=mirrors, classes=classes)


SPECS: dict[str, IdxDatasetSpec] = {
    "mnist": _spec("mnist", "mnist", mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                                              "https://storage.googleapis.com/cvdf-datasets/mnist/"),
                   classes=tuple(str(i) for i in range(10))),
    "fashion_mnist": _spec("fashion_mnist", "fashion-mnist",
                           mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
                           classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                    "Sneaker", "Bag", "Ankle boot")),
}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files were found nowhere and could not be downloaded."""

    def __init__(self, message: str, *, dataset: str | None = None,
                 searched: Sequence[Path] = (), failures: Sequence[tuple[str, str]] = ()):
        super().__init__(message)
        self.dataset = dataset
        self.searched = list(searched)
        self.failures = list(failures)


class DatasetCorruptError(ValueError):
    """A dataset file exists but is damaged or is not the expected file."""

    def __init__(self, message: str, *, path: Path | None = None):
        super().__init__(message)
        self.path = path


@dataclass
class IdxArrays:
    train_images: np.ndarray  # uint8 [N, 28, 28]
    train_labels: np.ndarray  # int64 [N]
    test_images: np.ndarray
    test_labels: np.ndarray


def get_spec(name: str) -> IdxDatasetSpec:
    """The spec for ``name`` ("mnist", "fashion_mnist"; "fashion-mnist" is accepted too)."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in SPECS:
        raise ValueError(f"unknown IDX dataset {name!r}; valid names: {', '.join(sorted(SPECS))}")
    return SPECS[key]


def files_in(spec: IdxDatasetSpec, d: Path) -> tuple[dict[str, Path], list[str]]:
    """Files of ``spec`` present in ``d`` (raw preferred over .gz) and the missing base names."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key in FILE_KEYS:
        base = spec.files[key]
        for cand in (d / base, d / (base + ".gz")):
            if cand.is_file():
                found[key] = cand
                break
        else:
            missing.append(base)
    return found, missing


def dir_status(spec: IdxDatasetSpec, d: Path) -> str:
    if not d.exists():
        return "does not exist"
    if not d.is_dir():
        return "is not a directory"
    found, missing = files_in(spec, d)
    if not missing:
        return "has all 4 files"
    if not found:
        return "holds none of the 4 files"
    return f"has {len(found)} of 4 files; missing {', '.join(m + '[.gz]' for m in missing)}"


def how_to_fix(spec: IdxDatasetSpec) -> str:
    names = "\n".join(f"    {n}  (or {n}.gz)" for n in spec.filenames())
    return (
        f"To fix it, put the 4 {spec.name} files\n{names}\n"
        "in a directory and either pass it on the command line:\n"
        "    data.data_dir=/path/to/dir\n"
        f"or set the environment variable (the files may also be in its subdirectory '{spec.dirname}/'):\n"
        f"    export {ENV_VAR}=/path/to/dir"
    )


def not_found_message(spec: IdxDatasetSpec, searched: Sequence[Path], failures: Sequence[tuple[str, str]],
                       tried_download: bool, dest: Path | None = None) -> str:
    lines = [f"Dataset '{spec.name}' not found.", "Searched, in order:"]
    lines += [f"  {i}. {d}: {dir_status(spec, d)}" for i, d in enumerate(searched, 1)]
    if not searched:
        lines.append("  (no directories)")
    if tried_download:
        lines.append(f"Download into {dest} failed:" if failures else f"Download into {dest}: no mirrors given.")
        lines += [f"  - {url}: {reason}" for url, reason in failures]
    else:
        lines.append("Download is disabled (download=False), so no mirror was tried.")
    lines.append(how_to_fix(spec))
    return "\n".join(lines)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
