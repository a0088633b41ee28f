"""Temporary ("partial") files: how they are named, and removing the ones a killed run left.

Every file the pipeline writes atomically is first written as ``<name>.partial-<pid>@<host>``
(``mkstemp`` names add ``~<random>``) next to its final name and renamed when complete, so a run
killed mid-write (``kill -9``, a lost node) leaves only such a file. The name says which process
wrote it, so :func:`remove_stale_partials` can delete exactly the partial files whose writer is
gone, on this host, and never touch one that a running process (a parallel sweep job) is writing
or one written on another host of a shared file system.

Older names without the host (``<name>.partial-<pid>``, ``figures.partial``) are removed only when
their pid is not running here and they have not been modified for :data:`LEGACY_GRACE_S` seconds.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from pipeline.processes import hostname, writer_alive

log = logging.getLogger(__name__)

LEGACY_GRACE_S = 3600.0

_PARTIAL = re.compile(r"\.partial(?:-(?P<pid>\d+)(?:@(?P<host>[^~/]+))?)?(?:~[^/]*)?$")


def _tag() -> str:
    return f"partial-{os.getpid()}@{hostname()}"


def partial_path(path: Path) -> Path:
    """The temporary name to write ``path`` under: ``<name>.partial-<pid>@<host>``."""
    path = Path(path)
    return path.with_name(f"{path.name}.{_tag()}")


@contextmanager
def atomic_file(path):
    """Write ``path`` whole or not at all: yields the partial name to write, then flushes it to disk
    (fsync) and renames it over ``path``; on any error (a full disk, Ctrl-C) the partial file is
    removed and ``path`` keeps its previous content, if it had one."""
    path = Path(path)
    tmp = partial_path(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Flush a rename to disk (the folder's entry); best effort: some file systems refuse it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path, data: bytes) -> Path:
    """``path`` holds ``data``, written by :func:`atomic_file`."""
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(path)


def write_text_atomic(path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode())


def partial_prefix(path: Path) -> str:
    """A ``tempfile.mkstemp`` prefix for ``path`` (hidden): ``.<name>.partial-<pid>@<host>~``."""
    return f".{Path(path).name}.{_tag()}~"


def is_stale_partial(path: Path, now: float | None = None) -> bool:
    """True for a partial file (or folder) whose writer is gone; False for anything else."""
    m = _PARTIAL.search(Path(path).name)
    if m is None:
        return False
    pid, host = m.group("pid"), m.group("host")
    if host is not None:
        return writer_alive(int(pid), host) is False
    # an older name: no host, maybe no pid; it may come from another machine sharing the disk
    if pid is not None and writer_alive(int(pid)) is not False:
        return False
    try:
        age = (now if now is not None else time.time()) - Path(path).lstat().st_mtime
    except OSError:
        return False
    return age > LEGACY_GRACE_S


def remove_own_partials(root) -> list[Path]:
    """Delete the partial files and folders that this process left under ``root`` (a job that
    stopped, e.g. on Ctrl-C between creating a partial file and the code that cleans it up)."""
    removed: list[Path] = []
    if root is None or not Path(root).is_dir():
        return removed
    own = f".{_tag()}"
    for dirpath, dirnames, filenames in os.walk(root):
        for name in list(dirnames):
            if own in name:
                shutil.rmtree(Path(dirpath) / name, ignore_errors=True)
                dirnames.remove(name)
                removed.append(Path(dirpath) / name)
        for name in filenames:
            if own in name:
                (Path(dirpath) / name).unlink(missing_ok=True)
                removed.append(Path(dirpath) / name)
    return removed


def remove_stale_partials(*roots) -> list[Path]:
    """Delete the stale partial files and folders under each root (recursively); returns them."""
    removed: list[Path] = []
    now = time.time()
    for root in roots:
        if root is None or not Path(root).is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in list(dirnames):
                p = Path(dirpath) / name
                if ".partial" in name and is_stale_partial(p, now):
                    shutil.rmtree(p, ignore_errors=True)
                    dirnames.remove(name)
                    removed.append(p)
            for name in filenames:
                p = Path(dirpath) / name
                if ".partial" in name and is_stale_partial(p, now):
                    try:
                        p.unlink()
                    except OSError:
                        continue
                    removed.append(p)
    if removed:
        shown = ", ".join(str(p) for p in removed[:5]) + (f" and {len(removed) - 5} more" if len(removed) > 5 else "")
        log.info("removed %d partial file(s) left by killed runs: %s", len(removed), shown)
    return removed
