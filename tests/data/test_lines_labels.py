"""The readable class names of lines: one function (readable_name) gives the name every figure and
report shows, and the heads' value names agree with it."""
from __future__ import annotations

from pipeline.data.lines_labels import (
    HEAD_VALUES,
    class_factors,
    class_names,
    encode_label,
    head_class_names,
    readable_name,
)


def test_readable_name_of_a_lines_class():
    assert readable_name("1_0_8_0") == "long thin 120\N{DEGREE SIGN} red"
    assert readable_name("0_1_0_1") == "short thick 0\N{DEGREE SIGN} blue"
    label = encode_label(1, 1, 9, 0)
    assert readable_name(class_names()[label]) == "long thick 135\N{DEGREE SIGN} red"


def test_other_names_are_left_alone():
    assert readable_name("7") == "7" and readable_name("Ankle boot") == "Ankle boot"
    assert readable_name("1_0_12_0") == "1_0_12_0"  # not a lines class (angle 12 does not exist)


def test_head_names_and_class_names_read_the_same():
    names = head_class_names("aggregate", 96, class_names())
    assert len(set(names)) == 96
    for name in names:  # each word is the value name the head itself shows
        length, width, angle, colour = name.split(" ")
        assert (length, width, angle, colour) in [(a, b, c, d) for a in HEAD_VALUES["length"]
                                                  for b in HEAD_VALUES["width"] for c in HEAD_VALUES["angle"]
                                                  for d in HEAD_VALUES["colour"]]
    assert head_class_names("angle", 12, class_names())[8] == "120\N{DEGREE SIGN}"
    assert head_class_names("class", 3, ["a", "b", "c"]) == ["a", "b", "c"]


def test_class_factors_only_for_the_96_lines_classes():
    assert class_factors(class_names()) == HEAD_VALUES
    assert class_factors(head_class_names("aggregate", 96, class_names())) == HEAD_VALUES
    assert class_factors([str(i) for i in range(96)]) is None
    assert class_factors(["0", "1"]) is None
