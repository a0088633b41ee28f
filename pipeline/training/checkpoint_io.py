"""Checkpoints written whole or not at all: Lightning's ``CheckpointIO`` plugin of train.py.

Every checkpoint a run writes (``best.ckpt``, ``last.ckpt``, ``interrupted.ckpt``) is serialized
in memory, written beside its final name as ``<name>.partial-<pid>@<host>``, flushed to disk
(fsync) and renamed over the final name. So the previous ``last.ckpt`` stays whole until the new
one is complete, a killed run leaves at most a partial file (removed by the next run,
pipeline/leftovers.py), and a full disk is an error naming the file and its folder, with the
previous checkpoint untouched.
"""
from __future__ import annotations

import errno
import io
from pathlib import Path

from pytorch_lightning.plugins.io import TorchCheckpointIO

from pipeline.errors import CnnvisError
from pipeline.leftovers import write_bytes_atomic


class WriteError(CnnvisError):
    """A run's file could not be written (full disk, read-only folder); the message names it and its folder."""

    def __init__(self, message: str, path: Path | None = None, errno_: int | None = None):
        super().__init__(message)
        self.path, self.errno = path, errno_


class CheckpointWriteError(WriteError):
    """A checkpoint could not be written."""


def write_error_message(path: Path, exc: OSError, what: str = "file") -> str:
    path = Path(path)
    reason = exc.strerror or str(exc)
    kept = f" The previous {path.name} there is kept whole." if path.is_file() else ""
    fix = "free space there" if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG) \
        else "make it writable"
    return (f"cannot write the {what} {path.name} in the folder {path.parent}: {reason}.{kept} Fix: {fix}, or "
            f"write elsewhere with paths.root_dir=DIR (every output under DIR/outputs).")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves go through :func:`pipeline.leftovers.atomic_file`."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        import torch

        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        path = Path(path)
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, buf.getvalue())
        except OSError as exc:
            raise CheckpointWriteError(write_error_message(path, exc, "checkpoint"), path, exc.errno) from exc
