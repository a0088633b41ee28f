"""An HDF5 cache of the generated lines dataset.

One file per parameter set (:func:`cache_path`), holding the datasets ``images``,
``masks``, ``labels`` and ``centres`` and, as attributes, the generation parameters, the
generator version and a sha256 of the arrays' bytes. Files are written under a temporary
name in the same directory and moved into place with :func:`os.replace` once complete,
so an interrupted write never leaves a file that looks whole. A cache that cannot be
used (unreadable or truncated file, checksum mismatch, wrong parameters or shapes) is
never used silently: a WARNING names the file and the problem, and the data are
regenerated and the file rewritten.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from pipeline.data.lines import NUM_CLASSES, LinesArrays, generate_lines

logger = logging.getLogger(__name__)

#: Bump whenever generate_lines' output for the same parameters changes.
GENERATOR_VERSION = 1

_FIELDS = ("images", "masks", "labels", "centres")


def cache_path(cache_dir, per_class: int, seed: int, image_size: int, margin: float) -> Path:
    """The cache file for these parameters (the name encodes them and GENERATOR_VERSION)."""
    name = (f"lines_v{GENERATOR_VERSION}_pc{int(per_class)}_seed{int(seed)}"
            f"_s{int(image_size)}_m{float(margin)!r}.h5")
    return Path(cache_dir) / name


def _checksum(arrays: LinesArrays) -> str:
    h = hashlib.sha256()
    for field in _FIELDS:
        a = np.ascontiguousarray(getattr(arrays, field))
        h.update(f"{field}:{a.dtype.str}:{a.shape};".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _params(per_class, seed, image_size, margin) -> dict:
    return {"generator_version": GENERATOR_VERSION, "per_class": int(per_class),
            "seed": int(seed), "image_size": int(image_size), "margin": float(margin)}


def _expected_layout(per_class: int, image_size: int) -> dict[str, tuple[tuple, np.dtype]]:
    n, s = NUM_CLASSES * per_class, image_size
    return {"images": ((n, 3, s, s), np.dtype(np.uint8)),
            "masks": ((n, s, s), np.dtype(bool)),
            "labels": ((n,), np.dtype(np.int64)),
            "centres": ((n, 2), np.dtype(np.float32))}


class _CacheInvalid(Exception):
    pass


def _read(path: Path, params: dict) -> LinesArrays:
    """Read and fully validate a cache file; raise _CacheInvalid saying what is wrong."""
    try:
        with h5py.File(path, "r") as f:
            for key, want in params.items():
                got = f.attrs.get(key)
                if got is None:
                    raise _CacheInvalid(f"attribute {key!r} missing")
                if got != want:
                    raise _CacheInvalid(f"parameter {key}={got!r}, expected {want!r}")
            stored_sum = f.attrs.get("sha256")
            if stored_sum is None:
                raise _CacheInvalid("attribute 'sha256' missing")
            data = {}
            for field, (shape, dtype) in _expected_layout(params["per_class"],
                                                          params["image_size"]).items():
                if field not in f:
                    raise _CacheInvalid(f"dataset {field!r} missing")
                ds = f[field]
                if ds.shape != shape or ds.dtype != dtype:
                    raise _CacheInvalid(f"dataset {field!r} is {ds.dtype}{list(ds.shape)}, "
                                        f"expected {dtype}{list(shape)}")
                data[field] = ds[()]
    except _CacheInvalid:
        raise
    except Exception as exc:  # h5py raises OSError/KeyError/RuntimeError on damaged files
        raise _CacheInvalid(f"unreadable ({type(exc).__name__}: {exc})") from exc
    try:
        arrays = LinesArrays(**data)
    except ValueError as exc:
        raise _CacheInvalid(str(exc)) from exc
    if _checksum(arrays) != str(stored_sum):
        raise _CacheInvalid("sha256 checksum mismatch")
    return arrays


def _write_atomic(path: Path, arrays: LinesArrays, params: dict) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        n = len(arrays)
        with h5py.File(tmp, "w") as f:
            for field in _FIELDS:
                a = getattr(arrays, field)
                chunks = (min(n, 1024), *a.shape[1:]) if n else None
                # gzip level 1: on these sparse arrays both smaller and faster to read than lzf
                f.create_dataset(field, data=a, chunks=chunks, compression="gzip",
                                 compression_opts=1)
            for key, value in params.items():
                f.attrs[key] = value
            f.attrs["sha256"] = _checksum(arrays)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_or_generate_lines(cache_dir, per_class: int = 1000, seed: int = 0,
                           image_size: int = 28, margin: float = 1.0,
                           progress: bool = True) -> LinesArrays:
    """Load the lines dataset from the cache, generating (and caching) it if needed."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_path(cache_dir, per_class, seed, image_size, margin)
    params = _params(per_class, seed, image_size, margin)
    if path.exists():
        try:
            arrays = _read(path, params)
        except _CacheInvalid as exc:
            logger.warning("Lines cache %s is corrupt or invalid (%s); regenerating it.",
                           path, exc)
        else:
            logger.info("Loaded lines dataset from cache %s", path)
            return arrays
    else:
        logger.info("No lines cache at %s; generating it.", path)
    arrays = generate_lines(per_class=per_class, seed=seed, image_size=image_size,
                            margin=margin, progress=progress)
    _write_atomic(path, arrays, params)
    return arrays
