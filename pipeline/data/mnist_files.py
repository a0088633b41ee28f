"""Finding, verifying and reading the IDX files of MNIST and Fashion-MNIST (what the files are:
:mod:`pipeline.data.idx_specs`; the download: :mod:`pipeline.data.idx_download`).

Search order (first directory holding all four files wins; each file may be raw or ``.gz``):

1. ``data_dir`` (``data.data_dir=...`` on the command line) and ``data_dir/<dirname>``.
   When it is given explicitly and lacks the files, that is an error: nothing else is
   searched and nothing is downloaded.
2. ``$CNNVIS_DATA_DIR/<dirname>``, then ``$CNNVIS_DATA_DIR``.
3. ``<project root>/../shared/datasets/<dirname>`` (the offline copies).
4. ``/usr/share/datasets/<dirname>`` (Debian's ``dataset-fashion-mnist``).
5. The download cache: ``cache_dir`` if given, else ``$XDG_CACHE_HOME`` (or ``~/.cache``)
   ``/cnnvis/datasets/<dirname>``.

When nothing is found and ``download=True`` the four ``.gz`` files are fetched from the
spec's mirrors into the download cache. Every file is checked against the sha256 of its
*uncompressed* bytes (the public dataset hashes) before it is moved into place, so a
half-written or corrupt download never looks like a complete file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from pipeline.data.idx import IDXError, parse_idx, read_idx_bytes
from pipeline.data.idx_download import download_dataset_files
from pipeline.data.idx_specs import (ENV_VAR, FILE_KEYS, IMAGE_SHAPE, DatasetCorruptError, DatasetNotFoundError,
                                     IdxArrays, IdxDatasetSpec, dir_status, files_in, get_spec, how_to_fix,
                                     not_found_message, sha256_hex)

__all__ = [
    "candidate_dirs",
    "default_cache_dir",
    "find_dataset_files",
    "load_idx_dataset",
]

log = logging.getLogger(__name__)

#: The project's root (the directory holding ``pipeline/``); tests may monkeypatch it.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: System-wide dataset directories (searched as ``<dir>/<dirname>``); tests may monkeypatch it.
SYSTEM_DATASET_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)


# --------------------------------------------------------------------------- searching

def _expand(p: str | os.PathLike[str]) -> Path:
    return Path(os.path.expanduser(os.fspath(p)))


def default_cache_dir(spec: IdxDatasetSpec) -> Path:
    """``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/cnnvis/datasets/<dirname>``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cnnvis" / "datasets" / spec.dirname


def _explicit_dirs(spec: IdxDatasetSpec, data_dir) -> list[Path]:
    d = _expand(data_dir)
    return [d, d / spec.dirname]


def candidate_dirs(spec: IdxDatasetSpec, data_dir=None, cache_dir=None) -> list[Path]:
    """Every directory searched for ``spec``'s files, in order (duplicates removed)."""
    dirs: list[Path] = []
    if data_dir is not None:
        dirs += _explicit_dirs(spec, data_dir)
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        dirs += [_expand(env) / spec.dirname, _expand(env)]
    dirs.append(Path(os.path.normpath(PROJECT_ROOT / ".." / "shared" / "datasets" / spec.dirname)))
    dirs += [Path(d) / spec.dirname for d in SYSTEM_DATASET_DIRS]
    dirs.append(_expand(cache_dir) if cache_dir is not None else default_cache_dir(spec))
    seen: set[str] = set()
    out = []
    for d in dirs:
        if str(d) not in seen:
            seen.add(str(d))
            out.append(d)
    return out


def find_dataset_files(spec: IdxDatasetSpec, data_dir=None, cache_dir=None) -> dict[str, Path] | None:
    """The first candidate directory holding all 4 files (each raw or ``.gz``), as key -> path.

    Returns ``None`` when no default location has them. If ``data_dir`` is given and neither
    it nor ``data_dir/<dirname>`` holds them, raises :class:`DatasetNotFoundError` at once.
    """
    if data_dir is not None:
        explicit = _explicit_dirs(spec, data_dir)
        for d in explicit:
            found, missing = files_in(spec, d)
            if not missing:
                return found
        lines = "\n".join(f"  {d}: {dir_status(spec, d)}" for d in explicit)
        raise DatasetNotFoundError(
            f"Dataset '{spec.name}' not found in the directory given explicitly (data_dir / data.data_dir):\n"
            f"{lines}\n"
            "Because a directory was given, no other place was searched and nothing was downloaded; fix the "
            "path, or leave data.data_dir unset to use the default locations (and the download).\n"
            + how_to_fix(spec),
            dataset=spec.name, searched=explicit)
    for d in candidate_dirs(spec, None, cache_dir=cache_dir):
        found, missing = files_in(spec, d)
        if not missing:
            return found
    return None


# --------------------------------------------------------------------------- loading

def _corrupt(spec: IdxDatasetSpec, path: Path, problem: str) -> DatasetCorruptError:
    return DatasetCorruptError(
        f"{path}: {problem}\nThe file is damaged or is not the {spec.name} file it is named after. Delete it "
        "(if it lives in the download cache it will be downloaded again), or point data.data_dir / "
        f"{ENV_VAR} at a good copy.", path=path)


def _load_file(spec: IdxDatasetSpec, key: str, path: Path, verify: bool) -> np.ndarray:
    try:
        data = read_idx_bytes(path)
    except IDXError as exc:
        raise _corrupt(spec, path, exc.problem) from None
    if verify:
        actual = sha256_hex(data)
        if actual != spec.sha256[key]:
            raise _corrupt(spec, path, f"sha256 of the uncompressed content is {actual}, expected "
                                       f"{spec.sha256[key]} (the public {spec.name} {spec.files[key]})")
    try:
        return parse_idx(data, path)
    except IDXError as exc:
        raise _corrupt(spec, path, exc.problem) from None


def _check(spec: IdxDatasetSpec, files: dict[str, Path], arrays: dict[str, np.ndarray]) -> None:
    n_classes = len(spec.classes)
    for split in ("train", "test"):
        ik, lk = f"{split}_images", f"{split}_labels"
        images, labels = arrays[ik], arrays[lk]
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
            raise _corrupt(spec, files[ik], f"images have shape {images.shape} and dtype {images.dtype}; "
                                            "expected uint8 [N, 28, 28]")
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise _corrupt(spec, files[lk], f"labels have shape {labels.shape} and dtype {labels.dtype}; "
                                            "expected uint8 [N]")
        if labels.shape[0] != images.shape[0]:
            raise _corrupt(spec, files[lk], f"{labels.shape[0]} labels but {images.shape[0]} images in "
                                            f"{files[ik]}; expected the same number")
        if labels.size and int(labels.max()) >= n_classes:
            raise _corrupt(spec, files[lk], f"label {int(labels.max())} out of range; expected 0..{n_classes - 1}")


def load_idx_dataset(name: str, data_dir=None, download: bool = True, mirrors: Iterable[str] | None = None,
                     cache_dir=None, verify: bool = True, timeout: float = 10.0) -> IdxArrays:
    """Find (or download), verify and read MNIST / Fashion-MNIST.

    Images come back as uint8 ``[N, 28, 28]``, labels as int64 ``[N]``.
    """
    spec = get_spec(name)
    files = find_dataset_files(spec, data_dir, cache_dir=cache_dir)
    if files is None:
        searched = candidate_dirs(spec, None, cache_dir=cache_dir)
        if not download:
            raise DatasetNotFoundError(not_found_message(spec, searched, (), tried_download=False),
                                       dataset=spec.name, searched=searched)
        dest = _expand(cache_dir) if cache_dir is not None else default_cache_dir(spec)
        files = download_dataset_files(spec, dest, mirrors=mirrors, timeout=timeout, verify=verify,
                                       searched=searched)
    arrays = {key: _load_file(spec, key, files[key], verify) for key in FILE_KEYS}
    _check(spec, files, arrays)
    return IdxArrays(
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"].astype(np.int64),
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"].astype(np.int64),
    )
