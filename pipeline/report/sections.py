"""What a report is made of: :class:`Section` (title, paragraphs, observations, tables, figures,
subsections), :class:`Table`, :class:`Figure`, and how a table cell reads (:func:`format_value`).
The jobs build sections; :mod:`pipeline.report.html` writes them as a page."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Figure", "Table", "Section", "format_percent", "format_value", "is_percent_column"]


@dataclass
class Figure:
    path: str | os.PathLike  # relative to the report's directory
    caption: str = ""        # a line break starts a new line in the legend
    wide: bool | None = None  # span the whole row; None: decide from the image (aspect >= 2.2)
    folded: bool = False     # shown under "n more figures", closed until clicked (the section's other figures first)
    href: str | None = None  # where a click on the picture goes ("#anchor" of a section); None: the file at full size
    max_width: int | None = None  # shown at most this wide (CSS px): a thumbnail; None: the picture's own width


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    observations: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    subsections: list["Section"] = field(default_factory=list)
    # the job's headline numbers (name -> value): a sweep's index shows them beside the run
    key_numbers: dict[str, Any] = field(default_factory=dict)
    folded: bool = False       # everything below the heading closed until clicked (a <details>)
    anchor: str | None = None  # the section's id in the page (links "#anchor"); None: made from the title
    note: str = ""             # a short line beside the heading (what a folded section holds)
    links: list[tuple[str, str]] = field(default_factory=list)  # (text, href) shown under the paragraphs


def format_value(value: Any) -> str:
    """Text of a table cell: floats with 4 significant digits (no float noise), ints with
    thousands separators, NaN as an en dash, None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalar
        value = value.item()
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "\u2013"
        if math.isinf(value):
            return "\u221e" if value > 0 else "-\u221e"
        if value == 0:
            return "0"
        a = abs(value)
        if a >= 1e6 or a < 1e-3:
            return f"{value:.3e}"
        if a >= 1000:
            return f"{value:,.1f}"
        text, digits = f"{value:.4g}", 4
        while a < 1 and digits < 8 and float(text) in (1.0, -1.0):  # 0.99996 must not read "1"
            digits += 1
            text = f"{value:.{digits}g}"
        return text
    return str(value)


def format_percent(share: float) -> str:
    """A share in [0, 1] as the reports write a percentage: one decimal, as the jobs' sentences do
    (``0.6234`` -> ``"62.3%"``), the exact ends without one (``"0%"``, ``"100%"``)."""
    if share is None or (isinstance(share, float) and math.isnan(share)):
        return "\u2013"
    if share in (0, 1):
        return f"{share * 100:.0f}%"
    return f"{share * 100:.1f}%"


#: table columns whose values are shares, shown as percentages (the jobs' sentences say "62.3% of the
#: activations are zero"; the table beside them says the same, not 0.6234); matched in the lower-cased header
PERCENT_COLUMNS = ("sparsity", "share", "energy", "pointing game", "dead channels", "zeros")


def is_percent_column(header: str) -> bool:
    h = header.lower()
    return any(w in h for w in PERCENT_COLUMNS)
