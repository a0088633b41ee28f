"""Filter patterns by gradient ascent: batched == one at a time, in range, forward stops early."""
from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from pipeline.models.cnn_basic import CNNBasic
from pipeline.models.cnn_deep import CNNDeep
from pipeline.models.multihead import MultiHead
from pipeline.visualization.filter_ascent import gaussian_blur
from pipeline.visualization.filters import FilterResult, FilterVisualizer
from pipeline.visualization.layers import UnknownLayerError
from tests.visualization import helpers
from tests.visualization.helpers import no_hooks

# float64 convolutions take a slow, thread-parallel path that stalls badly on a shared CPU
pytestmark = pytest.mark.usefixtures("one_thread")

prepared = functools.partial(helpers.prepared, batch=16)


@pytest.fixture(scope="module")
def multi64():
    """Float64 copy, so that batched and one-at-a-time runs cannot drift apart through a
    max-pool tie flipped by float32 rounding (the comparison is about the algorithm)."""
    # the 7x7-last-conv variant (pool after conv1 and conv2, flattened heads) the margins below were set on
    return prepared(MultiHead(channels=(16, 32, 64), pool_after=(1, 2), global_pool=False), 3, seed=0).double()


@pytest.fixture(scope="module")
def deep():
    return prepared(CNNDeep(in_channels=1), 1, seed=1)


def check_result(res: FilterResult, filters, value_range=(0.0, 1.0), shape=(1, 28, 28)):
    f = len(filters)
    assert torch.equal(res.filter_indices, torch.as_tensor(filters))
    assert res.patterns.shape == (f,) + shape and res.patterns.dtype == torch.float32
    assert res.patterns.min() >= value_range[0] and res.patterns.max() <= value_range[1]
    assert res.scores.shape == res.start_scores.shape == (f,)
    assert sorted(res.ranking.tolist()) == list(range(f))
    ranked = res.scores[res.ranking]
    assert (ranked[:-1] >= ranked[1:]).all()
    assert torch.isfinite(res.patterns).all() and torch.isfinite(res.scores).all()


@pytest.mark.parametrize("jitter", [0, 2])
def test_batched_equals_one_at_a_time_rgb(multi64, jitter):
    fv = FilterVisualizer(multi64, "features.conv3", input_shape=(3, 28, 28))
    filters = [0, 5, 17, 33, 40, 63]
    kw = dict(filters=filters, steps=12, step_size=0.05, seed=3, jitter=jitter)
    a = fv(**kw)
    b = fv.one_at_a_time(**kw)
    check_result(a, filters, shape=(3, 28, 28))
    torch.testing.assert_close(a.start_scores, b.start_scores, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.patterns, b.patterns, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.history, b.history, rtol=1e-4, atol=1e-5)
    for bs in (4, 0):  # two batches (4 + 2), one batch of all: same result
        c = fv(batch_size=bs, **kw)
        torch.testing.assert_close(c.scores, a.scores, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(c.patterns, a.patterns, rtol=1e-4, atol=1e-5)
    # gradient ascent works: well above the blank start for most filters (jitter slows it down)
    margin = 0.05 if jitter == 0 else 0.02
    assert ((a.scores > a.start_scores + margin).float().mean() >= 0.8), (a.start_scores, a.scores)
    assert (a.scores > a.start_scores).all()


def test_batched_equals_one_at_a_time_greyscale_float32_with_decay_and_blur():
    torch.manual_seed(0)
    m = prepared(CNNBasic(in_channels=1), 1)
    fv = FilterVisualizer(m, "features.conv1")  # (1, 28, 28) by default
    filters = list(range(0, 32, 4))
    kw = dict(filters=filters, steps=10, decay=0.02, blur_every=4, blur_sigma=0.7, seed=1)
    a = fv(**kw)
    b = fv.one_at_a_time(**kw)
    check_result(a, filters)
    torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-5)
    assert (a.scores > a.start_scores + 0.05).all()


def test_greyscale_deep_model_and_value_range(deep):
    fv = FilterVisualizer(deep, "features.conv2", value_range=(-1.0, 1.0))
    res = fv(steps=15, step_size=0.1)
    assert fv.n_filters == 32
    check_result(res, list(range(32)), value_range=(-1.0, 1.0))
    assert res.patterns.min() < -0.2 and res.patterns.max() > 0.2  # uses both sides of mid = 0
    assert (res.scores > res.start_scores + 0.05).float().mean() >= 0.8
    assert res.history.shape == (15, 32)


def test_start_is_blank_grey_plus_seeded_noise(deep):
    fv = FilterVisualizer(deep, "features.conv1")
    r0 = fv(filters=[1, 2], steps=0, noise=0.0)
    assert torch.equal(r0.patterns, torch.full((2, 1, 28, 28), 0.5))
    r1 = fv(filters=[1, 2], steps=0, noise=0.05, seed=7)
    assert 0.02 < (r1.patterns - 0.5).std() < 0.08
    torch.testing.assert_close(r1.scores, r1.start_scores)
    assert torch.equal(fv(filters=[1, 2], steps=3, seed=7).patterns, fv(filters=[1, 2], steps=3, seed=7).patterns)
    assert not torch.equal(fv(filters=[1, 2], steps=3, seed=7).patterns, fv(filters=[1, 2], steps=3, seed=8).patterns)


def test_forward_stops_at_the_layer():
    class Boom(nn.Module):
        calls = 0

        def forward(self, x):
            Boom.calls += 1
            raise AssertionError("a module after the visualized layer ran")

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3), Boom())
    res = FilterVisualizer(m, "2")(steps=5)
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
            FilterVisualizer(deep, "features.conv2")(filters=[0, 1], steps=2)
            assert not torch.is_grad_enabled()
        with torch.inference_mode():
            res = FilterVisualizer(deep, "features.conv2")(filters=[0, 1], steps=2, progress=True)
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
        FilterVisualizer(m, "features.conv2")
    fv = FilterVisualizer(m, "features.conv1")
    with pytest.raises(ValueError, match="0..31"):
        fv(filters=[32])
    with pytest.raises(ValueError):
        FilterVisualizer(m, "features.conv1", value_range=(1.0, 0.0))


def test_gaussian_blur_keeps_constants_and_smooths():
    x = torch.full((2, 3, 9, 9), 0.3)
    torch.testing.assert_close(gaussian_blur(x, 0.8), x)
    d = torch.zeros(1, 1, 9, 9)
    d[0, 0, 4, 4] = 1.0
    b = gaussian_blur(d, 0.8)
    assert b.shape == d.shape and b[0, 0, 4, 4] < 1.0 and b[0, 0, 4, 5] > 0
    torch.testing.assert_close(b.sum(), torch.tensor(1.0))


def test_model_that_rejects_channels_last_falls_back():
    class Viewer(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x.view(len(x), -1).view(len(x), 3, 28, 28))

    torch.manual_seed(0)
    fv = FilterVisualizer(Viewer(), "conv", input_shape=(3, 28, 28))
    res = fv(steps=4)
    assert not fv.channels_last
    assert (res.scores > res.start_scores).all()


def test_automatic_batches_on_cpu():
    m = prepared(MultiHead(channels=(16, 32, 64), pool_after=(1, 2), global_pool=False), 3)  # largest map 16x28x28
    fv = FilterVisualizer(m, "features.conv3", input_shape=(3, 28, 28))
    assert fv._batch_size(64, None) == 16  # 16x28x28 float32 = 50 KB per image -> 4 batches of 16
    assert fv._batch_size(64, 0) == 64 and fv._batch_size(64, 5) == 5 and fv._batch_size(6, None) == 6
    a = fv(steps=3)
    b = fv(steps=3, batch_size=0)
    torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-5)
