"""The lines vocabulary, defined once: the heads, the names of their values, the label
encoding and the class names. The dataset, the multihead model, training and the jobs all
read it from here.

==========  ==========================================  =====================
head        values                                      index
==========  ==========================================  =====================
length      short, long                                 0, 1
width       thin, thick                                 0, 1
angle       0, 15, ..., 165 degrees with the x-axis     0 .. 11
colour      red, blue                                   0, 1
==========  ==========================================  =====================

96 classes; ``label = ((length * 2 + width) * 12 + angle) * 2 + colour`` (mixed radix in the
order of :data:`HEADS`) and the class name is ``"length_width_angle_colour"`` (``"1_1_9_0"``:
long, thick, red, 135 degrees). A 2-valued head is a 1-unit (sigmoid) output of the multihead
model whose probability is that of value 1 (long / thick / blue).
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

__all__ = ["LENGTHS_PX", "WIDTHS_PX", "ANGLES_DEG", "COLOURS", "COLOUR_RGB", "HEAD_VALUES", "HEADS", "NUM_CLASSES", "encode_label", "decode_label",
           "split_label", "join_label", "class_names", "readable_name", "class_factors", "head_class_names"]

#: The course sheet's sizes of the short / long and thin / thick lines (the ``sheet`` style draws them exactly).
LENGTHS_PX: tuple[float, ...] = (7.0, 15.0)
WIDTHS_PX: tuple[float, ...] = (1.0, 3.0)
ANGLES_DEG: tuple[int, ...] = tuple(range(0, 180, 15))
COLOURS: tuple[str, ...] = ("red", "blue")
COLOUR_RGB: dict[str, tuple[int, int, int]] = {"red": (255, 0, 0), "blue": (0, 0, 255)}
#: The readable name of each value of each head, in label order.
HEAD_VALUES: dict[str, tuple[str, ...]] = {
    "length": ("short", "long"),
    "width": ("thin", "thick"),
    "angle": tuple(f"{a}\u00b0" for a in ANGLES_DEG),
    "colour": COLOURS,
}
#: Ordered: the multihead model's heads (values per head) and the label order of a class name.
HEADS: dict[str, int] = {head: len(values) for head, values in HEAD_VALUES.items()}
NUM_CLASSES: int = math.prod(HEADS.values())  # 96


def split_label(labels, heads: Mapping[str, int] = HEADS) -> dict:
    """Class indices (a torch tensor or numpy array) -> one index per head, for the mixed-radix
    label of ``heads`` (no range checks: see :func:`decode_label`)."""
    out = {}
    rest = labels
    for name, n in reversed(list(heads.items())):
        out[name] = rest % n
        rest = rest // n
    return {name: out[name] for name in heads}


def join_label(parts: Mapping, heads: Mapping[str, int] = HEADS):
    """The inverse of :func:`split_label`: one index per head -> class indices."""
    label = next(iter(parts.values())) * 0
    for name, n in heads.items():
        label = label * n + parts[name]
    return label


def encode_label(length, width, angle, colour):
    """Class index from the four head indices (ints or integer arrays), range-checked."""
    parts = {"length": length, "width": width, "angle": angle, "colour": colour}
    arrays = {}
    for name, value in parts.items():
        arr = np.asarray(value)
        if arr.dtype.kind not in "iub":
            raise TypeError(f"{name} index must be an integer, got dtype {arr.dtype}")
        if np.any(arr < 0) or np.any(arr >= HEADS[name]):
            raise ValueError(f"{name} index out of range [0, {HEADS[name]}): {value!r}")
        arrays[name] = arr.astype(np.int64)
    label = join_label(arrays)
    return int(label) if all(np.ndim(v) == 0 for v in parts.values()) else label


def decode_label(label) -> dict[str, np.ndarray | int]:
    """Head indices of a class index (int or integer array), range-checked, keys in HEADS order."""
    arr = np.asarray(label)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"label must be an integer, got dtype {arr.dtype}")
    if np.any(arr < 0) or np.any(arr >= NUM_CLASSES):
        raise ValueError(f"label out of range [0, {NUM_CLASSES}): {label!r}")
    out = split_label(arr.astype(np.int64))
    return {name: (int(v) if arr.ndim == 0 else v) for name, v in out.items()}


def class_names() -> list[str]:
    """The 96 class names ``"length_width_angle_colour"``; index = class."""
    d = decode_label(np.arange(NUM_CLASSES))
    return ["_".join(str(int(d[h][i])) for h in HEADS) for i in range(NUM_CLASSES)]


_ID_INDEX: dict[str, int] = {name: i for i, name in enumerate(class_names())}


def readable_name(name: str) -> str:
    """The name a person reads for a class: a lines class id ``"1_0_8_0"`` becomes
    ``"long thin 120\u00b0 red"`` (the value names of :data:`HEAD_VALUES`, in head order); any
    other name (a digit, a folder name) is returned unchanged. Figures and reports show this;
    file names and CSV files keep the ids."""
    label = _ID_INDEX.get(str(name))
    if label is None:
        return str(name)
    parts = decode_label(label)
    return " ".join(HEAD_VALUES[h][parts[h]] for h in HEADS)


def class_factors(names) -> dict[str, tuple[str, ...]] | None:
    """:data:`HEAD_VALUES` when ``names`` are the 96 lines classes in label order (as ids or as
    readable names), else None: a figure of all classes can then group them by variation."""
    names = [str(n) for n in names]
    if len(names) != NUM_CLASSES:
        return None
    ids = class_names()
    return dict(HEAD_VALUES) if names in (ids, [readable_name(c) for c in ids]) else None


def head_class_names(head: str, n_classes: int, class_names: list[str]) -> list[str]:
    """Readable class names of one output head: the dataset's names (through
    :func:`readable_name`) for the single head ("class") and the re-joined "aggregate", the
    value names for a lines head."""
    if head in ("class", "aggregate"):
        return [readable_name(c) for c in class_names]
    names = HEAD_VALUES.get(head)
    return list(names) if names and len(names) == n_classes else [str(i) for i in range(n_classes)]
