"""Loading checkpoints without running code from them.

A ``.ckpt`` is a pickle: loading one with ``torch.load(weights_only=False)`` runs whatever
callables it names, so a checkpoint from elsewhere could run arbitrary code. Every checkpoint the
pipeline reads (``visualize.py ckpt=``, ``eval.py ckpt=``, ``train.py resume=``) is loaded with
``weights_only=True``: tensors, numbers, strings, lists and dicts only. A file that needs more is
refused with a message naming what it holds (e.g. ``builtins.exec``); there is no fallback to an
unsafe load. A damaged or truncated file gets its own message.
"""
from __future__ import annotations

import pickle
from pathlib import Path

from pipeline.errors import CnnvisError


class CheckpointLoadError(CnnvisError, ValueError):
    """A checkpoint that cannot be loaded safely; the message says which file and why."""


class UnsafeCheckpointError(CheckpointLoadError):
    """The checkpoint holds pickled objects that loading would have to execute."""


def _unsafe_globals(path: Path) -> list[str]:
    import torch

    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # not a zip checkpoint (legacy pickle) or unreadable: nothing more to name
        return []


def _weights_only_reason(exc: BaseException) -> str:
    """The WeightsUnpickler's own line out of torch's long message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "WeightsUnpickler error:" in ln:
            rest = ln.split("WeightsUnpickler error:", 1)[1].strip() or (lines[i + 1] if i + 1 < len(lines) else "")
            return rest.split(" Please use", 1)[0].strip()
    return lines[0] if lines else type(exc).__name__


def explain_load_failure(path: Path, exc: BaseException, what: str) -> CheckpointLoadError:
    """The error to raise when loading ``path`` (given as ``what``, e.g. ``ckpt=...``) failed with ``exc``."""
    path = Path(path)
    if isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in str(exc):
        names = _unsafe_globals(path)
        if names:
            return UnsafeCheckpointError(
                f"{what}: refused: the file holds pickled Python objects that loading would have to run "
                f"({', '.join(names)}), not only tensors and plain values. cnnvis loads checkpoints with "
                f"torch.load(weights_only=True) and never falls back to an unsafe load; nothing from the file was "
                f"executed. Use a checkpoint written by train.py (outputs/train/.../checkpoints/best.ckpt), or ask "
                f"whoever made this one for a file saved with tensors and plain types only.")
        return CheckpointLoadError(
            f"{what}: cannot load it as a cnnvis training checkpoint: torch.load(weights_only=True) cannot read it "
            f"({_weights_only_reason(exc)}); it is a damaged file, a plain pickle or not a checkpoint at all. Nothing "
            f"in it was run. Use a .ckpt written by train.py (outputs/train/.../checkpoints/best.ckpt).")
    size = path.stat().st_size if path.is_file() else 0
    first = str(exc).split(". ", 1)[0].splitlines()[0] if str(exc) else ""
    reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return CheckpointLoadError(
        f"{what}: cannot load it as a cnnvis training checkpoint ({reason}; {size} bytes): the file is damaged, "
        f"truncated or not a checkpoint. Use a .ckpt written by train.py (outputs/train/.../checkpoints/best.ckpt).")


def read_checkpoint(path: Path, what: str | None = None, map_location="cpu") -> dict:
    """The checkpoint's dict, loaded with ``weights_only=True``; :class:`CheckpointLoadError` otherwise."""
    import torch

    path = Path(path)
    what = what or str(path)
    try:
        ckpt = torch.load(str(path), map_location=map_location, weights_only=True)
    except Exception as exc:
        raise explain_load_failure(path, exc, what) from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointLoadError(f"{what}: not a training checkpoint (no state_dict in it). Use a .ckpt written by "
                                  f"train.py (outputs/train/.../checkpoints/last.ckpt or best.ckpt).")
    return ckpt


def load_lit_module(path: Path, what: str, map_location="cpu"):
    """The ``LitClassifier`` of a train.py checkpoint, loaded with ``weights_only=True``."""
    from pipeline.training.lit_module import LitClassifier

    path = Path(path)
    try:
        return LitClassifier.load_from_checkpoint(str(path), map_location=map_location, weights_only=True)
    except CnnvisError:
        raise
    except Exception as exc:
        if isinstance(exc, pickle.UnpicklingError) or not _is_zip_checkpoint(path):
            raise explain_load_failure(path, exc, what) from exc
        not_lightning = _not_a_lightning_checkpoint(path, what)
        if not_lightning is not None:
            raise not_lightning from exc
        if isinstance(exc, RuntimeError) and "Error(s) in loading state_dict" in str(exc):
            raise CheckpointLoadError(
                f"{what}: its weights do not fit the network its hyper-parameters describe: "
                f"{_key_mismatch(str(exc))}. The file was changed after train.py wrote it (renamed or removed "
                f"tensors) or was written by another version of the model; use a .ckpt written by train.py "
                f"as it is.") from exc
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointLoadError(
            f"{what}: cannot load it as a cnnvis training checkpoint ({type(exc).__name__}: {first}). Use a .ckpt "
            f"written by train.py (outputs/train/.../checkpoints/best.ckpt).") from exc


SHOWN_KEYS = 6


def _key_mismatch(message: str) -> str:
    """torch's "Missing key(s) ... Unexpected key(s) ..." lines, each cut to a few key names."""
    import re

    parts = []
    for line in message.splitlines()[1:]:
        line = line.strip()
        if not line:
            continue
        head, _, rest = line.partition(":")
        keys = re.findall(r'"([^"]+)"', rest)
        if keys:
            more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
            head = head.replace("in state_dict", "").strip()
            parts.append(f"{head} {', '.join(keys[:SHOWN_KEYS])}{more}")
        else:
            parts.append(line.rstrip("."))
    return "; ".join(parts) or message.splitlines()[0]


def _not_a_lightning_checkpoint(path: Path, what: str) -> CheckpointLoadError | None:
    """The error for a readable file that is not a Lightning checkpoint (a plain ``state_dict``, another
    dict), naming what it holds; None when it is one (or cannot be read: the caller's error stands)."""
    import torch

    try:
        content = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        return None
    if isinstance(content, dict) and "state_dict" in content and "pytorch-lightning_version" in content:
        return None
    expected = ("cnnvis loads a Lightning checkpoint written by train.py (a dict with state_dict, hyper_parameters "
                "and pytorch-lightning_version), e.g. outputs/train/<dataset>/<model>/<time>/checkpoints/best.ckpt")
    if isinstance(content, dict) and content and all(isinstance(v, torch.Tensor) for v in content.values()):
        names = list(content)
        return CheckpointLoadError(
            f"{what} is a plain state_dict ({len(names)} tensors: {', '.join(map(str, names[:3]))}"
            f"{', ...' if len(names) > 3 else ''}), weights with no record of the network or its classes. {expected}. "
            f"visualize.py reads a plain state_dict with model=custom model.net._target_=my_package.MyNet "
            f"(plus its arguments) dataset=...")
    kind = (f"a dict with keys {', '.join(map(str, list(content)[:6]))}" if isinstance(content, dict)
            else f"a {type(content).__name__}")
    return CheckpointLoadError(f"{what} is {kind}, not a training checkpoint. {expected}.")


def _is_zip_checkpoint(path: Path) -> bool:
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as zf:
            return bool(zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
