"""Line styles and the training-time randomization, checked by measuring the pixels."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.line_geometry import angle_error, measure_lines
from pipeline.data.line_styles import STYLES, Augment, draw_params, get_style, render
from pipeline.data.lines import generate_lines
from pipeline.data.lines_labels import ANGLES_DEG, NUM_CLASSES, decode_label

PER_CLASS = 8


@pytest.fixture(scope="module")
def course():
    """The soft style: the anti-aliased approximation of the course's files (the style called
    ``course`` before the course's generator was known); ``course`` is that generator itself
    (tests/data/test_course_style.py)."""
    return generate_lines(per_class=PER_CLASS, seed=4, style="soft", progress=False)


def _medians(images, labels):
    m, d = measure_lines(images), decode_label(labels)
    return m, d, {
        "short": np.median(m["length"][d["length"] == 0]), "long": np.median(m["length"][d["length"] == 1]),
        "thin": np.median(m["width"][d["width"] == 0]), "thick": np.median(m["width"][d["width"] == 1]),
    }


def test_soft_style_measures_like_the_course_files(course):
    """The issue's table (course's files, measured from pixels): lengths 8.8 / 16.8, widths
    2.4 / 4.1, brightest pixel median 219 (about 175-255), centres 12.4 +- 3.3 / 10.5 +- 2.9,
    angle error 0.4 degrees, 100 % colour, no line touching the border."""
    m, d, med = _medians(course.images, course.labels)
    assert med["short"] == pytest.approx(8.8, abs=0.4) and med["long"] == pytest.approx(16.8, abs=0.4)
    assert med["thin"] == pytest.approx(2.4, abs=0.2) and med["thick"] == pytest.approx(4.1, abs=0.2)
    assert np.median(m["peak"]) == pytest.approx(219, abs=15)
    assert np.percentile(m["peak"], 5) > 140 and np.percentile(m["peak"], 95) >= 245
    assert m["centre_x"].mean() == pytest.approx(12.4, abs=0.5) and m["centre_x"].std() == pytest.approx(3.3, abs=0.5)
    assert m["centre_y"].mean() == pytest.approx(10.5, abs=0.5) and m["centre_y"].std() == pytest.approx(2.9, abs=0.5)
    err = angle_error(m["angle_deg"], np.asarray(ANGLES_DEG)[d["angle"]])
    assert np.median(err) < 0.6 and err.max() < 5
    assert (m["colour"] == np.where(d["colour"] == 0, 0, 2)).all()
    assert not m["touches_border"].any()


def test_soft_labels_are_what_the_pixels_show(course):
    """Every short line measures shorter than every long one; widths separate by class."""
    m, d, _ = _medians(course.images, course.labels)
    assert m["length"][d["length"] == 0].max() < m["length"][d["length"] == 1].min()
    assert m["width"][d["width"] == 0].max() < m["width"][d["width"] == 1].min()


def test_soft_masks_cover_the_line(course):
    masks, images = course.masks, course.images.max(axis=1)
    assert masks.any(axis=(1, 2)).all()
    # the mask holds the bright core: the brightest pixel of every image lies on it (or next to it after JPEG)
    n = len(images)
    flat = images.reshape(n, -1).argmax(1)
    r, c = np.divmod(flat, images.shape[-1])
    near = np.zeros(n, dtype=bool)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            rr, cc = np.clip(r + dr, 0, 27), np.clip(c + dc, 0, 27)
            near |= masks[np.arange(n), rr, cc]
    assert near.all()
    # and it holds most of the light (the rest: the soft edge below MASK_COVERAGE, JPEG noise)
    on = (images * masks).sum(axis=(1, 2)) / images.sum(axis=(1, 2))
    assert on.min() > 0.45 and np.median(on) > 0.75


def test_generation_is_deterministic_and_seeded():
    a = generate_lines(per_class=2, seed=7, style="soft", progress=False)
    b = generate_lines(per_class=2, seed=7, style="soft", progress=False)
    c = generate_lines(per_class=2, seed=8, style="soft", progress=False)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.images, c.images)


def test_augmentation_touches_only_the_marked_images():
    n = NUM_CLASSES * 4
    marked = np.zeros(n, dtype=bool)
    marked[::3] = True
    plain = generate_lines(per_class=4, seed=2, style="soft", progress=False)
    aug = generate_lines(per_class=4, seed=2, style="soft", augment=Augment(), augmented=marked, progress=False)
    np.testing.assert_array_equal(aug.images[~marked], plain.images[~marked])
    np.testing.assert_array_equal(aug.masks[~marked], plain.masks[~marked])
    assert (aug.images[marked] != plain.images[marked]).any(axis=(1, 2, 3)).mean() > 0.95


def test_augmented_factors_stay_in_their_ranges():
    labels = np.repeat(np.arange(NUM_CLASSES), 20)
    a = Augment(brightness=(0.6, 0.9), blur=(0.2, 0.5), jpeg_quality=(60, 70), width_jitter=(-0.3, 0.2),
                length_jitter=(-1.0, 0.5), angle_jitter=2.0, hard_edges=0.3, no_jpeg=0.2, jpeg_420=0.5,
                pillow=0.0)  # Pillow's pen keeps the sheet's sizes: tests/data/test_pen_render.py
    style = STYLES["soft"]
    p = draw_params(labels, style, 0, augment=a, augmented=np.ones(len(labels), bool))
    d = decode_label(labels)
    assert 0.6 <= p.brightness.min() and p.brightness.max() <= 0.9
    assert 0.2 <= p.blur.min() and p.blur.max() <= 0.5
    q = p.jpeg_quality[p.jpeg_quality > 0]
    assert 60 <= q.min() and q.max() <= 70
    assert (p.jpeg_quality == 0).mean() == pytest.approx(0.2, abs=0.05)
    assert (~p.anti_alias).mean() == pytest.approx(0.3, abs=0.05)
    assert p.jpeg_420.mean() == pytest.approx(0.5, abs=0.05)
    nominal_w = np.asarray(style.widths)[d["width"]]
    jitter_w = p.widths - nominal_w
    hard = ~p.anti_alias
    assert -0.3 - 1e-9 <= jitter_w[~hard].min() and jitter_w.max() <= 0.2 + 1e-9
    assert p.widths[hard].min() >= 1.0
    jitter_l = p.lengths - np.asarray(style.lengths)[d["length"]]
    assert -1.0 <= jitter_l.min() and jitter_l.max() <= 0.5
    assert angle_error(p.angles, np.asarray(ANGLES_DEG)[d["angle"]]).max() <= 2.0 + 1e-9


def test_augmented_images_keep_their_labels_measurable():
    """Randomized drawing must not blur the classes into each other: lengths stay apart and the
    measured angle stays within half a class step of the label."""
    labels = np.repeat(np.arange(NUM_CLASSES), 6)
    # (Pillow's whole-pixel short lines can measure 11 degrees off: tests/data/test_pen_render.py)
    p = draw_params(labels, STYLES["soft"], 5, augment=Augment(no_jpeg=1.0, pillow=0.0),
                    augmented=np.ones(len(labels), bool))
    images, masks = render(p)
    m, d = measure_lines(images), decode_label(labels)
    assert m["length"][d["length"] == 0].max() < m["length"][d["length"] == 1].min()
    assert angle_error(m["angle_deg"], np.asarray(ANGLES_DEG)[d["angle"]]).max() < 7.5
    assert masks.any(axis=(1, 2)).all()
    assert not m["touches_border"].any()


def test_sheet_style_is_the_hard_rule():
    a = generate_lines(per_class=2, seed=1, style="sheet", progress=False)
    lit = a.images.max(axis=1) > 0
    np.testing.assert_array_equal(lit, a.masks)
    assert set(np.unique(a.images)) == {0, 255}


@pytest.mark.parametrize("kwargs,message", [
    (dict(brightness=(0.9, 0.5)), "data.augment.brightness"),
    (dict(jpeg_quality=(0, 90)), "data.augment.jpeg_quality"),
    (dict(hard_edges=1.5), "data.augment.hard_edges"),
    (dict(angle_jitter=10.0), "data.augment.angle_jitter"),
])
def test_bad_augment_ranges_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        Augment(**kwargs)


def test_augment_from_config():
    course, sheet = STYLES["course"], STYLES["sheet"]
    assert Augment.from_config(None, course) is None
    assert Augment.from_config({"enabled": False}, course) is None
    a = Augment.from_config({"brightness": [0.7, 0.8]}, course)   # enabled: null -> the style decides
    assert a is not None and a.brightness == (0.7, 0.8)
    assert Augment.from_config({"brightness": [0.7, 0.8]}, sheet) is None  # the sheet is drawn as it is
    assert Augment.from_config({"enabled": True}, sheet) is not None
    with pytest.raises(ValueError, match="unknown data.augment keys"):
        Augment.from_config({"brightnes": [0.7, 0.8]}, course)


def test_datamodule_augments_only_the_training_split(tmp_path):
    from pipeline.data.datamodules import LinesDataModule

    def split_peaks(style, augment):
        dm = LinesDataModule(per_class=10, style=style, augment=augment, progress=False)
        dm.setup()
        return {k: getattr(dm, k).images.amax(dim=(1, 2, 3)).float() for k in ("train", "val", "test")}, dm

    peaks, dm = split_peaks("sheet", {"enabled": None})
    assert dm.augment is None and all((p == 255).all() for p in peaks.values())
    peaks, dm = split_peaks("sheet", {"enabled": True})
    assert dm.augment is not None
    assert (peaks["train"] < 255).float().mean() > 0.5            # dimmed, blurred, compressed
    assert (peaks["val"] == 255).all() and (peaks["test"] == 255).all()  # the style itself


def test_unknown_style():
    with pytest.raises(ValueError, match="valid styles are sheet, course, soft"):
        get_style("fancy")



def test_sheet_style_with_augmentation():
    """The sheet style's centres are uniform: augmented images keep them uniform."""
    marked = np.ones(NUM_CLASSES * 3, dtype=bool)
    a = generate_lines(per_class=3, seed=1, style="sheet", augment=Augment(no_jpeg=1.0), augmented=marked,
                       progress=False)
    m, d = measure_lines(a.images), decode_label(a.labels)
    assert m["length"][d["length"] == 0].max() < m["length"][d["length"] == 1].min()
    assert not m["touches_border"].any()
