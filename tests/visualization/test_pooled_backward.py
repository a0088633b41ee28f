"""The hand-written gradient at a CAM layer followed by [BatchNorm2d] -> [ReLU] -> global average pool.

Oracle: plain autograd on the model (dScore/dA with a hook), and every CAM with
``closed_form_backward=False``; the chain must be used where it applies and autograd must take
over (with the same maps) wherever it does not: a head that also reads the layer, a foreign
hook on the chain, a pool that is not global, an in-place ReLU (still the chain).
"""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

import pipeline.attribution.pooled_backward as pb
from pipeline.attribution.gradcam import GradCAM
from pipeline.attribution.gradcam_plus_plus import GradCAMPlusPlus
from pipeline.attribution.guided import GuidedGradCAM
from pipeline.attribution.hirescam import HiResCAM
from pipeline.attribution.layercam import LayerCAM
from pipeline.models.multihead import MultiHead
from tests.visualization.helpers import close, prepared, rand_images

pytestmark = pytest.mark.usefixtures("one_thread")

CAMS = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "layercam": LayerCAM, "hirescam": HiResCAM,
        "guided_gradcam": GuidedGradCAM}
LAYER = "features.conv3"


@pytest.fixture(scope="module")
def multi():
    return prepared(lambda: MultiHead(channels=(6, 8, 8), head_hidden=(16,)), 3, seed=5,
                    bn_weight=(-1.0, 1.5), bn_bias=(-0.3, 0.3))


@pytest.fixture
def used(monkeypatch):
    """How often the hand-written gradient was used (grads() returned one) and declined."""
    seen = {"used": 0, "declined": 0}
    orig = pb.PooledChain.grads

    def spy(self, scores, a):
        res = orig(self, scores, a)
        seen["used" if res is not None else "declined"] += 1
        return res

    monkeypatch.setattr(pb.PooledChain, "grads", spy)
    return seen


def check_same(a, b):
    for h in b:
        close(a[h].maps, b[h].maps, 1e-5, 1e-9)
        close(a[h].layer_maps, b[h].layer_maps, 1e-5, 1e-9)
        if b[h].weights is not None:
            close(a[h].weights, b[h].weights, 1e-5, 1e-9)
        assert torch.equal(a[h].zero_grad, b[h].zero_grad)


@pytest.mark.parametrize("name", list(CAMS))
def test_every_cam_equals_autograd_with_the_hand_written_gradient(multi, name, used):
    x = rand_images(6, 3, seed=6)
    fast = CAMS[name](multi, LAYER, batch_size=4)(x)
    assert used["used"] == 2 and used["declined"] == 0  # two chunks, both hand-written
    slow = CAMS[name](multi, LAYER, batch_size=4, closed_form_backward=False)(x)
    assert used["used"] == 2
    check_same(fast, slow)
    assert sum(float(r.maps.max()) > 0 for r in fast.values()) >= 2


def test_pooled_gradient_is_the_autograd_gradient_at_the_layer(multi):
    """PooledGrad.dense() == dScore/dA from autograd, every head."""
    x = rand_images(5, 3, seed=7)
    grabbed = {}
    h = multi.features.conv3.register_forward_hook(lambda m, i, o: grabbed.setdefault("a", o))
    out = multi(x)
    h.remove()
    chain = pb.PooledChain(pb.likely_pooled_chain(multi, multi.features.conv3))
    a = grabbed["a"].detach().requires_grad_(True)
    chain.begin(a)
    try:
        feats = multi.features.gap(multi.features.relu3(multi.features.bn3(a)))
    finally:
        chain.remove()
    outs = {k: head(feats) for k, head in multi.heads.items()}
    scores = {k: v[:, -1] for k, v in outs.items()}
    pooled = chain.grads(scores, a)
    assert pooled is not None
    for k, s in scores.items():
        ref, = torch.autograd.grad(s.sum(), a, retain_graph=True)
        close(pooled[k].dense(), ref, 1e-5, 1e-9)
        close(pooled[k].mean_hw(), ref.mean((2, 3)), 1e-5, 1e-9)
        close(out[k][:, -1].detach(), s.detach(), 1e-5)


class AlsoReadsLayer(nn.Module):
    """MultiHead-like, but the score also reads conv3's output directly (functional, no module)."""

    def __init__(self, inplace=False, pool=1):
        super().__init__()
        self.features = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(3, 4, 3, padding=1), relu1=nn.ReLU(), conv3=nn.Conv2d(4, 5, 3, padding=1),
            bn3=nn.BatchNorm2d(5), relu3=nn.ReLU(inplace=inplace), gap=nn.AdaptiveAvgPool2d(pool)))
        self.fc = nn.Linear(5 * pool * pool, 3)
        self.side = False
        self.head_classes = {"class": 3}

    def forward(self, x):
        grabbed = {}
        h = self.features.conv3.register_forward_hook(lambda m, i, o: grabbed.setdefault("a", o))
        try:
            z = self.features(x)
        finally:
            h.remove()
        out = self.fc(z.flatten(1))
        if self.side:
            out = out + grabbed["a"].mean((1, 2, 3))[:, None] * 3.0
        return out


def small(**kw):
    return prepared(lambda: AlsoReadsLayer(**kw), 3, seed=8, bn_weight=(0.5, 1.5), bn_bias=(-0.2, 0.2))


@pytest.mark.parametrize("case", ["side_path", "foreign_hook", "pool_not_global", "inplace_relu"])
def test_autograd_takes_over_where_the_chain_does_not_hold(case, used):
    model = small(inplace=case == "inplace_relu", pool=2 if case == "pool_not_global" else 1)
    model.side = case == "side_path"
    handle = None
    if case == "foreign_hook":  # changes the norm's output: the formula would be wrong
        handle = model.features.bn3.register_forward_hook(lambda m, i, o: o * 2.0)
    x = rand_images(4, 3, seed=9)
    try:
        cam = GradCAM(model, "features.conv3")
        fast = cam(x)
        slow = GradCAM(model, "features.conv3", closed_form_backward=False)(x)
    finally:
        if handle is not None:
            handle.remove()
    close(fast.maps, slow.maps, 1e-5, 1e-9)
    close(fast.weights, slow.weights, 1e-5, 1e-9)
    if case == "inplace_relu":
        assert used["used"] >= 1 and cam._closed_form_ok
    elif case == "pool_not_global":
        assert cam._chain_modules == [] and used["used"] == used["declined"] == 0
    else:
        assert used["used"] == 0 and used["declined"] == 1 and not cam._closed_form_ok


def test_zero_rows_and_frac_agree_with_the_dense_gradient():
    """zero_rows (from the coefficients) == the dense gradient all zero; frac == the mask's mean."""
    g = torch.Generator().manual_seed(3)
    active = torch.relu(torch.randn(6, 5, 4, 4, generator=g))
    active[1] = 0                                       # no active position at all
    coeff = torch.randn(6, 5, generator=g)
    coeff[2] = 0                                        # every coefficient zero
    coeff[3, :] = 0
    coeff[3, 1] = 1.0
    active[3, 1] = 0                                    # the one live coefficient meets an inactive channel
    coeff[4] = 0
    coeff[4, 2] = float("inf")
    active[4, 2] = 0                                    # inf * 0 = NaN: not a zero gradient
    shared = pb._SharedMask(active, torch.float32)
    frac = torch.nn.functional.adaptive_avg_pool2d(torch.sign(active), 1).reshape(6, 5)
    assert torch.equal(frac, (active > 0).sum((2, 3)).float() / 16)
    pg = pb.PooledGrad(coeff=coeff, shared_mask=shared, frac=frac, shape=tuple(active.shape))
    rows = torch.arange(6)
    dense_zero = (pg.dense(rows) == 0).flatten(1).all(1)
    assert torch.equal(pg.zero_rows(rows), dense_zero)
    assert dense_zero.tolist() == [False, True, True, True, False, False]
