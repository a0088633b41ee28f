"""Receptive-field placement of layer maps (pipeline.visualization.receptive_field) and its use by every CAM."""
from __future__ import annotations

import logging
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.attribution.gradcam import GradCAM
from pipeline.attribution.guided import GuidedGradCAM
from pipeline.attribution.scorecam import ScoreCAM
from pipeline.models.cnn_basic import CNNBasic
from pipeline.models.multihead import MultiHead
from pipeline.visualization.receptive_field import (AxisGeometry, LayerGeometry, layer_geometry, place_maps,
                                                    probe_geometry, trace_geometry)
from tests.visualization.helpers import rand_images

pytestmark = pytest.mark.usefixtures("one_thread")


class Strided(nn.Module):
    """conv 3x3 stride 2 (no padding), then conv 3x3 dilation 2 padding 1: 28 -> 13 -> 11.
    By hand: after the first conv cell j is centred at 1 + 2j (jump 2); the dilated kernel spans 5
    input cells of the first map, padded by 1, so its centre moves by (5-1)/2 - 1 = 1 cell = 2 px:
    cell j of ``b`` is centred at input pixel 3 + 2j."""

    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(OrderedDict(a=nn.Conv2d(1, 3, 3, stride=2), r=nn.ReLU(),
                                           b=nn.Conv2d(3, 4, 3, dilation=2, padding=1)))
        self.out = nn.Linear(4 * 11 * 11, 3)

    def forward(self, x):
        return self.out(self.f(x).flatten(1))


class Residual(nn.Module):
    """An unpadded conv, then a residual block (x + conv(x)): not a chain of modules."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 5)                  # 28 -> 24, cell j at pixel j + 2
        self.inner = nn.Conv2d(4, 4, 3, padding=1)
        self.out = nn.Linear(4 * 24 * 24, 3)

    def forward(self, x):
        s = torch.relu(self.stem(x))
        return self.out((s + self.inner(s)).flatten(1))


def test_a_one_hot_cell_lands_on_its_receptive_field_centre():
    m = Strided().eval()
    g, why = trace_geometry(m, m.f.b, torch.zeros(1, 1, 28, 28))
    assert why == "" and g.how == "traced"
    assert (g.y.stride, g.y.offset) == (2.0, 3.0) and (g.x.stride, g.x.offset) == (2.0, 3.0)
    assert g.y.extent == 1 + 2 + 4 * 2   # 3x3 at stride 1, then a 5-wide (dilated) kernel at jump 2
    for j, k in [(4, 6), (0, 10), (10, 0)]:
        cell = torch.zeros(1, 11, 11)
        cell[0, j, k] = 1.0
        placed = place_maps(cell, (28, 28), g)[0]
        assert placed[3 + 2 * j, 3 + 2 * k] == 1.0                       # the centre pixel, exactly
        if 0 < j < 10 and 0 < k < 10:   # the only maximum; halfway to the next centre (2 px away): half the value
            assert torch.equal(torch.nonzero(placed == placed.max()), torch.tensor([[3 + 2 * j, 3 + 2 * k]]))
            assert placed[3 + 2 * j + 1, 3 + 2 * k] == 0.5 and placed[3 + 2 * j - 1, 3 + 2 * k] == 0.5
    # the stretch puts cell (4, 6) at ((4 + 0.5) * 28/11 - 0.5, (6 + 0.5) * 28/11 - 0.5) = (10.95, 16.05):
    # between pixels, so no pixel reaches 1, and the strongest column is 16, not 15
    cell = torch.zeros(1, 11, 11)
    cell[0, 4, 6] = 1.0
    stretched = place_maps(cell, (28, 28), None)[0]
    assert stretched.max() < 1.0 and int(stretched.amax(0).argmax()) == 16


def test_the_probe_measures_what_the_trace_composes():
    m = Strided().eval()
    g, why = probe_geometry(m, m.f.b, (1, 28, 28))
    assert why == "" and g.how == "probed"
    assert (g.y.stride, g.y.offset, g.x.stride, g.x.offset) == (2.0, 3.0, 2.0, 3.0)


def test_cnn_basic_geometry():
    m = CNNBasic().eval()
    x = torch.zeros(1, 1, 28, 28)
    conv, why = trace_geometry(m, m.features.conv1, x)
    assert conv == LayerGeometry(AxisGeometry(1.0, 3.0, 7), AxisGeometry(1.0, 3.0, 7), "traced")
    for name in ("relu1", "bn1"):   # element-wise layers keep it
        assert trace_geometry(m, getattr(m.features, name), x)[0] == conv
    pool, _ = trace_geometry(m, m.features.pool1, x)   # 2x2 pool: cell j covers conv cells 2j, 2j+1
    assert pool == LayerGeometry(AxisGeometry(2.0, 3.5, 8), AxisGeometry(2.0, 3.5, 8), "traced")
    cell = torch.zeros(1, 22, 22)
    cell[0, 0, 21] = 1.0    # the stretch would show it at (0, 27); it is centred at (3, 24)
    placed = place_maps(cell, (28, 28), conv)[0]
    assert placed[0:4, 24:28].eq(1.0).all() and placed[4, 24] == 0 and placed[3, 23] == 0
    assert torch.equal(placed[3:25, 3:25], cell[0])   # stride 1: the map itself, pixels 3..24
    assert torch.equal(placed, F.pad(cell[None], (3, 3, 3, 3), mode="replicate")[0, 0])


def test_a_same_padded_net_keeps_the_stretch_bit_for_bit():
    m = MultiHead().eval()
    x = torch.zeros(1, 3, 28, 28)
    for name, size in (("conv1", 28), ("conv3", 14), ("pool2", 14)):
        g, _ = trace_geometry(m, getattr(m.features, name), x)
        assert g.is_stretch((size, size), (28, 28)), name
        cam = torch.rand(2, size, size)
        assert torch.equal(place_maps(cam, (28, 28), g),
                           F.interpolate(cam[:, None], size=(28, 28), mode="bilinear", align_corners=False)[:, 0])


def test_the_general_path_reproduces_the_stretch_when_given_its_geometry():
    """place_maps' own interpolation (not F.interpolate) on a geometry equal to the stretch's."""
    cam = torch.rand(3, 14, 14)
    g = LayerGeometry(AxisGeometry(2.0, 0.5 + 1e-7), AxisGeometry(2.0, 0.5 + 1e-7))   # not exactly equal: own path
    ref = F.interpolate(cam[:, None], size=(28, 28), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(place_maps(cam, (28, 28), g), ref, rtol=0, atol=1e-5)


def test_a_residual_model_is_probed_and_noted(caplog):
    torch.manual_seed(0)
    m = Residual().eval()
    x = rand_images(2, 1, 28, seed=0)
    g, note = layer_geometry(m, m.inner, x)
    assert "probed" in note and "does not read the previous module's output" in note
    assert (g.y.stride, g.y.offset) == (1.0, 2.0)            # 5x5 unpadded stem, then a padded 3x3
    with caplog.at_level(logging.WARNING):
        cam = GradCAM(m, "inner")
        res = cam(x, 0)
    assert cam.placement_notes and "probed" in cam.placement_notes[0] and "probed" in caplog.text
    torch.testing.assert_close(res.maps, F.pad(res.layer_maps[:, None], (2, 2, 2, 2), mode="replicate")[:, 0],
                               rtol=0, atol=1e-6)


def test_what_cannot_be_determined_is_stretched_with_a_note():
    m = Residual().train()     # batch statistics: no probe in training mode (and nothing to trace)
    m.inner = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))
    before = m.inner[1].running_mean.clone()
    x = rand_images(2, 1, 28, seed=0)
    g, note = layer_geometry(m, m.inner, x)
    assert g is None and "map stretched" in note and "training mode" in note
    assert torch.equal(m.inner[1].running_mean, before)     # the trace's forward changed no statistics
    cam = GradCAM(m, "inner")
    res = cam(x, 0)
    assert "stretched" in cam.placement_notes[0]
    assert torch.equal(res.maps, place_maps(res.layer_maps, (28, 28), None))


def test_every_cam_places_its_map_and_score_cam_its_masks():
    torch.manual_seed(0)
    m = CNNBasic(num_classes=3, hidden=16).eval()
    x = rand_images(2, 1, 28, seed=1)
    for make in (lambda **kw: GradCAM(m, "features.conv1", **kw),
                 lambda **kw: ScoreCAM(m, "features.conv1", **kw)):
        placed, stretched = make()(x, 1), make(placement="stretch")(x, 1)
        assert placed.maps.abs().max() > 0
        torch.testing.assert_close(placed.maps, F.pad(placed.layer_maps[:, None], (3, 3, 3, 3), mode="replicate")[:, 0],
                                   rtol=0, atol=1e-6)
        ref = F.interpolate(stretched.layer_maps[:, None], size=(28, 28), mode="bilinear", align_corners=False)[:, 0]
        torch.testing.assert_close(stretched.maps, ref, rtol=0, atol=1e-6)
    # Guided Grad-CAM's nearest mode: each cell's centre pixel carries that cell
    gg = GuidedGradCAM(m, "features.conv1", interpolate_mode="nearest")
    res = gg(x, 1)
    cam = GradCAM(m, "features.conv1")(x, 1)
    up = place_maps(cam.layer_maps, (28, 28), gg._gradcam.geometry(x), "nearest")
    assert torch.equal(up[:, 3:25, 3:25], cam.layer_maps)
    torch.testing.assert_close(res.attributions, GuidedGradCAM(m, "features.conv1")._guided(x, cam.targets).attributions
                               * up[:, None], rtol=0, atol=1e-6)


def test_bad_placement_is_refused():
    with pytest.raises(ValueError, match="placement"):
        GradCAM(CNNBasic(), "features.conv1", placement="centre")


@pytest.mark.parametrize("factory,channels", [(CNNBasic, 1), (MultiHead, 3)])
def test_the_trace_and_the_probe_agree_on_the_projects_models(factory, channels):
    torch.manual_seed(0)
    m = factory().eval()
    x = torch.zeros(1, channels, 28, 28)
    for name, mod in m.features.named_children():
        if name == "gap":
            continue
        traced, _ = trace_geometry(m, mod, x)
        probed, why = probe_geometry(m, mod, x.shape[1:])
        assert why == "", name
        assert (probed.y.stride, probed.y.offset, probed.x.stride, probed.x.offset) == \
               (traced.y.stride, traced.y.offset, traced.x.stride, traced.x.offset), name
