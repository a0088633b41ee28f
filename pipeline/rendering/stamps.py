"""Which code drew a training run's figures, so that the visualize report can reuse them.

The visualize report shows the learning curves and confusion matrices of its checkpoint's training
run as this version's code draws them (pipeline/report/train_report.py), which takes seconds. When
train.py (or eval.py) draws them, it leaves ``figures.json`` beside them, in ``curves/`` and
``confusion/``: a digest of the drawing code (the source files in ``_DRAWING_CODE`` and matplotlib's
version), ``render.format``/``render.dpi``, the figures' title, a digest of each input CSV and the
figures drawn. When all of these match what a redraw would use, the figures are the redraw's, so
the report copies them (:func:`reusable_figures`); a run trained by an older version, with another
render setting, or whose numbers changed since, is drawn again.
"""
from __future__ import annotations

import functools
import hashlib
import json
import shutil
from pathlib import Path

from pipeline.leftovers import partial_path
from pipeline.rendering.output import rendering

__all__ = ["STAMP_NAME", "drawing_code_digest", "write_stamp", "reusable_figures", "copy_figures"]

STAMP_NAME = "figures.json"

#: the source files (below pipeline/) whose code decides a training figure's pixels
_DRAWING_CODE = ("rendering/training_plots.py", "rendering/confusion_plots.py", "rendering/output.py",
                 "rendering/style.py", "rendering/stamps.py", "data/lines_labels.py", "training/artifacts.py",
                 "report/train_report.py")


@functools.cache
def drawing_code_digest() -> str:
    from importlib.metadata import version

    digest = hashlib.sha256(f"matplotlib {version('matplotlib')}\n".encode())
    root = Path(__file__).resolve().parents[1]
    for rel in _DRAWING_CODE:
        digest.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _stamp(inputs, title: str | None, figures) -> dict:
    settings = rendering()
    return {"code": drawing_code_digest(), "render": {"format": settings.format, "dpi": settings.dpi},
            "title": title, "inputs": {Path(p).name: _file_digest(p) for p in sorted(map(Path, inputs))},
            "figures": sorted(Path(f).stem for f in figures)}


def write_stamp(folder, inputs, figures, title: str | None = None) -> None:
    """Record in ``folder/figures.json`` that ``figures`` (paths or names, one per figure) were drawn
    just now from the files ``inputs`` with ``title``, under the current render settings (no
    figures: nothing to record)."""
    if not figures:
        return
    folder = Path(folder)
    tmp = partial_path(folder / STAMP_NAME)
    tmp.write_text(json.dumps(_stamp(inputs, title, figures), indent=2) + "\n")
    tmp.replace(folder / STAMP_NAME)


def _written(folder: Path, stem: str, fmt: str) -> list[Path]:
    """The files :func:`pipeline.rendering.output.save_figure` writes for one figure."""
    return [folder / f"{stem}.{fmt}"] + ([folder / f"{stem}.png"] if fmt == "pdf" else [])


def reusable_figures(folder, inputs, title: str | None = None) -> list[Path] | None:
    """The files of ``folder``'s figures if its stamp says that this version's code, under the
    current render settings, drew them from exactly ``inputs`` (same names, same bytes) with
    ``title``, and all of them are there; else None (draw them again)."""
    folder = Path(folder)
    try:
        stored = json.loads((folder / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or not isinstance(stored.get("figures"), list):
        return None
    try:
        if stored != _stamp(inputs, title, stored["figures"]):
            return None
    except OSError:
        return None
    fmt = rendering().format
    files = [p for stem in stored["figures"] for p in _written(folder, str(stem), fmt)]
    return files if all(p.is_file() for p in files) else None


def copy_figures(files, out_dir) -> None:
    """Copy ``files`` into ``out_dir`` (each written as a partial file and renamed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for src in files:
        tmp = partial_path(out_dir / Path(src).name)
        shutil.copyfile(src, tmp)
        tmp.replace(out_dir / Path(src).name)
