"""Grad-CAM figures (issue 24): every line visible under the heat, the ground-truth outline, the input column."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.contour import ContourSet
from matplotlib.colors import to_rgba

from pipeline.rendering import figures
from pipeline.rendering.figures import (OUTLINE_COLOUR, display_base, overlay_heatmap, render_gradcam_figure,
                                        render_gradcam_sheet)


@pytest.fixture
def drawn(monkeypatch):
    """Each figure's axes just before it is saved: texts, and the outlines (contour sets) with their vertices."""
    seen = []
    real = figures._save

    def spy(fig, path, dpi):
        info = {"texts": [t.get_text() for t in fig.texts], "axes": []}
        for ax in fig.axes:
            contours = [c for c in ax.get_children() if isinstance(c, ContourSet)]
            info["axes"].append({"texts": [t.get_text() for t in ax.texts], "title": ax.get_title(),
                                 "contours": contours,
                                 "vertices": [p.vertices for c in contours for p in c.get_paths()]})
        seen.append(info)
        return real(fig, path, dpi)

    monkeypatch.setattr(figures, "_save", spy)
    return seen


def _line_image(colour, value=0.85):
    """A black 28x28 image with a 1-px vertical line at column 14, rows 5..20, in one channel."""
    img = np.zeros((3, 28, 28), np.float32)
    img[colour, 5:21, 14] = value
    mask = np.zeros((28, 28), bool)
    mask[5:21, 14] = True
    return img, mask


@pytest.mark.parametrize("colour", [0, 1, 2])
def test_the_base_keeps_every_line_as_bright_as_drawn(colour):
    img, mask = _line_image(colour)
    rgb = figures.to_display_rgb(img)
    base = display_base(rgb)
    assert base[mask].min() == 1.0 and base[~mask].max() == 0.0   # 0.85 on black, contrast-stretched to 1
    out = overlay_heatmap(rgb, np.zeros((28, 28)), alpha=0.5)       # no heat: the base itself
    assert out[mask].mean(axis=1).min() >= 0.5 * 0.85               # a blue line keeps >= half its brightness
    # luma would have kept 0.114 of a blue line: 0.10, black on black
    if colour == 2:
        assert (rgb[mask] @ np.array([0.299, 0.587, 0.114], np.float32)).max() < 0.1


def test_the_base_stretches_a_low_contrast_image():
    rgb = np.full((2, 2, 3), 0.2, np.float32)
    rgb[0, 0] = [0.2, 0.2, 0.6]
    rgb[1, 1] = [0.4, 0.3, 0.2]
    np.testing.assert_allclose(display_base(rgb), [[1.0, 0.0], [0.0, 0.5]], atol=1e-6)
    np.testing.assert_array_equal(display_base(np.full((2, 2, 3), 0.3, np.float32)), np.full((2, 2), 0.3, np.float32))


def test_the_mask_outline_is_drawn_on_the_pixel_edges(tmp_path, drawn):
    img, mask = _line_image(2)
    heat = np.zeros((28, 28), np.float32)
    heat[10, 14] = 1.0
    render_gradcam_figure(img, heat, heat[::2, ::2], tmp_path / "f.png", "length: short (p=0.90)", mask=mask)
    ax_in, ax_raw, ax_ov = drawn[-1]["axes"][:3]
    for ax in (ax_in, ax_ov):
        (c,) = ax["contours"]
        assert np.allclose(c.get_edgecolor()[0], to_rgba(OUTLINE_COLOUR))
        v = np.concatenate(ax["vertices"])
        # the 1-px line's columns are 14 +- 0.5, its rows 5 - 0.5 .. 20 + 0.5 (pixel centres at integers)
        assert v[:, 0].min() == pytest.approx(13.5) and v[:, 0].max() == pytest.approx(14.5)
        assert v[:, 1].min() == pytest.approx(4.5) and v[:, 1].max() == pytest.approx(20.5)
    assert not ax_raw["contours"]
    assert any("magenta outline: the ground-truth mask" in t for t in drawn[-1]["texts"])
    # no mask: no outline, no note
    render_gradcam_figure(img, heat, heat[::2, ::2], tmp_path / "g.png", "t")
    assert not any(ax["contours"] for ax in drawn[-1]["axes"])
    assert not any("outline" in t for t in drawn[-1]["texts"])


def test_the_sheet_has_an_input_column_and_outlines_every_tile(tmp_path, drawn):
    imgs, masks = zip(*[_line_image(c % 3) for c in range(6)])
    maps = np.zeros((6, 28, 28), np.float32)
    titles = [f"width: thin (p=0.{i}0)" for i in range(6)]
    names = [f"image {i}" for i in range(6)]
    render_gradcam_sheet(np.stack(imgs), maps, titles, tmp_path / "s.png", masks=np.stack(masks), input_titles=names)
    ax = drawn[-1]["axes"][0]
    # pairs (input, overlay), 3 pairs a row
    assert ax["texts"] == [t for i in range(6) for t in (names[i], titles[i])]
    assert len(ax["contours"]) == 12
    v = [np.concatenate([p.vertices for p in c.get_paths()]) for c in ax["contours"]]
    xs = sorted({round(float(vv[:, 0].min()), 1) for vv in v})
    assert len(xs) == 6   # six tile columns: inputs and overlays side by side
    # a row per image, an input column then the overlays (ncols): the per-target / per-head layout
    render_gradcam_sheet(np.stack([imgs[0]] * 4), np.zeros((4, 28, 28)), ["length", "width", "angle", "colour"],
                         tmp_path / "h.png", ncols=4, input_titles=["short thin 0° blue"] * 4)
    assert drawn[-1]["axes"][0]["texts"] == ["short thin 0° blue", "length", "width", "angle", "colour"]
    with pytest.raises(ValueError, match="masks"):
        render_gradcam_sheet(np.stack(imgs), maps, titles, tmp_path / "x.png", masks=np.zeros((6, 14, 14)))
