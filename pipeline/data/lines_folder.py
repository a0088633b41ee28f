"""The lines dataset from image files: the course's class folders, or an export of generated lines.

Two layouts are read (``data.root=DIR``):

* class folders (the course's ``classes/``): ``DIR/<L_W_A_C>/<L_W_A_C>_<id>.jpg``;
* a flat folder: ``DIR/<L_W_A_C>_<id>.jpg`` (no subfolders).

``L_W_A_C`` is a class name of :func:`pipeline.data.lines_labels.class_names` (length 0/1, width 0/1,
angle 0..11, colour 0/1), ``<id>`` a number; the extension is ``.jpg``, ``.jpeg`` or ``.png``
(any case). Images are 28x28 RGB; palette and other RGB-convertible images are converted,
greyscale and 4-channel (RGBA, CMYK) images are refused: a red or blue line cannot be read
from them.

Nothing is skipped silently: every name and every image is checked, all problems are
collected and raised as one :class:`LinesFolderError` that lists the bad files. Only hidden
files and folders (names starting with ``.``, e.g. ``.DS_Store``) are ignored.

Exact copies (files that decode to the same pixels) are found by :func:`find_duplicates`: the
course's own folders repeat each image 4-37 times, so ``dataset=lines_folder`` splits by
distinct image (no image in two splits) and reports how many files are copies.

The images are decoded once and cached (:func:`pipeline.data.array_cache.load_or_build`)
under a digest of the sorted relative paths, sizes and modification times of the files, so
a changed, added or removed file invalidates the cache.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.data import lines_labels
from pipeline.data.array_cache import load_or_build, params_digest
from pipeline.data.image_files import IMAGE_SUFFIXES, read_image
from pipeline.errors import CnnvisError

log = logging.getLogger(__name__)

IMAGE_SIZE = 28
#: Bump whenever the reader's output for the same files changes (invalidates the caches).
READER_VERSION = 1
MAX_LISTED = 20

_CLASS_INDEX = {name: i for i, name in enumerate(lines_labels.class_names())}

EXPECTED = ("Expected: class folders named L_W_A_C (L length 0/1, W width 0/1, A angle 0..11, "
            "C colour 0/1, e.g. 1_0_9_1/) holding files L_W_A_C_<id>.jpg|.jpeg|.png (<id> a number, the "
            "folder's class as prefix), or a flat folder of such files; every image 28x28 RGB.")


class LinesFolderError(CnnvisError, ValueError):
    """The folder given as ``data.root`` cannot be read as a lines dataset; the message lists why."""


@dataclass(frozen=True, eq=False)
class LinesFolderArrays:
    """The images of a lines folder, sorted by class, then by ``<id>`` (then by path)."""

    images: np.ndarray      # uint8 [N, 3, 28, 28]
    labels: np.ndarray      # int64 [N]
    paths: list[str]        # file paths relative to the root, '/'-separated

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class _Scan:
    root: Path
    files: list[tuple[str, int, int]] = field(default_factory=list)   # (relative path, label, id) of well-named images
    others: list[str] = field(default_factory=list)                   # image files with a bad name (still decoded)
    problems: dict[str, list[str]] = field(default_factory=dict)      # relative path -> reasons

    def add(self, rel: str, reason: str) -> None:
        self.problems.setdefault(rel, []).append(reason)


def _hidden(p: Path) -> bool:
    return p.name.startswith(".")


def parse_name(filename: str) -> tuple[int, int]:
    """``(label, id)`` of a file name ``L_W_A_C_<id>.<ext>``; ValueError saying what is wrong."""
    stem, dot, ext = filename.rpartition(".")
    if not dot or f".{ext.lower()}" not in IMAGE_SUFFIXES:
        raise ValueError("not an image file (.jpg, .jpeg or .png)")
    parts = stem.split("_")
    if len(parts) != 5 or not all(p.isdigit() for p in parts):
        raise ValueError("file name does not parse as L_W_A_C_<id> (five numbers joined by '_')")
    prefix = "_".join(parts[:4])
    if prefix not in _CLASS_INDEX:
        raise ValueError(f"{prefix!r} is not a class: {_class_name_problem(parts[:4])}")
    return _CLASS_INDEX[prefix], int(parts[4])


def _class_name_problem(parts: list[str]) -> str:
    bad = []
    for (head, n), p in zip(lines_labels.HEADS.items(), parts):
        if not p.isdigit() or int(p) >= n:
            bad.append(f"{head} index {p} is out of range 0..{n - 1}")
        elif str(int(p)) != p:
            bad.append(f"{head} index {p!r} has a leading zero")
    return "; ".join(bad) if bad else "not a class name"


def check_root(root) -> Path:
    if root is None or str(root).strip() in ("", "???"):
        raise LinesFolderError("dataset=lines_folder needs the folder of images: pass data.root=DIR "
                               "(the course's classes/ folder, or a folder written by export_jpegs). " + EXPECTED)
    path = Path(str(root)).expanduser()
    if not path.exists():
        raise LinesFolderError(f"data.root={root}: no such folder. Pass data.root=DIR, the folder holding the class "
                               f"folders L_W_A_C/ (the course's classes/) or the L_W_A_C_<id>.jpg files.")
    if not path.is_dir():
        raise LinesFolderError(f"data.root={root} is a file, not a folder. Pass data.root=DIR, the folder holding "
                               f"the class folders L_W_A_C/ or the L_W_A_C_<id>.jpg files.")
    return path


def _scan_file(scan: _Scan, path: Path, rel: str, folder_class: str | None) -> None:
    try:
        label, ident = parse_name(path.name)
    except ValueError as exc:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            scan.others.append(rel)
        scan.add(rel, str(exc))
        return
    prefix = path.name.rsplit("_", 1)[0]
    if folder_class is not None and prefix != folder_class:
        scan.add(rel, f"class {prefix} in the file name differs from its class folder {folder_class}/")
        scan.others.append(rel)
        return
    scan.files.append((rel, label, ident))


def scan_folder(root) -> _Scan:
    """List and check the names of a lines folder (nothing is decoded)."""
    root = check_root(root)
    scan = _Scan(root)
    entries = sorted((p for p in root.iterdir() if not _hidden(p)), key=lambda p: p.name)
    dirs = [p for p in entries if p.is_dir()]
    files = [p for p in entries if not p.is_dir()]
    if not dirs:
        for p in files:
            _scan_file(scan, p, p.name, None)
        return scan
    for p in files:
        scan.add(p.name, "a file next to the class folders: move it into its class folder (or use a flat "
                         "folder without subfolders)")
    for d in dirs:
        if d.name not in _CLASS_INDEX:
            reason = "folder name is not a class"
            parts = d.name.split("_")
            if len(parts) == 4 and all(x.isdigit() for x in parts):
                reason += f" ({_class_name_problem(parts)})"
            if any(sub.is_dir() and sub.name in _CLASS_INDEX for sub in d.iterdir()):
                reason += f"; it holds class folders: pass data.root={d}"
            scan.add(d.name + "/", reason)
            continue
        n_before = len(scan.files) + len(scan.others)
        children = sorted((p for p in d.iterdir() if not _hidden(p)), key=lambda p: p.name)
        for p in children:
            rel = f"{d.name}/{p.name}"
            if p.is_dir():
                scan.add(rel + "/", "a folder inside a class folder (class folders hold image files only)")
            else:
                _scan_file(scan, p, rel, d.name)
        if len(scan.files) + len(scan.others) == n_before and not any(
                k.startswith(d.name + "/") for k in scan.problems):
            scan.add(d.name + "/", "class folder holds no images")
    return scan


def _read_image(path: Path) -> tuple[np.ndarray | None, str | None]:
    """``([3, 28, 28] uint8, None)`` or ``(None, reason)``: the image_folder reader
    (:func:`pipeline.data.image_files.read_image`) with the lines policy: exactly 28x28, RGB only."""
    return read_image(path, IMAGE_SIZE, 3, resize=False, grey_ok=False)


def _ordered(scan: _Scan) -> list[tuple[str, int, int]]:
    return sorted(scan.files, key=lambda f: (f[1], f[2], f[0]))


def _decode_files(scan: _Scan, progress: bool = False) -> dict[str, np.ndarray]:
    """Decode every image of the scan (bad names too, to report all problems); raise
    :class:`LinesFolderError` listing every problem, else the arrays in :func:`_ordered` order."""
    files = _ordered(scan)
    images = np.empty((len(files), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    todo = [(i, rel) for i, (rel, _, _) in enumerate(files)] + [(-1, rel) for rel in scan.others]
    bar = None
    if progress and len(todo) > 2000:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), desc="Reading lines images", unit="img")
    try:
        for i, rel in todo:
            arr, reason = _read_image(scan.root / rel)
            if reason is not None:
                scan.add(rel, reason)
            elif i >= 0:
                images[i] = arr
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    raise_problems(scan)
    return {"images": images, "labels": np.asarray([f[1] for f in files], dtype=np.int64)}


def raise_problems(scan: _Scan) -> None:
    root = scan.root
    if scan.problems:
        items = sorted(scan.problems.items())
        listed = [f"  {rel}: {'; '.join(reasons)}" for rel, reasons in items[:MAX_LISTED]]
        if len(items) > MAX_LISTED:
            listed.append(f"  ... and {len(items) - MAX_LISTED} more")
        n_seen = len(scan.files) + len(scan.others)
        raise LinesFolderError(
            f"data.root={root}: {len(items)} problem(s) in the lines folder ({n_seen} image files looked at); "
            f"fix or remove these (nothing was read):\n" + "\n".join(listed) + "\n" + EXPECTED)
    if not scan.files:
        raise LinesFolderError(f"data.root={root} holds no image files. " + EXPECTED)


@dataclass(frozen=True)
class Duplicates:
    """Exact copies among a folder's images (same decoded pixels), see :func:`find_duplicates`."""

    groups: np.ndarray        # int64 [N]: the distinct image each file shows (0 .. distinct-1, in first-seen order)
    files: int                # image files
    distinct: int             # distinct images
    with_copies: int          # distinct images shown by more than one file
    most_copies: int          # the most files showing one image
    conflicting: int          # distinct images whose files carry different classes

    @property
    def copies(self) -> int:
        """Files that repeat an image shown by an earlier file."""
        return self.files - self.distinct

    def describe(self) -> str:
        if not self.copies:
            return f"{self.files} files, all distinct"
        text = (f"{self.files} files show {self.distinct} distinct images: {self.copies} files are exact copies "
                f"of another ({self.with_copies} images appear more than once, up to {self.most_copies} times)")
        if self.conflicting:
            text += f"; {self.conflicting} images appear under two or more classes"
        return text


def find_duplicates(images: np.ndarray, labels: np.ndarray | None = None) -> Duplicates:
    """Group the images ``[N, ...]`` by content (a hash of their decoded pixels: files that differ
    only in name, or that were encoded twice to the same pixels, are copies)."""
    images = np.ascontiguousarray(images)
    n = len(images)
    slot: dict[bytes, int] = {}
    groups = np.empty(n, dtype=np.int64)
    for i in range(n):
        groups[i] = slot.setdefault(hashlib.blake2b(images[i].tobytes(), digest_size=16).digest(), len(slot))
    distinct = len(slot)
    counts = np.bincount(groups, minlength=distinct)
    conflicting = 0
    if labels is not None and n:
        labels = np.asarray(labels)
        first = np.full(distinct, -1, dtype=np.int64)
        first[groups[::-1]] = labels[::-1]          # the label of each group's first file
        conflicting = len(np.unique(groups[labels != first[groups]]))
    return Duplicates(groups=groups, files=n, distinct=distinct, with_copies=int((counts > 1).sum()),
                      most_copies=int(counts.max()) if n else 0, conflicting=int(conflicting))


def read_lines_folder(root, progress: bool = False) -> LinesFolderArrays:
    """Read and check every image of a lines folder (no cache); see the module docstring."""
    scan = scan_folder(root)
    arrays = _decode_files(scan, progress)
    return LinesFolderArrays(arrays["images"], arrays["labels"], [f[0] for f in _ordered(scan)])


def files_digest(scan: _Scan) -> str:
    """sha256 of the sorted relative paths, sizes and modification times of the image files."""
    h = hashlib.sha256()
    for rel in sorted(f[0] for f in scan.files):
        st = (scan.root / rel).stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_path(cache_dir, params: dict) -> Path:
    return Path(cache_dir) / f"lines_folder_v{READER_VERSION}_n{params['count']}_{params_digest(params)}.h5"


def load_lines_folder(root, cache_dir=None, progress: bool = False) -> LinesFolderArrays:
    """:func:`read_lines_folder`, cached under ``cache_dir`` (when given): the images are decoded
    once; a changed, added or removed file gives another digest, hence a fresh read."""
    scan = scan_folder(root)
    if cache_dir is None or scan.problems or not scan.files:
        return read_lines_folder(root, progress)
    files = _ordered(scan)
    n = len(files)
    params = {"reader_version": READER_VERSION, "files": files_digest(scan), "count": n}

    def check(arrays: dict) -> None:
        if arrays["images"].shape != (n, 3, IMAGE_SIZE, IMAGE_SIZE) or arrays["images"].dtype != np.uint8:
            raise ValueError(f"images are {arrays['images'].dtype}{list(arrays['images'].shape)}")
        if not np.array_equal(arrays["labels"], [f[1] for f in files]):
            raise ValueError("labels do not match the file names")

    arrays = load_or_build(cache_path(cache_dir, params), params, ("images", "labels"),
                           lambda: _decode_files(scan, progress), check=check, what="lines_folder images")
    return LinesFolderArrays(arrays["images"], arrays["labels"].astype(np.int64), [f[0] for f in files])
