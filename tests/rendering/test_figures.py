"""Tests of pipeline.rendering.figures: valid PNGs, speed, shared colour scale, labels, ranking."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image

from pipeline.rendering import figures
from pipeline.rendering.figures import (
    normalize_each,
    overlay_heatmap,
    render_activation_figure,
    render_filter_grid,
    render_gradcam_figure,
    render_gradcam_sheet,
    shared_limits,
    to_display_rgb,
)

RNG = np.random.default_rng(1)


@pytest.fixture
def captured(monkeypatch):
    """Record each Figure's content (texts, images, clims) just before it is saved."""
    seen = []
    real_save = figures._save

    def spy(fig, path, dpi):
        info = {"axes": []}
        for ax in fig.axes:
            info["axes"].append({
                "texts": [t.get_text() for t in ax.texts],
                "images": [(im.get_array(), im.get_clim()) for im in ax.images],
            })
        info["fig_texts"] = [t.get_text() for t in fig.texts]
        seen.append(info)
        return real_save(fig, path, dpi)

    monkeypatch.setattr(figures, "_save", spy)
    return seen


def _png(path):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def _image(c=3):
    img = np.zeros((c, 28, 28), np.float32)
    img[0, 10:12, 4:24] = 1.0
    return img


def test_to_display_rgb():
    grey = RNG.random((1, 5, 4)).astype(np.float32)
    rgb = to_display_rgb(torch.from_numpy(grey))
    assert rgb.shape == (5, 4, 3)
    for k in range(3):
        np.testing.assert_array_equal(rgb[..., k], grey[0])
    col = RNG.random((3, 5, 4)).astype(np.float32)
    np.testing.assert_array_equal(to_display_rgb(col), col.transpose(1, 2, 0))
    assert to_display_rgb(np.full((3, 2, 2), 2.0)).max() == 1.0  # clipped to [0,1]


def test_shared_limits_and_normalize_each():
    acts = np.stack([np.full((3, 3), -2.0), np.full((3, 3), 5.0), np.zeros((3, 3))])
    acts[2, 0, 0] = np.nan
    assert shared_limits(acts) == (-2.0, 5.0)  # over ALL channels, NaN ignored
    assert shared_limits(np.zeros((4, 2, 2))) == (0.0, 1.0)  # constant: drawn as "low"
    assert shared_limits(np.full((2, 2), np.nan)) == (0.0, 1.0)
    n = normalize_each(np.stack([np.arange(4.0).reshape(2, 2), np.full((2, 2), 3.0)]))
    np.testing.assert_allclose(n[0], [[0, 1 / 3], [2 / 3, 1]])
    np.testing.assert_array_equal(n[1], 0.5)


def test_activation_figure_64_channels_fast_labelled_shared_scale(tmp_path, captured):
    acts = np.maximum(RNG.normal(size=(64, 14, 14)), 0).astype(np.float32)
    acts[5] *= 10  # one loud channel: the others must share its scale, not get their own
    out = render_activation_figure(_image(), torch.from_numpy(acts), tmp_path / "a" / "act.png",
                                   "features.conv2 / image 0", dpi=80)  # (its speed: a benchmark's business)
    assert out == tmp_path / "a" / "act.png"
    w, h = _png(out)
    assert 600 < w < 1600 and 350 < h < 1000
    info = captured[-1]
    mosaic_ax = next(a for a in info["axes"] if a["texts"])
    assert mosaic_ax["texts"] == [str(i) for i in range(64)]
    assert len(mosaic_ax["images"]) == 1  # ONE imshow for all channels
    _, clim = mosaic_ax["images"][0]
    assert clim == pytest.approx((float(acts.min()), float(acts.max())))


def test_activation_figure_grey_input_and_linear_layer(tmp_path):
    out = render_activation_figure(_image(1), RNG.random(1024), tmp_path / "fc.png", "fc.0")
    _png(out)
    out = render_activation_figure(_image(1), np.zeros((8, 5, 5)), tmp_path / "dead.png", "dead layer")
    _png(out)


def test_filter_grid_ranked_top_k(tmp_path, captured):
    pats = RNG.random((10, 3, 7, 7)).astype(np.float32)
    scores = np.array([0.1, 5.0, -1.0, 3.0, 2.0, 9.0, 0.0, 4.0, 1.0, 6.0])
    idx = np.arange(100, 110)
    out = render_filter_grid(pats, scores, idx, tmp_path / "f.png", "conv1", top=4)
    _png(out)
    labels = captured[-1]["axes"][0]["texts"]
    assert labels == ["f105 9.00", "f109 6.00", "f101 5.00", "f107 4.00"]
    # grey patterns, all of them, 64 filters
    out = render_filter_grid(RNG.random((64, 1, 8, 8)), RNG.random(64), np.arange(64), tmp_path / "g.png", "conv2")
    w, h = _png(out)
    assert len(captured[-1]["axes"][0]["texts"]) == 64
    arr, _ = captured[-1]["axes"][0]["images"][0]
    tile = np.asarray(arr)[-8:, :8]  # bottom-left region holds a grey tile: R == G == B
    assert np.allclose(tile[..., 0], tile[..., 1]) and np.allclose(tile[..., 1], tile[..., 2])
    assert w > 500 and h > 500


def test_overlay_heatmap_math():
    rgb = np.full((2, 2, 3), 0.2, np.float32)
    heat = np.array([[0.0, 1.0], [0.5, 2.0]])
    out = overlay_heatmap(rgb, heat, alpha=0.25, cmap="jet")
    jet = colormaps["jet"]
    np.testing.assert_allclose(out[0, 1], 0.75 * 0.2 + 0.25 * np.array(jet(1.0)[:3]), atol=1e-6)
    np.testing.assert_allclose(out[1, 1], out[0, 1], atol=1e-6)  # clipped to [0,1]
    with pytest.raises(ValueError):
        overlay_heatmap(rgb, np.zeros((3, 3)))


def test_gradcam_figure_and_sheet(tmp_path, captured):
    yy, xx = np.mgrid[:28, :28]
    m = np.exp(-((yy - 11) ** 2 + (xx - 14) ** 2) / 40.0)
    out = render_gradcam_figure(_image(), m, m[::4, ::4] * 3.0, tmp_path / "gc.png", "1_1_9_0 (p=0.98)")
    w, h = _png(out)
    assert w > 2 * h
    info = captured[-1]
    assert "1_1_9_0 (p=0.98)" in info["fig_texts"]
    _, clim = info["axes"][1]["images"][0]
    assert clim == pytest.approx((float(m[::4, ::4].min() * 3), float(m[::4, ::4].max() * 3)))
    # an all-zero map renders (no NaN, no error)
    _png(render_gradcam_figure(_image(1), np.zeros((28, 28)), np.zeros((7, 7)), tmp_path / "z.png", "zero"))

    titles = [f"img {i}\np={i / 10:.2f}" for i in range(7)]
    out = render_gradcam_sheet(np.stack([_image()] * 7), np.stack([m] * 7), titles, tmp_path / "sheet.png")
    _png(out)
    assert captured[-1]["axes"][0]["texts"] == [t for title in titles for t in ("input", title)]  # input, overlay
    with pytest.raises(ValueError):
        render_gradcam_sheet(np.stack([_image()] * 2), np.stack([m] * 2), ["one"], tmp_path / "bad.png")
