"""Filter patterns (FeatureVisualizer, channel objective): batched == one at a time, in range,
the forward stops at the layer, modes/grads/hooks restored, the penalties' signs and strengths."""
from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from pipeline.models.cnn_basic import CNNBasic
from pipeline.models.cnn_deep import CNNDeep
from pipeline.models.multihead import MultiHead
from pipeline.visualization.feature_objectives import gaussian_blur, penalties
from pipeline.visualization.feature_vis import FeatureResult, FeatureVisualizer
from pipeline.visualization.layers import UnknownLayerError
from tests.visualization import helpers
from tests.visualization.helpers import SumUnit, no_hooks

# float64 convolutions take a slow, thread-parallel path that stalls badly on a shared CPU
pytestmark = pytest.mark.usefixtures("one_thread")

prepared = functools.partial(helpers.prepared, batch=16)
PLAIN = dict(objective="channel", param="pixel", transforms=[])


@pytest.fixture(scope="module")
def multi64():
    """Float64 copy, so that batched and one-at-a-time runs cannot drift apart through a
    max-pool tie flipped by float32 rounding (the comparison is about the algorithm)."""
    return prepared(lambda: MultiHead(channels=(16, 32, 64), pool_after=(1, 2), global_pool=False), 3, seed=0).double()


@pytest.fixture(scope="module")
def deep():
    return prepared(lambda: CNNDeep(in_channels=1), 1, seed=1)


def check_result(res: FeatureResult, filters, shape=(1, 28, 28)):
    f = len(filters)
    assert torch.equal(res.targets, torch.as_tensor(filters))
    assert res.patterns.shape == (f,) + shape and res.patterns.dtype == torch.float32
    assert res.patterns.min() >= 0.0 and res.patterns.max() <= 1.0
    assert res.scores.shape == res.start_scores.shape == (f,)
    assert sorted(res.ranking.tolist()) == list(range(f))
    ranked = res.scores[res.ranking]
    assert (ranked[:-1] >= ranked[1:]).all()
    assert torch.isfinite(res.patterns).all() and torch.isfinite(res.scores).all()


@pytest.mark.parametrize("transforms", [[], ["jitter"]])
def test_batched_equals_one_at_a_time_rgb(multi64, transforms):
    fv = FeatureVisualizer(multi64, "features.conv3", (3, 28, 28))
    filters = [0, 5, 17, 33, 40, 63]
    kw = dict(PLAIN, steps=12, lr=0.05, seed=3, transforms=transforms, jitter=2.0)
    a = fv(filters, **kw)
    b = fv.one_at_a_time(filters, **kw)
    check_result(a, filters, shape=(3, 28, 28))
    torch.testing.assert_close(a.start_scores, b.start_scores, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.patterns, b.patterns, rtol=1e-4, atol=1e-5)
    for bs in (4, 0):  # two batches (4 + 2), one batch of all: same result
        c = fv(filters, batch_size=bs, **kw)
        torch.testing.assert_close(c.scores, a.scores, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(c.patterns, a.patterns, rtol=1e-4, atol=1e-5)
    # the ascent works: well above the blank start for most filters (jitter slows it down)
    margin = 0.05 if not transforms else 0.02
    assert ((a.scores > a.start_scores + margin).float().mean() >= 0.8), (a.start_scores, a.scores)
    assert (a.scores > a.start_scores).all()


def test_batched_equals_one_at_a_time_greyscale_float32_with_penalties():
    torch.manual_seed(0)
    m = prepared(lambda: CNNBasic(in_channels=1), 1)
    fv = FeatureVisualizer(m, "features.conv1")  # (1, 28, 28) by default
    filters = list(range(0, 32, 4))
    kw = dict(PLAIN, steps=10, l1=0.02, tv=0.02, blur=0.05, seed=1)
    a = fv(filters, **kw)
    b = fv.one_at_a_time(filters, **kw)
    check_result(a, filters)
    torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-5)
    assert (a.scores > a.start_scores + 0.05).all()


def test_greyscale_deep_model(deep):
    fv = FeatureVisualizer(deep, "features.conv2")
    res = fv(**PLAIN, steps=30, lr=0.05)
    assert fv.n_units == 32
    check_result(res, list(range(32)))
    assert res.patterns.min() < 0.3 and res.patterns.max() > 0.7  # uses both sides of the grey start
    assert (res.scores > res.start_scores).all() and float((res.scores - res.start_scores).mean()) > 0.05


def test_start_is_blank_grey_plus_seeded_noise(deep):
    fv = FeatureVisualizer(deep, "features.conv1")
    r0 = fv([1, 2], **PLAIN, steps=0, noise=0.0)
    assert torch.equal(r0.patterns, torch.full((2, 1, 28, 28), 0.5))
    r1 = fv([1, 2], **PLAIN, steps=0, noise=0.05, seed=7)
    assert 0.02 < (r1.patterns - 0.5).std() < 0.08
    torch.testing.assert_close(r1.scores, r1.start_scores)
    run = functools.partial(fv, [1, 2], **PLAIN, steps=3)
    assert torch.equal(run(seed=7).patterns, run(seed=7).patterns)
    assert not torch.equal(run(seed=7).patterns, run(seed=8).patterns)


def test_forward_stops_at_the_layer():
    class Boom(nn.Module):
        calls = 0

        def forward(self, x):
            Boom.calls += 1
            raise AssertionError("a module after the visualized layer ran")

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3), Boom())
    res = FeatureVisualizer(m, "2")(**PLAIN, steps=5)
    assert Boom.calls == 0
    check_result(res, list(range(6)))
    assert (res.scores > res.start_scores).all()


def test_modes_grads_and_hooks_are_restored(deep):
    seen = []
    h = deep.features.bn1.register_forward_hook(lambda mod, i, o: seen.append(mod.training))
    deep.train()
    deep.classifier.eval()  # mixed modes must come back as they were
    try:
        with torch.no_grad():
            FeatureVisualizer(deep, "features.conv2")([0, 1], **PLAIN, steps=2)
            assert not torch.is_grad_enabled()
        with torch.inference_mode():
            res = FeatureVisualizer(deep, "features.conv2")([0, 1], **PLAIN, steps=2)
    finally:
        h.remove()
        modes = [(mod, mod.training) for mod in deep.modules()]
        deep.eval()
    assert seen and not any(seen)  # eval mode during the call
    assert dict((id(m), t) for m, t in modes)[id(deep.features.bn1)] is True
    assert dict((id(m), t) for m, t in modes)[id(deep.classifier.out)] is False
    assert all(p.grad is None for p in deep.parameters())
    assert no_hooks(deep)
    assert (res.scores > res.start_scores).all()


def test_bad_arguments():
    m = CNNBasic()
    with pytest.raises(UnknownLayerError):
        FeatureVisualizer(m, "features.conv2")
    fv = FeatureVisualizer(m, "features.conv1")
    with pytest.raises(ValueError, match="0..31"):
        fv([32], **PLAIN, steps=1)
    with pytest.raises(ValueError, match="lr > 0"):
        fv([0], **PLAIN, steps=1, lr=0.0)
    with pytest.raises(ValueError, match="l1"):
        fv([0], **PLAIN, steps=1, l1=-1.0)


def test_gaussian_blur_keeps_constants_and_smooths():
    x = torch.full((2, 3, 9, 9), 0.3)
    torch.testing.assert_close(gaussian_blur(x, 0.8), x)
    d = torch.zeros(1, 1, 9, 9)
    d[0, 0, 4, 4] = 1.0
    b = gaussian_blur(d, 0.8)
    assert b.shape == d.shape and b[0, 0, 4, 4] < 1.0 and b[0, 0, 4, 5] > 0
    torch.testing.assert_close(b.sum(), torch.tensor(1.0))


def test_penalty_values_are_exact():
    """l1 = w * mean |x|; tv = w * (mean |horizontal step| + mean |vertical step|); blur = w * mean (x - blur x)^2."""
    x = torch.zeros(2, 1, 4, 6, dtype=torch.float64)
    x[0] = (torch.arange(4)[:, None] + torch.arange(6)[None, :]).remainder(2).double()  # checkerboard
    x[1, 0, :, 3:] = 0.5  # one vertical edge of height 0.5
    torch.testing.assert_close(penalties(x, l1=2.0), 2.0 * torch.tensor([0.5, 0.25], dtype=torch.float64))
    # checkerboard: every step is 1; the edge: 4 of the 4*5 horizontal steps are 0.5, no vertical step
    torch.testing.assert_close(penalties(x, tv=3.0), 3.0 * torch.tensor([2.0, 4 * 0.5 / 20], dtype=torch.float64))
    b = gaussian_blur(x, 1.0)
    torch.testing.assert_close(penalties(x, blur=0.5), 0.5 * (x - b).pow(2).flatten(1).mean(1))
    assert torch.equal(penalties(x), torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("l1, up", [(1.0, True), (3.0, False)])
def test_l1_penalty_sign_and_strength_relative_to_the_objective(l1, up):
    """From grey 0.5 the unit is 8; d(objective)/dx = 1 per pixel and d(l1 * |objective| * mean|x|)/dx =
    l1 * 8 / 16: below 1 for l1 = 1 (pixels rise), above 1 for l1 = 3 (pixels fall towards the black
    background). A flipped sign, or a weight not scaled by |objective|, rises for l1 = 3."""
    res = FeatureVisualizer(SumUnit().double(), "conv", (1, 4, 4))(**PLAIN, steps=1, lr=0.01, noise=0.0, l1=l1)
    step = res.patterns - 0.5
    assert torch.allclose(step, torch.full_like(step, 0.01 if up else -0.01), atol=1e-6)


def test_tv_penalty_pulls_towards_the_neighbours():
    """A bright pixel in the grey: TV lowers it (and raises its neighbours) unless the unit wins."""
    class Zero(nn.Module):  # objective constant 1: only the (relative) penalty moves the pixels
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 4)
            nn.init.zeros_(self.conv.weight)
            nn.init.ones_(self.conv.bias)

        def forward(self, x):
            return self.conv(x)

    fv = FeatureVisualizer(Zero().double(), "conv", (1, 4, 4))
    res = fv(**PLAIN, steps=1, lr=0.01, noise=0.0, tv=1.0)
    assert torch.equal(res.patterns, torch.full((1, 1, 4, 4), 0.5))  # flat grey: no TV gradient to follow
    # the start is seeded noise; a TV step must lower the total variation
    res = fv(**PLAIN, steps=20, lr=0.01, noise=0.1, seed=2, tv=1.0)
    start = fv(**PLAIN, steps=0, noise=0.1, seed=2).patterns
    assert float(penalties(res.patterns, tv=1.0)) < 0.5 * float(penalties(start, tv=1.0))


def test_model_with_views_works():
    class Viewer(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x.view(len(x), -1).view(len(x), 3, 28, 28))

    torch.manual_seed(0)
    res = FeatureVisualizer(Viewer(), "conv", (3, 28, 28))(**PLAIN, steps=4)
    assert (res.scores > res.start_scores).all()
