"""What a report is made of: :class:`Section` (title, paragraphs, observations, tables, figures,
subsections), :class:`Table`, :class:`Figure`, and how a table cell reads (:func:`format_value`).
The jobs build sections; :mod:`pipeline.report.html` writes them as a page."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Figure", "Table", "Section", "format_value"]


@dataclass
class Figure:
    path: str | os.PathLike  # relative to the report's directory
    caption: str = ""
    wide: bool | None = None  # span the whole row; None: decide from the image (aspect >= 2.2)


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
