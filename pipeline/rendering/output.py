"""Where every figure goes to disk: ``render.format`` (png | pdf | svg) at ``render.dpi``.

The entry scripts call :func:`configure_rendering` with the ``render`` config node before any work
(pipeline/cli.py); every ``render_*``/``plot_*`` function saves through :func:`save_figure`, so no
figure escapes the setting. The callers name their files ``<name>.png``; the suffix is replaced by
the format's. What :func:`save_figure` returns is the picture the HTML report shows: the file itself
for png and svg (browsers draw SVG), and for pdf a png written beside it (a browser's ``<img>``
does not show a PDF).
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.leftovers import atomic_file

FORMATS = ("png", "pdf", "svg")
MAX_DPI = 1200   # a 16x8 in figure at 1200 dpi is already ~180 megapixels


@dataclass(frozen=True)
class RenderSettings:
    format: str = "png"
    dpi: int | None = None   # None: each figure's own dpi
    workers: int | None = None   # processes drawing figures at once (pipeline/rendering/parallel.py); None: the job's cores

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ConfigError(f"render.format={self.format!r} is not a figure format: use one of "
                              f"{', '.join(FORMATS)} (e.g. render.format=pdf)")
        dpi = self.dpi
        if dpi is not None and (isinstance(dpi, bool) or not isinstance(dpi, int) or not 1 <= dpi <= MAX_DPI):
            raise ConfigError(f"render.dpi={dpi!r} is invalid: an integer from 1 to {MAX_DPI} (e.g. render.dpi=300), "
                              f"or null for each figure's own")
        w = self.workers
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
            raise ConfigError(f"render.workers={w!r} is invalid: a positive integer (1 = draw in the job's own "
                              f"process), or null for one per core of the job")


_current = RenderSettings()


def configure_rendering(render) -> RenderSettings:
    """Check and install the ``render`` config node (a mapping with ``format``, ``dpi``; None: defaults)."""
    global _current
    render = render or {}
    fmt = render.get("format", "png")
    _current = RenderSettings(format=str(fmt).lower() if isinstance(fmt, str) else fmt, dpi=render.get("dpi"),
                              workers=render.get("workers"))
    return _current


def rendering() -> RenderSettings:
    return _current


@contextmanager
def png_rendering():
    """Within: figures are saved as png (at ``render.dpi``), whatever ``render.format`` is -- for
    pictures that go into another viewer (TensorBoard images) rather than onto disk for people."""
    global _current
    saved = _current
    _current = dataclasses.replace(saved, format="png")
    try:
        yield
    finally:
        _current = saved


def save_figure(fig, path, dpi: float | None = None, **savefig_kwargs) -> Path:
    """Save ``fig`` as ``path`` with the configured format's suffix, at ``render.dpi`` (else ``dpi``,
    else the figure's own); returns the file the report shows (see the module docstring)."""
    settings = _current
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dpi = settings.dpi or dpi or fig.dpi
    target = path.with_suffix(f".{settings.format}")
    with atomic_file(target) as tmp:  # written beside, flushed, renamed: never a half-written figure
        fig.savefig(tmp, dpi=dpi, format=settings.format, **savefig_kwargs)
    if settings.format != "pdf":
        return target
    shown = path.with_suffix(".png")
    with atomic_file(shown) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", **savefig_kwargs)
    return shown


def shown_file(path) -> Path | None:
    """The picture a report shows for a figure saved as ``path`` by any run, whatever its
    ``render.format``: ``<name>.png`` (png, or beside a pdf), else ``<name>.svg``; None if neither."""
    path = Path(path)
    for suffix in (".png", ".svg"):
        if path.with_suffix(suffix).is_file():
            return path.with_suffix(suffix)
    return None
