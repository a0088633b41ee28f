"""Every head's gradient in one backward (``heads_backward="batched"``) equals one backward per head.

For every gradient method on a multi-head model: the batched backward, the per-head backward and
each head computed alone (``heads=[h]``, its own forward and backward) agree within 1e-5 of the
scale, for every head; a graph vmap cannot batch falls back to one backward per head with the
same result; the batched helper equals plain autograd on a hand-made graph.
"""
from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from pipeline.attribution.base import batched_head_grads
from pipeline.attribution.gradcam import GradCAM
from pipeline.attribution.gradcam_plus_plus import GradCAMPlusPlus
from pipeline.attribution.guided import GuidedBackprop, GuidedGradCAM
from pipeline.attribution.hirescam import HiResCAM
from pipeline.attribution.integrated_gradients import IntegratedGradients
from pipeline.attribution.layercam import LayerCAM
from pipeline.attribution.saliency import Saliency
from pipeline.attribution.smoothgrad import SmoothGrad
from pipeline.models.multihead import MultiHead
from tests.visualization.helpers import close, prepared, rand_images

pytestmark = pytest.mark.usefixtures("one_thread")

LAYER = "features.conv3"
METHODS = {
    "saliency": (Saliency, {}),
    "saliency_signed": (Saliency, {"abs": False}),
    "guided_backprop": (GuidedBackprop, {}),
    "smoothgrad": (SmoothGrad, {"n_samples": 3}),
    "integrated_gradients": (IntegratedGradients, {"n_steps": 4}),
    "gradcam": (GradCAM, {"target_layer": LAYER}),
    "gradcam++": (GradCAMPlusPlus, {"target_layer": LAYER}),
    "layercam": (LayerCAM, {"target_layer": LAYER}),
    "hirescam": (HiResCAM, {"target_layer": LAYER}),
    "guided_gradcam": (GuidedGradCAM, {"target_layer": LAYER}),
}
FIELDS = ("maps", "layer_maps", "attributions", "weights", "scores")


@pytest.fixture(scope="module")
def multi():
    return prepared(lambda: MultiHead(channels=(6, 8, 8), head_hidden=(16,)), 3, seed=2,
                    bn_weight=(0.5, 1.5), bn_bias=(-0.1, 0.3))


def same(a, b):
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None) == (y is None), f
        if x is not None:
            close(x, y, 1e-5, 1e-9)
    assert torch.equal(a.targets, b.targets)


@pytest.mark.parametrize("name", list(METHODS))
def test_batched_equals_per_head_and_each_head_alone(multi, name):
    cls, kw = METHODS[name]
    x = rand_images(5, 3, seed=3)
    targets = {"angle": torch.tensor([0, 3, 11, 5, 7])}  # the binary heads explain their prediction
    batched = cls(multi, batch_size=3, heads_backward="batched", **kw)
    got = batched(x, targets)
    per_head = cls(multi, batch_size=3, heads_backward="per_head", **kw)(x, targets)
    assert set(got) == set(multi.head_classes) == set(per_head)
    for h in multi.head_classes:
        same(got[h], per_head[h])
        alone = cls(multi, batch_size=3, heads=[h], **kw)(x, {h: targets[h]} if h in targets else None)
        same(got[h], alone[h])
    assert sum(float(got[h].maps.abs().max()) > 0 for h in got) >= 2  # not trivially equal
    assert batched._batched_ok or name == "guided_gradcam"  # it really ran batched (GuidedGradCAM delegates)


def test_default_is_per_head_and_bad_value_rejected(multi):
    assert Saliency(multi).heads_backward == "per_head"  # faster on the CPU: docs/gradcam.md
    with pytest.raises(ValueError, match="heads_backward"):
        GradCAM(multi, LAYER, heads_backward="vmap")


class _ItemInBackward(torch.autograd.Function):
    """Identity whose backward calls ``.item()``: vmap cannot batch it."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        if g.abs().sum().item() >= 0:
            return g
        return g  # pragma: no cover


class Unbatchable(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.m, self.head_classes = model, model.head_classes

    def forward(self, x):
        return self.m(_ItemInBackward.apply(x))


def test_unbatchable_graph_falls_back_to_one_backward_per_head(multi, caplog):
    model = Unbatchable(multi)
    x = rand_images(3, 3, seed=4)
    sal = Saliency(model, heads_backward="batched")
    with caplog.at_level(logging.WARNING):
        got = sal(x)
    assert not sal._batched_ok and "one backward per head" in caplog.text
    ref = Saliency(model)(x)
    for h in ref:
        same(got[h], ref[h])


def test_batched_head_grads_equals_autograd():
    torch.manual_seed(0)
    w = torch.randn(3, 4)
    x = torch.randn(5, 4, requires_grad=True)
    hidden = torch.tanh(x @ w.T)
    scores = [hidden[:, 0] * 2, (hidden ** 2).sum(1), hidden[:, 1] - hidden[:, 2]]
    got = batched_head_grads(scores, x)
    for s, g in zip(scores, got):
        ref, = torch.autograd.grad(s.sum(), x, retain_graph=True)
        assert torch.allclose(g, ref, atol=1e-6)
