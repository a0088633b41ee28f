"""The words a figure uses for an image's class: ``"short thin 45° red"``, ``"digit 7"``, ``"Sandal"``.

Figures and report captions name an image by its class, not only by its test index; the names come
from the dataset's class names through :func:`pipeline.data.lines_labels.readable_name` (lines ids
become value words), and a digit of MNIST reads ``"digit 7"`` (a bare ``"7"`` next to an index reads
as a number).
"""
from __future__ import annotations

from pipeline.data.lines_labels import readable_name

__all__ = ["class_words", "image_words"]

#: datasets whose class names are digits that mean the digit drawn
DIGIT_DATASETS = ("mnist",)


def class_words(name, dataset: str | None = None) -> str:
    """The readable name of one class (a lines id, a digit, a folder name)."""
    words = readable_name(str(name))
    return f"digit {words}" if dataset in DIGIT_DATASETS and words.isdigit() else words


def image_words(label: int, class_names, dataset: str | None = None) -> str:
    """The class of one image in words; ``"class unknown"`` for an image without a label (a user's file, -1)."""
    label = int(label)
    if label < 0 or label >= len(class_names):
        return "class unknown"
    return class_words(class_names[label], dataset)
