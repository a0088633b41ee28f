"""The default images span the classes that matter (issue 11): both colours, lengths and widths,
six angles for the 96 lines classes, on a test split ordered by class."""
from __future__ import annotations

import torch

from pipeline.data.lines_labels import decode_label
from pipeline.visualization.inputs import spread_indices


def test_six_default_lines_images_span_every_variation():
    labels = torch.arange(96).repeat_interleave(3)  # ordered by class, as the generated test split is
    picks = spread_indices(labels, 6, 96)
    assert [int(labels[i]) for i in picks] == [0, 19, 38, 57, 76, 95]
    parts = [decode_label(int(labels[i])) for i in picks]
    assert [p["colour"] for p in parts] == [0, 1, 0, 1, 0, 1]
    assert [p["length"] for p in parts] == [0, 0, 0, 1, 1, 1]
    assert [p["width"] for p in parts] == [0, 0, 1, 0, 1, 1]
    assert [p["angle"] * 15 for p in parts] == [0, 135, 105, 60, 30, 165]


def test_spread_includes_the_last_class_and_every_class_when_there_are_few():
    assert spread_indices(torch.arange(10).repeat(5), 6, 10) == [0, 2, 4, 5, 7, 9]
    assert spread_indices(torch.arange(4).repeat(5), 6, 4) == [0, 1, 2, 3, 4, 5]
    assert spread_indices(torch.arange(10), 1, 10) == [0]
