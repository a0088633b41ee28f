"""Finding, verifying and downloading the IDX files of MNIST and Fashion-MNIST.

Search order (first directory holding all four files wins; each file may be raw or ``.gz``):

1. ``data_dir`` (``dataset.data_dir=...`` on the command line) and ``data_dir/<dirname>``.
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

import hashlib
import http.client
import logging
import os
import socket
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .idx import GZIP_MAGIC, IDXError, parse_idx, read_idx_bytes

__all__ = [
    "IdxDatasetSpec",
    "SPECS",
    "FILE_KEYS",
    "ENV_VAR",
    "DatasetNotFoundError",
    "DatasetCorruptError",
    "IdxArrays",
    "get_spec",
    "candidate_dirs",
    "default_cache_dir",
    "find_dataset_files",
    "download_dataset_files",
    "load_idx_dataset",
]

log = logging.getLogger(__name__)

ENV_VAR = "CNNVIS_DATA_DIR"
FILE_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
IMAGE_SHAPE = (28, 28)

#: The project's root (the directory holding ``pipeline/``); tests may monkeypatch it.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: System-wide dataset directories (searched as ``<dir>/<dirname>``); tests may monkeypatch it.
SYSTEM_DATASET_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)


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


_STANDARD_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

SPECS: dict[str, IdxDatasetSpec] = {
    "mnist": IdxDatasetSpec(
        name="mnist",
        dirname="mnist",
        files=dict(_STANDARD_FILES),
        sha256={
            "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        classes=tuple(str(i) for i in range(10)),
    ),
    "fashion_mnist": IdxDatasetSpec(
        name="fashion_mnist",
        dirname="fashion-mnist",
        files=dict(_STANDARD_FILES),
        sha256={
            "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
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


# --------------------------------------------------------------------------- searching

def get_spec(name: str) -> IdxDatasetSpec:
    """The spec for ``name`` ("mnist", "fashion_mnist"; "fashion-mnist" is accepted too)."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in SPECS:
        raise ValueError(f"unknown IDX dataset {name!r}; valid names: {', '.join(sorted(SPECS))}")
    return SPECS[key]


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


def _files_in(spec: IdxDatasetSpec, d: Path) -> tuple[dict[str, Path], list[str]]:
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


def _dir_status(spec: IdxDatasetSpec, d: Path) -> str:
    if not d.exists():
        return "does not exist"
    if not d.is_dir():
        return "is not a directory"
    found, missing = _files_in(spec, d)
    if not missing:
        return "has all 4 files"
    if not found:
        return "holds none of the 4 files"
    return f"has {len(found)} of 4 files; missing {', '.join(m + '[.gz]' for m in missing)}"


def _how_to_fix(spec: IdxDatasetSpec) -> str:
    names = "\n".join(f"    {n}  (or {n}.gz)" for n in spec.filenames())
    return (
        f"To fix it, put the 4 {spec.name} files\n{names}\n"
        "in a directory and either pass it on the command line:\n"
        "    dataset.data_dir=/path/to/dir\n"
        f"or set the environment variable (the files may also be in its subdirectory '{spec.dirname}/'):\n"
        f"    export {ENV_VAR}=/path/to/dir"
    )


def find_dataset_files(spec: IdxDatasetSpec, data_dir=None, cache_dir=None) -> dict[str, Path] | None:
    """The first candidate directory holding all 4 files (each raw or ``.gz``), as key -> path.

    Returns ``None`` when no default location has them. If ``data_dir`` is given and neither
    it nor ``data_dir/<dirname>`` holds them, raises :class:`DatasetNotFoundError` at once.
    """
    if data_dir is not None:
        explicit = _explicit_dirs(spec, data_dir)
        for d in explicit:
            found, missing = _files_in(spec, d)
            if not missing:
                return found
        lines = "\n".join(f"  {d}: {_dir_status(spec, d)}" for d in explicit)
        raise DatasetNotFoundError(
            f"Dataset '{spec.name}' not found in the directory given explicitly (data_dir / dataset.data_dir):\n"
            f"{lines}\n"
            "Because a directory was given, no other place was searched and nothing was downloaded; fix the "
            "path, or leave dataset.data_dir unset to use the default locations (and the download).\n"
            + _how_to_fix(spec),
            dataset=spec.name, searched=explicit)
    for d in candidate_dirs(spec, None, cache_dir=cache_dir):
        found, missing = _files_in(spec, d)
        if not missing:
            return found
    return None


# --------------------------------------------------------------------------- downloading

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _describe_failure(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP error {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return f"timed out after {timeout:g} s"
        return f"cannot connect: {reason}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"timed out after {timeout:g} s"
    return f"{type(exc).__name__}: {exc}"


class _BadDownload(Exception):
    pass


def _fetch_to(url: str, fh, timeout: float, desc: str) -> None:
    from tqdm.auto import tqdm

    opener = urllib.request.build_opener()  # reads the *_proxy environment variables now
    req = urllib.request.Request(url, headers={"User-Agent": "cnnvis-dataset-download"})
    with opener.open(req, timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        got = 0
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                  disable=None, leave=False) as bar:
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                fh.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
    if total is not None and got != total:
        raise _BadDownload(f"incomplete download: got {got} of {total} bytes")


def _download_one(spec: IdxDatasetSpec, key: str, url: str, dest: Path, timeout: float, verify: bool) -> Path:
    base = spec.files[key]
    fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=f".{base}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            _fetch_to(url, fh, timeout, desc=base)
        try:
            data = read_idx_bytes(tmp)
        except IDXError as exc:
            raise _BadDownload(f"not a valid (gzipped) IDX file: {exc.problem}") from None
        if verify:
            actual = _sha256(data)
            if actual != spec.sha256[key]:
                raise _BadDownload(f"sha256 mismatch of the uncompressed content: expected "
                                   f"{spec.sha256[key]}, got {actual}")
        else:
            try:
                parse_idx(data, url)
            except IDXError as exc:
                raise _BadDownload(f"not a valid IDX file: {exc.problem}") from None
        with open(tmp, "rb") as fh:
            gz = fh.read(2) == GZIP_MAGIC
        final = dest / (base + ".gz" if gz else base)
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
        return final
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def download_dataset_files(spec: IdxDatasetSpec, dest_dir, mirrors: Iterable[str] | None = None,
                           timeout: float = 10.0, verify: bool = True,
                           searched: Sequence[Path] = ()) -> dict[str, Path]:
    """Download the files missing from ``dest_dir``; returns key -> path of all 4 files.

    Mirrors are tried in order; a file is fetched as ``mirror + base + ".gz"``, written to a
    temporary file in ``dest_dir``, checked (sha256 of the decompressed bytes when
    ``verify``) and only then renamed into place. Files already verified stay when a later
    file fails, so the next mirror (or the next run) resumes. Raises
    :class:`DatasetNotFoundError` (listing ``searched`` and why each mirror failed) when no
    mirror delivers all files.
    """
    dest = _expand(dest_dir)
    mirrors = list(spec.mirrors if mirrors is None else mirrors)
    failures: list[tuple[str, str]] = []
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        failures.append((str(dest), f"cannot create the download directory: {exc}"))
        mirrors = []
    for mirror in mirrors:
        if not mirror.endswith("/"):
            mirror += "/"
        for key in FILE_KEYS:
            found, _ = _files_in(spec, dest)
            if key in found:
                continue
            url = mirror + spec.files[key] + ".gz"
            log.info("Downloading %s", url)
            try:
                _download_one(spec, key, url, dest, timeout, verify)
            except (OSError, http.client.HTTPException, _BadDownload, ValueError) as exc:
                reason = str(exc) if isinstance(exc, _BadDownload) else _describe_failure(exc, timeout)
                failures.append((url, reason))
                log.warning("Download of %s failed: %s", url, reason)
                break  # next mirror
        found, missing = _files_in(spec, dest)
        if not missing:
            return found
    raise DatasetNotFoundError(
        _not_found_message(spec, searched, failures, tried_download=True, dest=dest),
        dataset=spec.name, searched=searched, failures=failures)


def _not_found_message(spec: IdxDatasetSpec, searched: Sequence[Path], failures: Sequence[tuple[str, str]],
                       tried_download: bool, dest: Path | None = None) -> str:
    lines = [f"Dataset '{spec.name}' not found.", "Searched, in order:"]
    lines += [f"  {i}. {d}: {_dir_status(spec, d)}" for i, d in enumerate(searched, 1)]
    if not searched:
        lines.append("  (no directories)")
    if tried_download:
        lines.append(f"Download into {dest} failed:" if failures else f"Download into {dest}: no mirrors given.")
        lines += [f"  - {url}: {reason}" for url, reason in failures]
    else:
        lines.append("Download is disabled (download=False), so no mirror was tried.")
    lines.append(_how_to_fix(spec))
    return "\n".join(lines)


# --------------------------------------------------------------------------- loading

def _corrupt(spec: IdxDatasetSpec, path: Path, problem: str) -> DatasetCorruptError:
    return DatasetCorruptError(
        f"{path}: {problem}\nThe file is damaged or is not the {spec.name} file it is named after. Delete it "
        "(if it lives in the download cache it will be downloaded again), or point dataset.data_dir / "
        f"{ENV_VAR} at a good copy.", path=path)


def _load_file(spec: IdxDatasetSpec, key: str, path: Path, verify: bool) -> np.ndarray:
    try:
        data = read_idx_bytes(path)
    except IDXError as exc:
        raise _corrupt(spec, path, exc.problem) from None
    if verify:
        actual = _sha256(data)
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
            raise DatasetNotFoundError(_not_found_message(spec, searched, (), tried_download=False),
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
