"""data.style=course: the course's own generator, checked against OpenCV itself (the outside
oracle: opencv-python-headless, a dev requirement only), the geometry checker, and the splits."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.data.line_geometry import angle_error, measure_lines
from pipeline.data.line_render import course_rotated_blocks, rotation_matrix, warp_affine_bilinear
from pipeline.data.line_styles import (BLOCK_EXTENT_FLOOR, BLOCK_GAP, STYLES, Augment, block_centre, course_positions,
                                       draw_params, render)
from pipeline.data.lines import course_folder_images, export_course_folder, generate_lines
from pipeline.data.lines_labels import ANGLES_DEG, NUM_CLASSES, decode_label

cv2 = pytest.importorskip("cv2", reason="the OpenCV oracle: pip install -r requirements-dev.txt")

COURSE = STYLES["course"]


def _opencv_course_image(label: int, dx: int, dy: int, jpeg: bool) -> np.ndarray:
    """The course's published recipe, with OpenCV: RGB [3, 28, 28]."""
    d = decode_label(label)
    length, width = (7, 15)[d["length"]], (1, 3)[d["width"]]
    img = np.zeros((28, 28, 3), dtype=np.uint8)
    img[int(14 - width / 2):int(15 + width / 2), int(14 - length / 2):int(15 + length / 2)] = \
        (0, 0, 255) if d["colour"] == 0 else (255, 0, 0)   # BGR: red, blue
    img = cv2.warpAffine(img, cv2.getRotationMatrix2D((14, 14), 15 * d["angle"], 1), (28, 28))
    img = cv2.warpAffine(img, np.float32([[1, 0, dx], [0, 1, dy]]), (28, 28))
    if jpeg:
        ok, data = cv2.imencode(".jpeg", img)   # OpenCV's defaults: quality 95, 4:2:0
        assert ok
        with Image.open(io.BytesIO(data.tobytes())) as im:   # read back as lines_folder reads files
            return np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)


def test_warp_equals_opencv_for_any_image_and_matrix():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 28, 28)).astype(np.uint8)
    m = rotation_matrix(rng.uniform(4, 24, (64, 2)), rng.uniform(-180, 180, 64))
    m[:, :, 2] += rng.uniform(-4, 4, (64, 2))
    ours = warp_affine_bilinear(images, m)
    ref = np.stack([cv2.warpAffine(x, mm, (28, 28)) for x, mm in zip(images, m)])
    assert np.abs(ours.astype(int) - ref).max() == 0   # measured: identical (the bar is 1 grey level)


def test_the_48_rotated_blocks_equal_opencv():
    lengths, widths, angles = (np.asarray(v).ravel() for v in np.meshgrid([7, 15], [1, 3], np.arange(12) * 15.0,
                                                                           indexing="ij"))
    ours = course_rotated_blocks(lengths, widths, angles)
    for i in range(len(lengths)):
        block = np.zeros((28, 28), dtype=np.uint8)
        block[int(14 - widths[i] / 2):int(15 + widths[i] / 2), int(14 - lengths[i] / 2):int(15 + lengths[i] / 2)] = 255
        ref = cv2.warpAffine(block, cv2.getRotationMatrix2D((14, 14), angles[i], 1), (28, 28))
        np.testing.assert_array_equal(ours[i], ref)
    crisp = [len(np.unique(x)) == 2 for x in ours]      # only 0 and 255: at 0 and 90 degrees, nowhere else
    assert np.flatnonzero(crisp).tolist() == [i for i in range(48) if angles[i] in (0, 90)]
    assert (ours[0] == 255).sum(axis=0).max() == 2 and (ours[0] == 255).sum() == 16   # thin short at 0: 2 x 8


@pytest.mark.parametrize("jpeg", [False, True])
def test_generated_course_images_equal_the_opencv_generator(jpeg):
    """Before JPEG: identical; after JPEG (Pillow quality 95 4:2:0 vs cv2.imencode defaults, both
    read with Pillow): measured identical too, so the bar is equality."""
    labels = np.repeat(np.arange(NUM_CLASSES), 2)
    params = draw_params(labels, COURSE, 3)
    if not jpeg:
        params = params.replace(jpeg_quality=np.zeros(len(labels), dtype=np.int64))
    ours, _ = render(params)
    moves = np.rint(params.centres - block_centre(params.angles)).astype(int)
    for i, label in enumerate(labels):
        ref = _opencv_course_image(int(label), moves[i, 0], moves[i, 1], jpeg)
        assert np.abs(ours[i].astype(int) - ref).max() == 0, f"image {i} (class {label})"


def test_course_generation_is_deterministic_for_a_seed():
    a = generate_lines(per_class=3, seed=7, style="course", progress=False)
    b = generate_lines(per_class=3, seed=7, style="course", progress=False)
    c = generate_lines(per_class=3, seed=8, style="course", progress=False)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.images, c.images)


def test_course_lines_measure_as_their_labels():
    """The geometry checker (it knows nothing of the drawing) reads each label back."""
    a = generate_lines(per_class=6, seed=2, style="course", progress=False)
    m, d = measure_lines(a.images), decode_label(a.labels)
    assert m["length"][d["length"] == 0].max() < m["length"][d["length"] == 1].min()
    # the course's widths: 2 rows (thin) vs 4 rows (thick), wider at 45 degrees by the bilinear blur
    assert np.median(m["width"][d["width"] == 0]) < 3.2 < np.median(m["width"][d["width"] == 1])
    err = angle_error(m["angle_deg"], np.asarray(ANGLES_DEG)[d["angle"]])
    assert np.median(err) < 0.6 and err.max() < 5      # short thick lines: an 8 x 4 block
    assert (m["colour"] == np.where(d["colour"] == 0, 0, 2)).all()
    assert not m["touches_border"].any()
    assert np.median(m["peak"]) == pytest.approx(219, abs=12)   # the course's files: median 219


def test_positions_keep_the_gap_and_scan_in_raster_order():
    d = decode_label(np.arange(0, NUM_CLASSES, 2))
    lengths, widths = np.asarray([7, 15])[d["length"]], np.asarray([1, 3])[d["width"]]
    angles = np.asarray(ANGLES_DEG, dtype=np.float64)[d["angle"]]
    positions = course_positions(lengths, widths, angles)
    counts = np.asarray([len(p) for p in positions])
    assert counts.max() == 247 and np.median(counts) == 119 and counts.min() == 36   # the course: 27-247, median 119
    blocks = course_rotated_blocks(lengths, widths, angles)
    for k in (0, 17, 40):
        pos = positions[k]
        assert (np.diff(pos[:, 1]) >= 0).all()                   # rows first (dy never decreases) ...
        for dx, dy in pos[[0, -1]]:                               # ... and the first / last keep the gap
            lit = np.roll(np.roll(blocks[k], dy, axis=0), dx, axis=1) >= BLOCK_EXTENT_FLOOR
            rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
            assert min(rows[0], cols[0]) >= BLOCK_GAP and max(rows[-1], cols[-1]) <= 27 - BLOCK_GAP
        assert min(rows[0], cols[0]) == BLOCK_GAP or max(rows[-1], cols[-1]) == 27 - BLOCK_GAP


def test_pools_get_their_own_positions_and_repeat_them():
    """A class with 36 positions and 100 images in three pools (60 / 10 / 30): each pool cycles
    through positions of its own, in proportion."""
    d = decode_label(np.arange(NUM_CLASSES))
    counts = [len(p) for p in course_positions(np.asarray([7, 15])[d["length"]], np.asarray([1, 3])[d["width"]],
                                               np.asarray(ANGLES_DEG, dtype=np.float64)[d["angle"]])]
    few = int(np.argmin(counts))
    pools = np.repeat([0, 1, 2], [60, 10, 30])
    p = draw_params(np.full(100, few), COURSE, 0, pools=pools)
    moves = [{tuple(m) for m in np.rint(p.centres[pools == k] - block_centre(p.angles[pools == k])).astype(int)}
             for k in range(3)]
    assert not (moves[0] & moves[1]) and not (moves[0] & moves[2]) and not (moves[1] & moves[2])
    assert sum(len(m) for m in moves) == counts[few] == 36
    assert [len(m) for m in moves] == [22, 3, 11]          # 36 x (0.6, 0.1, 0.3), largest remainders
    again = draw_params(np.full(100, few), COURSE, 0, pools=pools)
    np.testing.assert_array_equal(p.centres, again.centres)


def test_the_datamodule_splits_never_share_an_image():
    from pipeline.data.datamodules import LinesDataModule

    dm = LinesDataModule(per_class=8, style="course", augment={"share": 0.5}, progress=False)
    dm.setup()
    seen = [{x.numpy().tobytes() for x in getattr(dm, k).images} for k in ("train", "val", "test")]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    images, _ = render(dm.render_params("test"))
    np.testing.assert_array_equal(images, dm.test.images.numpy())   # the probe redraws the same images


def test_the_mixture_share_and_blocks():
    labels = np.repeat(np.arange(NUM_CLASSES), 40)
    marked = np.ones(len(labels), dtype=bool)
    p = draw_params(labels, COURSE, 1, augment=Augment(share=0.3, blocks=0.5), augmented=marked)
    randomized = ~p.exact_jpeg
    assert randomized.mean() == pytest.approx(0.3, abs=0.03)
    assert p.block[randomized].mean() == pytest.approx(0.5, abs=0.05)
    assert p.block[~randomized].all() and (p.jpeg_quality[~randomized] == 95).all()
    none = draw_params(labels, COURSE, 1, augment=Augment(share=0.0), augmented=marked)
    assert none.exact_jpeg.all()


def test_course_folder_repeats_positions_in_raster_order(tmp_path):
    from pipeline.data.lines_folder import find_duplicates, read_lines_folder

    d = decode_label(np.arange(NUM_CLASSES))
    counts = [len(p) for p in course_positions(np.asarray([7, 15])[d["length"]], np.asarray([1, 3])[d["width"]],
                                               np.asarray(ANGLES_DEG, dtype=np.float64)[d["angle"]])]
    few = int(np.argmin(counts))     # the class with the fewest positions (36)
    export_course_folder(tmp_path / "classes", per_class=50, classes=[0, few])
    got = read_lines_folder(tmp_path / "classes")
    ref = course_folder_images(per_class=50, classes=[0, few])
    np.testing.assert_array_equal(got.images, ref.images)
    assert got.paths[0] == "0_0_0_0/0_0_0_0_0.jpeg"
    dup = find_duplicates(got.images, got.labels)
    assert counts[0] > 50 and dup.copies == 50 - counts[few] and dup.with_copies == 50 - counts[few]
    assert dup.distinct == 50 + counts[few] and dup.conflicting == 0
    # the course cycles: file n and file n + positions are the same image
    n = counts[few]
    np.testing.assert_array_equal(got.images[50], got.images[50 + n])
