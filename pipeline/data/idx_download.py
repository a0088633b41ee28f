"""Downloading the IDX files of a dataset spec (:mod:`pipeline.data.idx_specs`) from its
mirrors: each file into a temporary file next to its destination, checked (sha256 of the
decompressed bytes), and only then renamed into place, so a half-written or corrupt download
never looks like a complete file."""
from __future__ import annotations

import http.client
import logging
import os
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Sequence

from pipeline.data.idx import GZIP_MAGIC, IDXError, parse_idx, read_idx_bytes
from pipeline.data.idx_specs import (FILE_KEYS, DatasetNotFoundError, IdxDatasetSpec, files_in, not_found_message,
                                     sha256_hex)
from pipeline.leftovers import partial_prefix

__all__ = ["download_dataset_files"]

log = logging.getLogger(__name__)


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
    fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=partial_prefix(dest / base))
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            _fetch_to(url, fh, timeout, desc=base)
        try:
            data = read_idx_bytes(tmp)
        except IDXError as exc:
            raise _BadDownload(f"not a valid (gzipped) IDX file: {exc.problem}") from None
        if verify:
            actual = sha256_hex(data)
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
    dest = Path(os.path.expanduser(os.fspath(dest_dir)))
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
            found, _ = files_in(spec, dest)
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
        found, missing = files_in(spec, dest)
        if not missing:
            return found
    raise DatasetNotFoundError(
        not_found_message(spec, searched, failures, tried_download=True, dest=dest),
        dataset=spec.name, searched=searched, failures=failures)
