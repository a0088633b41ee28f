"""Feature-visualization figures (pipeline/rendering/feature_figures.py): one mosaic image on a fixed layout,
and every text inside the figure, at >= 8 pt, each tile label within its own tile's width."""
from __future__ import annotations

import matplotlib.figure
import numpy as np
import pytest
from matplotlib.image import AxesImage

from pipeline.rendering.feature_figures import render_feature_grid, render_kernel_grid
from pipeline.rendering.style import MIN_FONT_PT

RNG = np.random.default_rng(0)


@pytest.fixture
def drawn(monkeypatch):
    """Per saved figure: (figure box, [(text, font size, box)], tile width in display units, images)."""
    seen = []
    real = matplotlib.figure.Figure.savefig

    def spy(self, fname, *args, **kwargs):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        renderer = FigureCanvasAgg(self).get_renderer()
        self.draw(renderer)
        texts = [(t.get_text(), t.get_fontsize(), t.get_window_extent(renderer), t.axes) for t in self.findobj(
            matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
        images = self.findobj(AxesImage)
        seen.append((self.bbox, texts, images))
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    return seen


def _check(fig_box, texts, tile_px):
    for text, size, box, ax in texts:
        assert size >= MIN_FONT_PT, text
        assert box.x0 >= fig_box.x0 - 0.5 and box.x1 <= fig_box.x1 + 0.5, f"clipped sideways: {text!r}"
        assert box.y0 >= fig_box.y0 - 0.5 and box.y1 <= fig_box.y1 + 0.5, f"clipped at the top/bottom: {text!r}"
        if ax is not None:  # a tile label: within its tile's width
            assert box.width <= tile_px + 0.5, f"label wider than its tile: {text!r}"


@pytest.mark.parametrize("n, c, names", [(64, 3, None), (12, 3, [f"{15 * i}°" for i in range(12)]),
                                         (2, 1, ["a rather long class name", "short"]), (1, 3, None)])
def test_feature_grid_is_one_image_and_nothing_is_clipped(tmp_path, drawn, n, c, names):
    title = "features.conv3: all 64 channel pictures, ranked by score " * 3
    legend = "#rank by score; u<unit>; score = the mean activation of the channel on the picture " * 4
    probs = RNG.random(n) if names else None
    path = render_feature_grid(RNG.random((n, c, 14, 14)), RNG.normal(size=n) * 1000, np.arange(n),
                               tmp_path / "grid.png", title, legend=legend, names=names, probs=probs)
    assert path.exists()
    fig_box, texts, images = drawn[-1]
    assert len(images) == 1  # one mosaic, not one axes per tile
    assert sum(t[3] is not None for t in texts) == n  # one label per tile
    cols = int(np.ceil(np.sqrt(n)))
    tile_px = images[0].axes.bbox.width / cols
    _check(fig_box, texts, tile_px)


def test_feature_grid_ranks_best_first(tmp_path, drawn):
    pats = np.zeros((3, 1, 4, 4), np.float32)
    render_feature_grid(pats, [1.0, 3.0, 2.0], [7, 8, 9], tmp_path / "g.png", "t", legend="l", top=2)
    labels = [t[0] for t in drawn[-1][1] if t[3] is not None]
    assert labels == ["#1 u8\n3", "#2 u9\n2"]


@pytest.mark.parametrize("c", [3, 1])
def test_kernel_grid_is_one_image_and_nothing_is_clipped(tmp_path, drawn, c):
    render_kernel_grid(RNG.standard_normal((16, c, 3, 3)), tmp_path / "k.png", "features.conv1: raw kernels " * 4)
    fig_box, texts, images = drawn[-1]
    assert len(images) == 1 and sum(t[3] is not None for t in texts) == 16
    _check(fig_box, texts, images[0].axes.bbox.width / 4)


@pytest.fixture
def figures(monkeypatch):
    """Every figure saved while the test runs (drawn first, so that text boxes are known)."""
    seen = []
    real = matplotlib.figure.Figure.savefig

    def spy(self, fname, *args, **kwargs):
        self.draw_without_rendering()
        seen.append(self)
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    return seen


def _tile_labels(fig):
    ax = fig.axes[0]
    return [t for t in ax.texts]


def test_class_pictures_stand_in_class_order_and_failures_are_marked(tmp_path, figures):
    """Class order (not score order), no rank, p under each class, "not reached" (red label, tinted band,
    red frame) exactly where p < 0.5 -- a NaN probability counts as not reached."""
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Rectangle

    from pipeline.rendering.feature_figures import FLAG_BAND, FLAG_COLOUR

    pats = np.zeros((4, 1, 14, 14), np.float32)
    names = [f"digit {i}" for i in range(4)]
    kw = dict(legend="l", names=names, probs=[0.9, 0.2, 0.5, np.nan], order="class")
    render_feature_grid(pats, [5.0, 1.0, 9.0, -2.0], [3, 0, 2, 1], tmp_path / "c.png", "t", **kw)
    fig = figures[-1]
    texts = _tile_labels(fig)
    assert [t.get_text() for t in texts] == ["digit 0\n1 p=0.20\nnot reached", "digit 1\n-2 p=nan\nnot reached",
                                             "digit 2\n9 p=0.50", "digit 3\n5 p=0.90"]
    assert [to_rgb(t.get_color()) for t in texts] == [to_rgb(FLAG_COLOUR)] * 2 + [(0.0, 0.0, 0.0)] * 2
    frames = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert len(frames) == 2 and all(to_rgb(p.get_edgecolor()) == to_rgb(FLAG_COLOUR) for p in frames)
    m = fig.axes[0].images[0].get_array()
    pad, cell_w = 1, 14  # round(14 / 14) = 1 px between cells; 2 x 2 grid
    assert np.allclose(m[0, 0], FLAG_BAND) and np.allclose(m[0, cell_w + pad], FLAG_BAND)  # first row: 0 and 1
    band_rows = int(np.argmax(np.all(m[:, 0] != FLAG_BAND, axis=1)))  # the band ends at the grey rule
    assert np.allclose(m[0, 0 : cell_w], FLAG_BAND) and np.allclose(m[band_rows + 1, 0], 0.0)  # black picture
    second = m.shape[0] - (m.shape[0] - pad) // 2  # first pixel row of the second grid row
    assert np.allclose(m[second, 0], 1.0) and np.allclose(m[second, cell_w + pad], 1.0)  # reached: white bands
    # top 2 by score (classes 2 and 3), still in class order
    render_feature_grid(pats, [5.0, 1.0, 9.0, -2.0], [3, 0, 2, 1], tmp_path / "t.png", "t", top=2, **kw)
    assert [t.get_text().split("\n")[0] for t in _tile_labels(figures[-1])] == ["digit 2", "digit 3"]
    # unit pictures keep the rank by score
    render_feature_grid(pats, [5.0, 1.0, 9.0, -2.0], [3, 0, 2, 1], tmp_path / "u.png", "t", legend="l")
    assert [t.get_text() for t in _tile_labels(figures[-1])] == ["#1 u2\n9", "#2 u3\n5", "#3 u0\n1", "#4 u1\n-2"]
    with pytest.raises(ValueError, match="order"):
        render_feature_grid(pats, [1.0] * 4, [0, 1, 2, 3], tmp_path / "x.png", "t", legend="l", order="rank")


def test_copies_of_a_class_stay_together_in_class_order(tmp_path, figures):
    pats = np.zeros((4, 1, 8, 8), np.float32)
    render_feature_grid(pats, [1.0, 4.0, 3.0, 2.0], [1, 1, 0, 0], tmp_path / "c.png", "t", legend="l",
                        names=["a", "b"], order="class")
    assert [t.get_text() for t in _tile_labels(figures[-1])] == ["a\n3", "a\n2", "b\n1", "b\n4"]


def test_kernel_grid_is_large_on_one_scale_with_a_colour_bar(tmp_path, figures):
    """One-channel kernels on RdBu_r over [-m, m] (m: the layer's max |w|), the colour bar on that scale,
    tiles >= 1.2 inches, each weight a block of pixels of its own colour."""
    from matplotlib import colormaps

    w = np.zeros((32, 1, 7, 7), np.float32)
    w[0, 0, 0, 0], w[1, 0, 6, 6] = 0.5, -0.25
    render_kernel_grid(w, tmp_path / "k.png", "features.conv1: kernels")
    fig = figures[-1]
    grid, bar = fig.axes[0], fig.axes[1]
    assert bar.get_xlim() == pytest.approx((-0.5, 0.5)) and "weight" in bar.get_xlabel()
    assert bar.collections or bar.images  # the bar is drawn
    m = grid.images[0].get_array()
    cols = 6  # ceil(sqrt(32))
    tile_in = grid.get_window_extent().width / fig.dpi / cols
    assert tile_in >= 1.2
    up = 4  # ceil(28 / 7) mosaic pixels per weight
    rgb = np.asarray(colormaps["RdBu_r"]([1.0, 0.5, 0.25]))[:, :3]
    band = int(np.argmax(np.all(m[:, 0] == 1.0, axis=1) == 0))  # the white label band ends at the grey rule
    top = band + 1
    assert np.allclose(m[top : top + up, 0:up], rgb[0], atol=1e-6)  # k0's +m weight: the map's top colour
    assert np.allclose(m[top, up], rgb[1], atol=1e-6)  # a zero weight: white
    x1 = 7 * up + 2  # the second tile, after a 2-pixel gap (round(28 / 14))
    assert np.allclose(m[top + 6 * up, x1 + 6 * up], rgb[2], atol=1e-6)  # k1's -m/2 weight
