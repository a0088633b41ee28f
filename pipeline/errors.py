"""Errors a user can fix: the entry points print their message (no traceback) and exit 2."""


class CnnvisError(Exception):
    """Base class for actionable errors (bad config, missing data, no checkpoint...)."""


class ConfigError(CnnvisError, ValueError):
    """A config value or combination is invalid; the message says which and what is valid."""


class NoCheckpointError(CnnvisError, FileNotFoundError):
    """No trained checkpoint was found; the message names the train command that makes one."""


def checkpoint_directory_hint(folder) -> str:
    """What to pass instead of a folder given as ``ckpt=``: the checkpoints it (or its checkpoints/) holds."""
    from pathlib import Path

    folder = Path(folder)
    found = sorted(folder.glob("*.ckpt")) + sorted((folder / "checkpoints").glob("*.ckpt"))
    if not found:
        return ("pass the .ckpt file itself, e.g. ckpt=outputs/train/<dataset>/<model>/<time>/checkpoints/best.ckpt "
                "(this folder holds none)")
    best = next((p for p in found if p.name == "best.ckpt"), found[0])
    names = ", ".join(str(p.relative_to(folder)) for p in found[:4]) + (" ..." if len(found) > 4 else "")
    return f"it holds {names}; pass one of them, e.g. ckpt={best}"
