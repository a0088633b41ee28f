"""Your own images: ``DIR/<class>/<any name>.png|.jpg|.jpeg``, one folder per class.

Classes are the folder names in sorted order (label 0 = the first). Any size, greyscale or RGB:
each image is decoded by :func:`pipeline.data.image_files.read_image` (resized to
``image_size`` x ``image_size`` with Pillow's bilinear filter, antialiased when shrinking;
``channels`` 1 or 3, or inferred when every image is greyscale / every image is RGB).

Nothing is skipped silently: unreadable files, files that are not images, 4-channel images,
empty class folders, files beside the class folders, folders inside class folders, a folder with
fewer than two classes, and (when ``channels`` is inferred) a mix of greyscale and RGB images are
collected and raised as one :class:`ImageFolderError` listing them. Hidden names (``.DS_Store``)
are ignored.

The images are decoded once and cached (:func:`pipeline.data.array_cache.load_or_build`, a
checksummed HDF5 file) under a digest of the files' relative paths, sizes and modification times,
the image size and the channels: a changed, added or removed file gives a fresh read.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.data.array_cache import load_or_build, params_digest
from pipeline.data.image_files import IMAGE_SUFFIXES, image_kind, read_image
from pipeline.errors import CnnvisError

READER_VERSION = 1
MAX_LISTED = 20
EXPECTED = ("Expected: data.root=DIR holding one folder per class (at least two), each with image files "
            "(.png, .jpg, .jpeg; any size, greyscale or RGB, no alpha channel).")


class ImageFolderError(CnnvisError, ValueError):
    """The folder given as ``data.root`` cannot be read as an image folder; the message lists why."""


@dataclass
class FolderScan:
    root: Path
    class_names: list[str] = field(default_factory=list)
    files: list[tuple[str, int]] = field(default_factory=list)        # (relative path, label), sorted
    problems: dict[str, list[str]] = field(default_factory=dict)

    def add(self, rel: str, reason: str) -> None:
        self.problems.setdefault(rel, []).append(reason)


@dataclass(frozen=True, eq=False)
class ImageFolderArrays:
    images: np.ndarray      # uint8 [N, C, S, S]
    labels: np.ndarray      # int64 [N]
    paths: list[str]        # relative to the root, '/'-separated
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def check_root(root) -> Path:
    if root is None or str(root).strip() in ("", "???"):
        raise ImageFolderError("dataset=image_folder needs the folder of images: pass data.root=DIR. " + EXPECTED)
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "no such folder"
        raise ImageFolderError(f"data.root={root}: {what}. " + EXPECTED)
    return path


def _visible(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)


def scan_image_folder(root) -> FolderScan:
    """List and check the class folders and file names (nothing is decoded)."""
    scan = FolderScan(check_root(root))
    entries = _visible(scan.root)
    for p in entries:
        if not p.is_dir():
            scan.add(p.name, "a file beside the class folders: move it into its class folder")
    scan.class_names = [p.name for p in entries if p.is_dir()]
    for label, name in enumerate(scan.class_names):
        n = 0
        for p in _visible(scan.root / name):
            rel = f"{name}/{p.name}"
            if p.is_dir():
                scan.add(rel + "/", "a folder inside a class folder (class folders hold image files only)")
            elif p.suffix.lower() not in IMAGE_SUFFIXES:
                scan.add(rel, "not an image file (.png, .jpg or .jpeg)")
            else:
                scan.files.append((rel, label))
                n += 1
        if n == 0:
            scan.add(name + "/", "class folder holds no images")
    return scan


def infer_channels(scan: FolderScan, channels: int | None) -> int:
    """``channels`` when given, else 1 (every image greyscale) or 3 (every image RGB); records
    4-channel and unreadable images, and a grey/RGB mix when inferring, as problems."""
    kinds: dict[str, list[str]] = {"grey": [], "rgb": []}
    for rel, _ in scan.files:
        kind, reason = image_kind(scan.root / rel)
        if reason is not None:
            scan.add(rel, reason)
        elif kind == "alpha":
            scan.add(rel, "4-channel image (with alpha or CMYK); save it as RGB or greyscale")
        else:
            kinds[kind].append(rel)
    if channels is not None:
        return int(channels)
    if kinds["grey"] and kinds["rgb"]:
        few = "grey" if len(kinds["grey"]) <= len(kinds["rgb"]) else "rgb"
        for rel in kinds[few]:
            scan.add(rel, f"{'greyscale' if few == 'grey' else 'RGB'} image in a folder of mostly "
                          f"{'RGB' if few == 'grey' else 'greyscale'} images (mixed: {len(kinds['grey'])} greyscale, "
                          f"{len(kinds['rgb'])} RGB); pass data.channels=1 or data.channels=3 to convert them all")
    return 1 if kinds["grey"] and not kinds["rgb"] else 3


def raise_problems(scan: FolderScan) -> None:
    if scan.problems:
        items = sorted(scan.problems.items())
        listed = [f"  {rel}: {'; '.join(reasons)}" for rel, reasons in items[:MAX_LISTED]]
        if len(items) > MAX_LISTED:
            listed.append(f"  ... and {len(items) - MAX_LISTED} more")
        raise ImageFolderError(
            f"data.root={scan.root}: {len(items)} problem(s) in the image folder ({len(scan.files)} image files "
            f"looked at); fix or remove these (nothing was read):\n" + "\n".join(listed) + "\n" + EXPECTED)
    if len(scan.class_names) < 2:
        found = f"one class folder ({scan.class_names[0]}/)" if scan.class_names else "no class folders"
        raise ImageFolderError(f"data.root={scan.root} holds {found}: a classifier needs at least two classes, "
                               f"one folder each. " + EXPECTED)


def decode_files(scan: FolderScan, size: int, channels: int, progress: bool = False) -> dict[str, np.ndarray]:
    """Decode every image (resized, ``channels``); raise listing every problem."""
    images = np.empty((len(scan.files), channels, size, size), dtype=np.uint8)
    files = scan.files
    if progress and len(files) > 2000:
        from tqdm import tqdm
        files = tqdm(files, desc="Reading images", unit="img")
    for i, (rel, _) in enumerate(files):
        arr, reason = read_image(scan.root / rel, size, channels)
        if reason is not None:
            scan.add(rel, reason)
        else:
            images[i] = arr
    raise_problems(scan)
    return {"images": images, "labels": np.asarray([lab for _, lab in scan.files], dtype=np.int64)}


def files_digest(scan: FolderScan) -> str:
    h = hashlib.sha256()
    for rel, label in scan.files:
        st = (scan.root / rel).stat()
        h.update(f"{rel}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def load_image_folder(scan: FolderScan, size: int, channels: int, cache_dir=None,
                      progress: bool = False) -> ImageFolderArrays:
    """The decoded images of a checked scan, from the cache under ``cache_dir`` when valid."""
    raise_problems(scan)
    n = len(scan.files)
    params = {"reader_version": READER_VERSION, "files": files_digest(scan), "count": n,
              "image_size": int(size), "channels": int(channels)}
    labels = np.asarray([lab for _, lab in scan.files], dtype=np.int64)

    def check(arrays: dict) -> None:
        if arrays["images"].shape != (n, channels, size, size) or arrays["images"].dtype != np.uint8:
            raise ValueError(f"images are {arrays['images'].dtype}{list(arrays['images'].shape)}")
        if not np.array_equal(arrays["labels"], labels):
            raise ValueError("labels do not match the class folders")

    def build():
        return decode_files(scan, size, channels, progress)

    if cache_dir is None:
        arrays = build()
    else:
        path = Path(cache_dir) / f"image_folder_v{READER_VERSION}_n{n}_{params_digest(params)}.h5"
        arrays = load_or_build(path, params, ("images", "labels"), build, check=check, what="image_folder images")
    return ImageFolderArrays(arrays["images"], arrays["labels"].astype(np.int64), [r for r, _ in scan.files],
                             list(scan.class_names))
