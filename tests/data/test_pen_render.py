"""Lines drawn by Pillow's pen (``data.augment.pillow``), checked by measuring the pixels."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.line_geometry import angle_error, measure_lines
from pipeline.data.line_styles import PEN_LENGTH_JITTER, STYLES, Augment, draw_params, render
from pipeline.data.lines_labels import ANGLES_DEG, LENGTHS_PX, NUM_CLASSES, WIDTHS_PX, decode_label
from pipeline.data.pen_render import PEN_LINE, PEN_NONE, PEN_POLYGON, draw_pen_lines, line_end_points


def _ink_per_px(pen, angle, length=15.0, width=3.0):
    m = draw_pen_lines([pen], [(14.3, 13.6)], [angle], [length], [width], [False])[0]
    return m.sum() / length


def test_pillows_wide_line_is_thinner_at_some_angles():
    """Why the mixture draws with Pillow itself: its 3-px line at 15 degrees has the ink of the
    course's 2-row "1 px" line, while its polygon, outline included, is up to a pixel wider
    than it was given at every angle."""
    assert _ink_per_px(PEN_LINE, 15.0) < 2.6 < 3.0 < _ink_per_px(PEN_LINE, 0.0)
    assert _ink_per_px(PEN_LINE, 60.0) > 3.4
    for angle in (0.0, 15.0, 60.0):
        assert 2.9 <= _ink_per_px(PEN_POLYGON, angle) <= 4.5


def test_whole_pixel_end_points_are_integers_and_keep_the_length():
    ends = line_end_points((13.37, 11.81), 30.0, 7.0, whole_pixels=True)
    assert all(float(v).is_integer() for v in ends)
    assert np.hypot(ends[2] - ends[0], ends[3] - ends[1]) == pytest.approx(7.0, abs=1.5)
    sub = line_end_points((13.37, 11.81), 30.0, 7.0, whole_pixels=False)
    assert np.hypot(sub[2] - sub[0], sub[3] - sub[1]) == pytest.approx(7.0)
    assert sub[3] < sub[1]  # counter-clockwise on screen: the far end is higher (y down)


def test_unknown_pen_is_refused():
    with pytest.raises(ValueError, match="PEN_LINE"):
        draw_pen_lines([7], [(14, 14)], [0.0], [7.0], [1.0], [False])


@pytest.fixture(scope="module")
def mixture():
    labels = np.repeat(np.arange(NUM_CLASSES), 16)
    aug = np.ones(len(labels), bool)
    with_pen = draw_params(labels, STYLES["course"], 3, augment=Augment(pillow=0.5, no_jpeg=1.0), augmented=aug)
    without = draw_params(labels, STYLES["course"], 3, augment=Augment(pillow=0.0, no_jpeg=1.0), augmented=aug)
    return labels, with_pen, without


def test_pen_share_and_nominal_sizes(mixture):
    labels, p, _ = mixture
    d = decode_label(labels)
    pen = p.pen != PEN_NONE
    lines = ~p.block
    assert not (pen & p.block).any()
    assert pen[lines].mean() == pytest.approx(0.5, abs=0.06)
    assert not p.anti_alias[pen].any() and (p.blur[pen] == 0).all()
    extra = p.lengths[pen] - np.asarray(LENGTHS_PX, float)[d["length"][pen]]
    assert PEN_LENGTH_JITTER[0] - 1e-9 <= extra.min() and extra.max() <= PEN_LENGTH_JITTER[1] + 1e-9
    line = p.pen == PEN_LINE
    assert (p.widths[line] == np.asarray(WIDTHS_PX, float)[d["width"][line]]).all()
    assert p.whole_px[line].any() and not p.whole_px[~line].any()


def test_the_pen_leaves_every_other_image_as_it_was(mixture):
    _, p, q = mixture
    rest = p.pen == PEN_NONE
    for name in ("centres", "angles", "lengths", "widths", "blur", "anti_alias", "brightness", "jpeg_quality", "block"):
        np.testing.assert_array_equal(getattr(p, name)[rest], getattr(q, name)[rest], err_msg=name)


def test_pen_images_show_their_labels(mixture):
    """The independent geometry checker reads the pen's lines as labelled: the angle within half a
    class step (long lines; short ones with whole-pixel ends are allowed the rounding), the line
    inside the image, short shorter than long."""
    labels, p, _ = mixture
    idx = np.flatnonzero(p.pen != PEN_NONE)
    images, masks = render(p.subset(idx))
    m, d = measure_lines(images), decode_label(labels[idx])
    assert masks.any(axis=(1, 2)).all() and not m["touches_border"].any()
    err = angle_error(m["angle_deg"], np.asarray(ANGLES_DEG)[d["angle"]])
    assert np.median(err) < 2.0
    assert err[d["length"] == 1].max() < 7.5
    assert np.median(m["length"][d["length"] == 0]) < np.median(m["length"][d["length"] == 1]) - 5
