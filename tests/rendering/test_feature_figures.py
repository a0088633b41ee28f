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
