"""Tests of the generated lines dataset, measured from the pixels wherever possible."""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from pipeline.data.line_render import rasterize_lines
from pipeline.data.lines import LinesArrays, export_jpegs, generate_lines
from pipeline.data.lines_labels import (ANGLES_DEG, COLOUR_RGB, COLOURS, HEADS, LENGTHS_PX, NUM_CLASSES, WIDTHS_PX,
                                        class_names, decode_label, encode_label)

SEEDS = (0, 1, 2)
PER_CLASS = 5


@pytest.fixture(scope="module", params=SEEDS)
def arrays(request) -> LinesArrays:
    return generate_lines(per_class=PER_CLASS, seed=request.param, progress=False)


def _measure(images: np.ndarray) -> dict[str, np.ndarray]:
    """Measure each image's line from its pixels (vectorized over images).

    Direction: principal axis (PCA) of the lit pixel centres, in a y-up frame so that
    angles are counter-clockwise on screen. Length: extent of the lit pixel *squares*
    along that direction = extent of the centres + |cos| + |sin| (a unit square's
    projection; 1 for axis-aligned lines, sqrt(2) on the diagonal). Width: lit pixel
    count / length (the rectangle's area / its length). Colour: per-channel sums.
    """
    lit = images.max(axis=1) > 0
    n, size, _ = lit.shape
    w = lit.astype(np.float64)
    count = w.sum(axis=(1, 2))
    xs = np.arange(size, dtype=np.float64)[None, None, :]
    ys = -np.arange(size, dtype=np.float64)[None, :, None]  # y up
    mx = (w * xs).sum(axis=(1, 2)) / count
    my = (w * ys).sum(axis=(1, 2)) / count
    dx, dy = xs - mx[:, None, None], ys - my[:, None, None]
    cxx = (w * dx * dx).sum(axis=(1, 2))
    cyy = (w * dy * dy).sum(axis=(1, 2))
    cxy = (w * dx * dy).sum(axis=(1, 2))
    theta = 0.5 * np.arctan2(2 * cxy, cxx - cyy)
    ux, uy = np.cos(theta), np.sin(theta)
    proj = dx * ux[:, None, None] + dy * uy[:, None, None]
    extent = np.where(lit, proj, -np.inf).max(axis=(1, 2)) - np.where(lit, proj, np.inf).min(axis=(1, 2))
    length = extent + np.abs(ux) + np.abs(uy)
    return {
        "angle": np.rad2deg(theta) % 180.0,
        "length": length,
        "width": count / length,
        "rgb": images.reshape(n, 3, -1).astype(np.int64).sum(axis=-1),
        "count": count,
    }


def _one_component(masks: np.ndarray) -> np.ndarray:
    """Whether each mask's lit pixels form exactly one 8-connected component."""
    n = len(masks)
    flat = masks.reshape(n, -1)
    reached = np.zeros_like(flat)
    reached[np.arange(n), flat.argmax(axis=1)] = True  # flood from the first lit pixel
    reached = reached.reshape(masks.shape) & masks
    while True:
        p = np.pad(reached, ((0, 0), (1, 1), (1, 1)))
        grown = np.zeros_like(reached)
        for dr in (0, 1, 2):
            for dc in (0, 1, 2):
                grown |= p[:, dr:dr + masks.shape[1], dc:dc + masks.shape[2]]
        grown &= masks
        if np.array_equal(grown, reached):
            return (reached == masks).all(axis=(1, 2)) & masks.any(axis=(1, 2))
        reached = grown


# ---------------------------------------------------------------- pixels vs labels


def test_measured_angle_matches_label(arrays):
    m = _measure(arrays.images)
    want = np.asarray(ANGLES_DEG, dtype=float)[decode_label(arrays.labels)["angle"]]
    err = np.abs((m["angle"] - want + 90.0) % 180.0 - 90.0)
    # Nearest of the 12 angles (half a step = 7.5 deg). Over 192,000 samples the worst
    # PCA error from rasterization was 6.5 deg (short thick lines at 15 deg: a 7x3
    # rectangle at 15 deg lights very nearly an axis-aligned block).
    assert err.max() < 7.5, f"worst angle error {err.max():.2f} deg"
    # Long lines are much better defined: worst seen 1.7 deg.
    long_ = decode_label(arrays.labels)["length"] == 1
    assert err[long_].max() < 3.0


def test_measured_length_matches_label(arrays):
    m = _measure(arrays.images)
    want = np.asarray(LENGTHS_PX)[decode_label(arrays.labels)["length"]]
    # Lit centres lie within [-L/2, L/2] along the line, so the squares' extent is at most
    # L + p (p = |cos| + |sin| <= sqrt(2)); lattice gaps along the line are at most p,
    # so it is more than L - p. Hence |length - L| < sqrt(2) (worst seen: 1.34).
    assert np.abs(m["length"] - want).max() < 1.5
    nearest = np.abs(m["length"][:, None] - np.asarray(LENGTHS_PX)[None, :]).argmin(axis=1)
    np.testing.assert_array_equal(nearest, decode_label(arrays.labels)["length"])


def test_measured_width_matches_label(arrays):
    m = _measure(arrays.images)
    widths = np.asarray(WIDTHS_PX)
    nearest = np.abs(m["width"][:, None] - widths[None, :]).argmin(axis=1)
    np.testing.assert_array_equal(nearest, decode_label(arrays.labels)["width"])
    # Seen over 192,000 samples: thin 0.71..1.35 (diagonal thin lines light one or two
    # pixel diagonals), thick 2.46..3.41: well apart.
    thin = decode_label(arrays.labels)["width"] == 0
    assert m["width"][thin].max() < 1.6 and m["width"][~thin].min() > 2.2


def test_measured_colour_matches_label(arrays):
    m = _measure(arrays.images)
    want = decode_label(arrays.labels)["colour"]
    for ci, name in enumerate(COLOURS):
        channel = int(np.argmax(COLOUR_RGB[name]))
        sel = want == ci
        assert sel.any()
        assert (m["rgb"][sel, channel] > 0).all()
        others = [c for c in range(3) if c != channel]
        assert (m["rgb"][sel][:, others] == 0).all()


def test_every_class_present_and_class_major(arrays):
    np.testing.assert_array_equal(arrays.labels, np.repeat(np.arange(NUM_CLASSES), PER_CLASS))
    assert arrays.labels.dtype == np.int64
    assert len(arrays) == NUM_CLASSES * PER_CLASS


# ---------------------------------------------------------------- image / mask structure


def test_shapes_and_dtypes(arrays):
    n = NUM_CLASSES * PER_CLASS
    assert arrays.images.shape == (n, 3, 28, 28) and arrays.images.dtype == np.uint8
    assert arrays.masks.shape == (n, 28, 28) and arrays.masks.dtype == bool
    assert arrays.centres.shape == (n, 2) and arrays.centres.dtype == np.float32


def test_mask_is_exactly_the_lit_pixels(arrays):
    np.testing.assert_array_equal(arrays.masks, arrays.images.max(axis=1) > 0)
    assert set(np.unique(arrays.images).tolist()) == {0, 255}
    assert arrays.masks.any(axis=(1, 2)).all()


def test_no_lit_pixel_on_border(arrays):
    lit = arrays.images.max(axis=1) > 0
    assert not lit[:, 0, :].any() and not lit[:, -1, :].any()
    assert not lit[:, :, 0].any() and not lit[:, :, -1].any()


def test_one_connected_component(arrays):
    # 8-connected: a 1 px strip lights >= 1 pixel per column (or row, beyond 45 deg).
    assert _one_component(arrays.masks).all()


def test_masks_reproducible_from_centres(arrays):
    d = decode_label(arrays.labels)
    masks = rasterize_lines(
        arrays.centres,
        np.asarray(ANGLES_DEG, float)[d["angle"]],
        np.asarray(LENGTHS_PX)[d["length"]],
        np.asarray(WIDTHS_PX)[d["width"]],
        28,
    )
    np.testing.assert_array_equal(masks, arrays.masks)


def test_centres_vary_within_class(arrays):
    c = arrays.centres.reshape(NUM_CLASSES, PER_CLASS, 2)
    assert (c.std(axis=1) > 0.05).all()
    # Sub-pixel: not on a grid.
    assert (np.abs(c - np.round(c)) > 1e-3).mean() > 0.9


def test_larger_margin_respected():
    a = generate_lines(per_class=3, seed=5, margin=3.0, progress=False)
    rows, cols = np.nonzero(a.masks.any(axis=0))
    assert rows.min() >= 3 and rows.max() <= 24 and cols.min() >= 3 and cols.max() <= 24


def test_extreme_centres_stay_inside_margin():
    """Lines placed at the extreme valid centres touch, but never cross, the margin."""
    labels = np.arange(NUM_CLASSES)
    d = decode_label(labels)
    a = np.asarray(ANGLES_DEG, float)[d["angle"]]
    length = np.asarray(LENGTHS_PX)[d["length"]]
    width = np.asarray(WIDTHS_PX)[d["width"]]
    rad = np.deg2rad(a)
    hx = np.abs(length / 2 * np.cos(rad)) + np.abs(width / 2 * np.sin(rad))
    hy = np.abs(length / 2 * np.sin(rad)) + np.abs(width / 2 * np.cos(rad))
    lo_centres = np.stack([1 + hx, 1 + hy], axis=1)
    hi_centres = np.stack([27 - 1 - hx, 27 - 1 - hy], axis=1)
    for centres in (lo_centres, hi_centres):
        masks = rasterize_lines(centres, a, length, width, 28)
        assert not masks[:, [0, -1], :].any() and not masks[:, :, [0, -1]].any()
    # The range is tight: axis-aligned lines (whose corners fall on pixel centres) at
    # the extreme centres light the first pixel row/column inside the margin.
    axis_aligned = (a == 0) | (a == 90)
    for centres, edge in ((lo_centres, 1), (hi_centres, 26)):
        masks = rasterize_lines(centres, a, length, width, 28)[axis_aligned]
        assert masks[:, edge, :].any(axis=1).all() and masks[:, :, edge].any(axis=1).all()


def test_rasterize_known_lines():
    def mask(angle, length=7.0, width=1.0, centre=(10.0, 10.0)):
        return rasterize_lines(np.array([centre]), [angle], [length], [width], 21)[0]

    horizontal = np.zeros((21, 21), bool)
    horizontal[10, 7:14] = True
    np.testing.assert_array_equal(mask(0), horizontal)
    np.testing.assert_array_equal(mask(90), horizontal.T)
    thick = np.zeros((21, 21), bool)
    thick[9:12, 7:14] = True
    np.testing.assert_array_equal(mask(0, width=3.0), thick)
    # 45 deg is counter-clockwise on screen: up and to the right (row decreases as x grows).
    diag = mask(45, length=15.0)
    for k in range(-5, 6):
        assert diag[10 - k, 10 + k]
    assert not diag[10 + 3, 10 + 3]
    assert mask(30).sum() >= 6


# ---------------------------------------------------------------- determinism


def test_same_seed_identical_other_seed_different():
    a = generate_lines(per_class=2, seed=11, progress=False)
    b = generate_lines(per_class=2, seed=11, progress=True)
    c = generate_lines(per_class=2, seed=12, progress=False)
    for field in ("images", "masks", "labels", "centres"):
        assert getattr(a, field).tobytes() == getattr(b, field).tobytes()
    assert a.images.tobytes() != c.images.tobytes()
    assert a.centres.tobytes() != c.centres.tobytes()


def test_generation_of_many_images_in_one_call():
    # speed: benchmarks/bench_lines_generation.py (no wall-clock limits in tests: the CPU is shared)
    a = generate_lines(per_class=200, seed=0, progress=False)
    assert len(a) == 19_200
    assert np.bincount(a.labels, minlength=96).tolist() == [200] * 96


def test_invalid_parameters():
    with pytest.raises(ValueError):
        generate_lines(per_class=0, progress=False)
    with pytest.raises(ValueError):
        generate_lines(per_class=1, image_size=12, progress=False)  # 15 px line cannot fit


# ---------------------------------------------------------------- labels


def test_heads_and_constants():
    assert list(HEADS) == ["length", "width", "angle", "colour"]
    assert HEADS == {"length": 2, "width": 2, "angle": 12, "colour": 2}
    assert NUM_CLASSES == 96
    assert ANGLES_DEG == tuple(range(0, 180, 15))


def test_encode_decode_round_trip():
    seen = set()
    for li in range(2):
        for wi in range(2):
            for ai in range(12):
                for ci in range(2):
                    label = encode_label(li, wi, ai, ci)
                    assert isinstance(label, int)
                    assert label == ((li * 2 + wi) * 12 + ai) * 2 + ci
                    assert decode_label(label) == {"length": li, "width": wi, "angle": ai, "colour": ci}
                    seen.add(label)
    assert seen == set(range(96))
    labels = np.arange(96)
    d = decode_label(labels)
    assert list(d) == list(HEADS)
    np.testing.assert_array_equal(encode_label(d["length"], d["width"], d["angle"], d["colour"]), labels)


def test_label_ranges_checked():
    with pytest.raises(ValueError):
        encode_label(2, 0, 0, 0)
    with pytest.raises(ValueError):
        encode_label(0, 0, 12, 0)
    with pytest.raises(ValueError):
        decode_label(96)
    with pytest.raises(ValueError):
        decode_label(np.array([0, -1]))


def test_class_names():
    names = class_names()
    assert len(names) == 96 and len(set(names)) == 96
    assert names[encode_label(1, 1, 9, 0)] == "1_1_9_0"
    assert names[0] == "0_0_0_0" and names[95] == "1_1_11_1"


# ---------------------------------------------------------------- export


def test_export_jpegs(tmp_path):
    a = generate_lines(per_class=2, seed=3, progress=False)
    paths = export_jpegs(a, tmp_path / "jpg", limit=1)
    names = class_names()
    assert sorted(p.name for p in paths) == sorted(f"{n}_0.jpg" for n in names)
    for path in paths[:: 7]:
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (28, 28)
            arr = np.asarray(im).astype(int)
        colour = int(path.name.split("_")[3])
        channel = int(np.argmax(COLOUR_RGB[COLOURS[colour]]))
        assert arr[..., channel].sum() > 3 * arr[..., [c for c in range(3) if c != channel]].sum()
    all_paths = export_jpegs(a, tmp_path / "all")
    assert len(all_paths) == 192
    assert {p.name for p in all_paths} == {f"{n}_{i}.jpg" for n in names for i in (0, 1)}
    # File i of a class is that class's i-th image.
    with Image.open(tmp_path / "all" / names[5] / f"{names[5]}_1.jpg") as im:  # the default layout: class folders
        arr = np.asarray(im).astype(int)
    expected = a.images[5 * 2 + 1].transpose(1, 2, 0).astype(int)
    assert np.abs(arr - expected).mean() < 10
