"""Activation figures (issue 11): signed maps on a diverging map centred on 0, non-negative ones on a
sequential map, one scale shared by all images of a layer."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.rendering import figures


@pytest.fixture
def drawn(monkeypatch):
    figs = []
    monkeypatch.setattr(figures, "_save", lambda fig, path, dpi: figs.append(fig) or path)
    return figs


def _mosaic_image(fig):
    return next(im for ax in fig.axes for im in ax.images if im.get_array().ndim == 2)


def test_signed_activations_use_a_diverging_map_centred_on_zero(drawn, tmp_path):
    acts = np.array([[[-1.0, 0.5], [0.0, 3.0]]] * 2, np.float32)
    figures.render_activation_figure(np.zeros((3, 4, 4)), acts, tmp_path / "a.png", "t", cmap="viridis")
    im = _mosaic_image(drawn[-1])
    assert im.get_cmap().name.startswith("RdBu_r") and im.get_clim() == (-3.0, 3.0)
    labels = [ax.get_ylabel() for ax in drawn[-1].axes] + [ax.get_xlabel() for ax in drawn[-1].axes]
    assert "signed activation, 0 = white" in labels


def test_non_negative_activations_keep_the_sequential_map_and_the_layer_scale(drawn, tmp_path):
    acts = np.array([[[0.0, 0.5], [0.2, 1.0]]], np.float32)
    figures.render_activation_figure(np.zeros((3, 4, 4)), acts, tmp_path / "a.png", "t", cmap="viridis",
                                     limits=(0.0, 5.0))
    im = _mosaic_image(drawn[-1])
    assert im.get_cmap().name.startswith("viridis") and im.get_clim() == (0.0, 5.0)
    labels = [ax.get_ylabel() for ax in drawn[-1].axes]
    assert "activation (scale shared by the layer's images)" in labels
