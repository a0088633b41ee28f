"""The evaluate job's figures: valid PNGs; the cascade grid labels blank maps instead of
drawing them as a uniform mid-colour."""
import numpy as np
from matplotlib.axes import Axes
from PIL import Image

from pipeline.rendering.evaluation_plots import plot_cascade, plot_curves, plot_scores

RNG = np.random.default_rng(0)


def _size(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_scores_and_curves(tmp_path):
    rows = [{"method": "gradcam", "head": "angle", "pointing_game": 0.99},
            {"method": "saliency", "head": "class", "pointing_game": None}]
    assert _size(plot_scores(rows, "pointing_game", tmp_path / "s.png", "pg", chance=0.03))[0] > 100
    curves = {"gradcam": RNG.random((4, 15)), "random order": RNG.random((4, 15))}
    assert _size(plot_curves(curves, tmp_path / "sub" / "c.png", "deletion"))[0] > 100


def test_cascade_grid_labels_blank_maps(tmp_path, monkeypatch):
    texts = []
    original = Axes.text

    def spy(self, x, y, s, *args, **kwargs):
        texts.append(s)
        return original(self, x, y, s, *args, **kwargs)

    monkeypatch.setattr(Axes, "text", spy)
    image = RNG.random((3, 8, 8)).astype(np.float32)
    maps = {"gradcam": [RNG.random((8, 8)), np.zeros((8, 8)), RNG.random((8, 8))],
            "layercam": [RNG.random((8, 8)), np.full((8, 8), 2.0), RNG.random((8, 8))]}
    w, h = _size(plot_cascade(image, maps, ["none", "top", "next"], tmp_path / "c.png", "cascade"))
    assert texts.count("blank") == 2          # the zero map and the constant map
    two_rows = _size(plot_cascade(image, {"gradcam": maps["gradcam"]}, ["none", "top", "next"],
                                  tmp_path / "c1.png", "cascade"))
    assert h > two_rows[1] and abs(w - two_rows[0]) < 20  # one row per method


def test_scores_draw_their_intervals_as_error_bars(tmp_path, monkeypatch):
    """A row's <score>_ci becomes an asymmetric error bar around its bar; a row without one gets none."""
    seen = {}
    original = Axes.bar

    def spy(self, x, height, *args, **kwargs):
        seen["yerr"] = kwargs.get("yerr")
        return original(self, x, height, *args, **kwargs)

    monkeypatch.setattr(Axes, "bar", spy)
    rows = [{"method": "gradcam", "head": "angle", "pointing_game": 0.9, "pointing_game_ci": [0.85, 0.93]},
            {"method": "saliency", "head": "angle", "pointing_game": 0.5}]
    plot_scores(rows, "pointing_game", tmp_path / "s.png", "pg")
    np.testing.assert_allclose(seen["yerr"], [[0.05, 0.0], [0.03, 0.0]], atol=1e-12)
    plot_scores(rows[1:], "pointing_game", tmp_path / "t.png", "pg")
    assert seen["yerr"] is None


def test_cascade_sheet_puts_each_map_in_its_row_and_column(tmp_path, monkeypatch):
    """The grid is one image: the tile of method r, step c is that map, min-max normalized and
    coloured by jet; the first column is the input; maps of another size than the image are refused."""
    import pytest
    from matplotlib import colormaps

    sheets = []
    original = Axes.imshow

    def spy(self, data, *args, **kwargs):
        sheets.append(np.asarray(data))
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(Axes, "imshow", spy)
    image = RNG.random((3, 8, 8)).astype(np.float32)
    maps = {"a": [RNG.random((8, 8)) for _ in range(3)], "b": [RNG.random((8, 8)) * 5 + 2 for _ in range(3)]}
    plot_cascade(image, maps, ["none", "top", "next"], tmp_path / "c.png", "cascade")
    sheet, = sheets
    gap = 1
    tile = lambda r, c: sheet[r * (8 + gap):r * (8 + gap) + 8, c * (8 + gap):c * (8 + gap) + 8]  # noqa: E731
    np.testing.assert_allclose(tile(1, 0), image.transpose(1, 2, 0), atol=1e-6)
    m = maps["b"][1]
    expected = colormaps["jet"]((m - m.min()) / (m.max() - m.min()))[..., :3]
    np.testing.assert_allclose(tile(1, 2), expected, atol=1e-6)
    assert np.all(sheet[8, :] == 1.0)  # the white gutter between the rows
    with pytest.raises(ValueError, match="must match"):
        plot_cascade(image, {"a": [RNG.random((4, 4))]}, ["none"], tmp_path / "d.png", "cascade")
