"""The soft-line renderer and the JPEG round trip, against independent computations."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from pipeline.data.line_geometry import angle_error, measure_lines
from pipeline.data.line_render import PIXEL_VARIANCE, jpeg_roundtrip, line_coverage
from pipeline.data.lines import generate_lines
from pipeline.data.lines_labels import decode_label


def _brute_force_coverage(cx, cy, angle, length, width, blur, px, py, step=0.004):
    """The same Gaussian-filtered rectangle by direct numerical integration over a fine grid."""
    sigma = math.sqrt(PIXEL_VARIANCE + blur ** 2)
    r = 5 * sigma
    g = np.arange(-r, r, step) + step / 2  # cell midpoints
    qx, qy = np.meshgrid(px + g, py + g)
    a = math.radians(angle)
    along = (qx - cx) * math.cos(a) - (qy - cy) * math.sin(a)
    across = (qx - cx) * math.sin(a) + (qy - cy) * math.cos(a)
    inside = (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)
    w = np.exp(-((qx - px) ** 2 + (qy - py) ** 2) / (2 * sigma ** 2))
    return float((inside * w).sum() / w.sum())


@pytest.mark.parametrize("angle,blur", [(0.0, 0.0), (30.0, 0.6), (135.0, 0.3), (77.0, 1.0)])
def test_coverage_matches_numerical_integration(angle, blur):
    cx, cy, length, width = 13.3, 12.6, 9.0, 1.4
    cov = line_coverage([[cx, cy]], angle, length, width, blur, 28)[0].numpy()
    for px, py in [(13, 13), (14, 12), (16, 11), (10, 15), (13, 14), (18, 9), (5, 5)]:
        want = _brute_force_coverage(cx, cy, angle, length, width, blur, px, py)
        assert abs(cov[py, px] - want) < 2e-3, (px, py, cov[py, px], want)


def test_coverage_conserves_the_line_area_and_points_along_its_angle():
    rng = np.random.default_rng(0)
    n = 24
    angles = rng.uniform(0, 180, n)
    lengths, widths = rng.uniform(7, 15, n), rng.uniform(1, 4, n)
    cov = line_coverage(np.full((n, 2), 13.5), angles, lengths, widths, 0.5, 28).numpy()
    np.testing.assert_allclose(cov.sum(axis=(1, 2)), lengths * widths, rtol=2e-3)
    assert cov.min() >= 0 and cov.max() <= 1
    img = np.zeros((n, 3, 28, 28))
    img[:, 0] = cov
    m = measure_lines(img, floor=0.0)
    assert angle_error(m["angle_deg"], angles).max() < 0.5
    # second moments of a Gaussian-filtered bar: L^2/12 + sigma^2 along, W^2/12 + sigma^2 across
    var = PIXEL_VARIANCE + 0.25
    np.testing.assert_allclose(m["length"], np.sqrt(lengths ** 2 + 12 * var), rtol=0.02)
    np.testing.assert_allclose(m["width"], np.sqrt(widths ** 2 + 12 * var), rtol=0.02)


def _pillow_roundtrip(chw: np.ndarray, quality: int, subsampling: str) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0))).save(
        buf, format="JPEG", quality=quality, subsampling=subsampling)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB")).transpose(2, 0, 1)


@pytest.fixture(scope="module")
def course_images():
    return generate_lines(per_class=3, seed=3, style="soft", progress=False).images


def test_jpeg_444_mosaic_equals_one_file_per_image(course_images):
    q = np.random.default_rng(1).integers(40, 100, len(course_images))
    out = jpeg_roundtrip(course_images, q, subsampling="4:4:4")
    ref = np.stack([_pillow_roundtrip(x, int(k), "4:4:4") for x, k in zip(course_images, q)])
    np.testing.assert_array_equal(out, ref)


def test_jpeg_420_mosaic_equals_one_file_per_image_away_from_the_edges(course_images):
    out = jpeg_roundtrip(course_images, 70)
    ref = np.stack([_pillow_roundtrip(x, 70, "4:2:0") for x in course_images])
    lit = course_images.max(axis=1) > 0
    far = ~lit[:, -3:, :].any(axis=(1, 2)) & ~lit[:, :, -3:].any(axis=(1, 2))
    assert far.sum() > len(course_images) // 2
    diff = np.abs(out.astype(int) - ref)
    assert diff[far][:, :, 1:-1, 1:-1].max() == 0          # identical inside the outer ring
    assert diff[far].max() <= 40                            # the ring: a few levels
    assert np.abs(out.astype(int) - course_images).max() > 0  # and it did compress


def test_jpeg_bleeds_chroma_and_dims_thin_lines():
    a = generate_lines(per_class=2, seed=0, style="sheet", progress=False)
    thin = decode_label(a.labels)["width"] == 0
    out420 = jpeg_roundtrip(a.images, 95, "4:2:0")
    out444 = jpeg_roundtrip(a.images, 95, "4:4:4")
    peak420 = out420.max(axis=(1, 2, 3))
    assert np.median(peak420[thin]) < 230 < np.median(out444.max(axis=(1, 2, 3))[thin])
    m = measure_lines(out420)
    assert np.median(m["width"][thin]) > 1.8  # 4:2:0 smears the colour of a 1-px line across ~2 px


@pytest.mark.parametrize("bad,message", [
    (dict(images=np.zeros((2, 3, 8, 8), dtype=np.float32), quality=90), "uint8"),
    (dict(images=np.zeros((2, 8, 8, 3), dtype=np.uint8), quality=90), "[N, 3, H, W]"),
    (dict(images=np.zeros((2, 3, 8, 8), dtype=np.uint8), quality=0), "1..100"),
    (dict(images=np.zeros((2, 3, 8, 8), dtype=np.uint8), quality=90, subsampling="4:1:1"), "4:2:0"),
])
def test_jpeg_roundtrip_rejects_bad_input(bad, message):
    with pytest.raises(ValueError) as info:
        jpeg_roundtrip(**bad)
    assert message in str(info.value)
