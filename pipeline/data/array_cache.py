"""A checksummed HDF5 cache for datasets that are expensive to build (generated or decoded).

One file per parameter set: the named arrays as datasets, the parameters as attributes (one
per key, scalars or strings) and a sha256 of the arrays' bytes. Files are written under a
temporary name in the same directory and moved into place with :func:`os.replace` once
complete, so an interrupted write never leaves a file that looks whole. A cache that cannot be
used (unreadable or truncated file, checksum mismatch, other parameters, missing arrays, a
failed shape check) is never used silently: a WARNING names the file and the problem, and the
data are rebuilt and the file rewritten.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Mapping

import h5py
import numpy as np

from pipeline.leftovers import partial_prefix

logger = logging.getLogger(__name__)


class CacheInvalid(Exception):
    """A cache file that must not be used; the message says why."""


def params_digest(params: Mapping) -> str:
    """A short stable digest of a parameter set (for file names)."""
    return hashlib.sha256(json.dumps(dict(params), sort_keys=True, default=str).encode()).hexdigest()[:12]


def checksum(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def read_cache(path: Path, params: Mapping, names,
               check: Callable[[dict], object] | None = None) -> dict[str, np.ndarray]:
    """The arrays ``names`` of a cache file written for ``params``, after ``check(arrays)`` (which
    raises ValueError to say what is wrong) and the checksum; raises :class:`CacheInvalid`."""
    try:
        with h5py.File(path, "r") as f:
            for key, want in params.items():
                got = f.attrs.get(key)
                if got is None:
                    raise CacheInvalid(f"attribute {key!r} missing")
                if isinstance(got, bytes):
                    got = got.decode()
                if got != want:
                    raise CacheInvalid(f"parameter {key}={got!r}, expected {want!r}")
            stored_sum = f.attrs.get("sha256")
            if stored_sum is None:
                raise CacheInvalid("attribute 'sha256' missing")
            data = {}
            for name in names:
                if name not in f:
                    raise CacheInvalid(f"dataset {name!r} missing")
                data[name] = f[name][()]
    except CacheInvalid:
        raise
    except Exception as exc:  # h5py raises OSError/KeyError/RuntimeError on damaged files
        raise CacheInvalid(f"unreadable ({type(exc).__name__}: {exc})") from exc
    if check is not None:
        try:
            check(data)
        except ValueError as exc:
            raise CacheInvalid(str(exc)) from exc
    if checksum(data) != str(stored_sum):
        raise CacheInvalid("sha256 checksum mismatch")
    return data


def _hdf5_bytes(arrays: Mapping[str, np.ndarray], params: Mapping) -> bytes:
    """The cache file's content, built in memory: h5py never writes to the disk itself, so a full
    disk is an ordinary OSError of the plain write below, never an HDF5 error from inside h5py
    (which crashed the process when the file it still held was removed)."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for name, a in arrays.items():
            n = len(a)
            chunks = (min(n, 1024), *a.shape[1:]) if n and a.ndim else None
            # gzip level 1: on these sparse arrays both smaller and faster to read than lzf
            f.create_dataset(name, data=a, chunks=chunks, compression="gzip" if chunks else None,
                             compression_opts=1 if chunks else None)
        for key, value in params.items():
            f.attrs[key] = value
        f.attrs["sha256"] = checksum(arrays)
    return buf.getvalue()


def write_cache(path: Path, arrays: Mapping[str, np.ndarray], params: Mapping) -> None:
    """Write ``arrays`` and ``params`` to ``path`` atomically (temporary file, fsync, rename).

    A failed write (full disk, read-only folder) removes the temporary file and raises OSError
    naming ``path`` (not the temporary name), so the message points at the cache folder."""
    path = Path(path)
    data = _hdf5_bytes(arrays, params)
    tmp = None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=partial_prefix(path))
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as fh:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fh.fileno(), 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path)) from exc
        raise


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def load_or_build(path: Path, params: Mapping, names, build: Callable[[], Mapping[str, np.ndarray]],
                  check: Callable[[dict], object] | None = None, what: str = "dataset") -> dict:
    """The cached arrays at ``path`` when valid for ``params`` (and ``check(arrays)`` raises no
    ValueError), else ``build()``, written to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        try:
            arrays = read_cache(path, params, names, check)
        except CacheInvalid as exc:
            logger.warning("Cache %s is corrupt or invalid (%s); regenerating it.", path, exc)
        else:
            logger.info("Loaded %s from cache %s", what, path)
            return arrays
    if not os.access(path.parent, os.W_OK | os.X_OK):  # refuse before the (long) build, not after it
        raise OSError(errno.EROFS if _read_only_fs(path.parent) else errno.EACCES,
                      f"the cache folder {path.parent} cannot be written (read-only), checked before building the data",
                      str(path))
    if not path.exists():
        logger.info("No %s cache at %s; building it.", what, path)
    arrays = dict(build())
    write_cache(path, arrays, params)
    return arrays
