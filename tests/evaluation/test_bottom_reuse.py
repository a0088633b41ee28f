"""The cascade's shared bottom (pipeline/evaluation/bottom_reuse.py): the same maps as recomputing
every layer at every step, and the unchanged bottom runs once per input."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from pipeline.evaluation.bottom_reuse import BottomReuse
from pipeline.evaluation.sanity import head_cascades, parameter_layers, randomization_cascade


class CountingConv(nn.Conv2d):
    """A convolution that counts its forward computations (a memo hit does not compute)."""

    calls = 0

    def forward(self, x):
        type(self).calls += 1
        return super().forward(x)


def _multihead():
    from pipeline.models.multihead import MultiHead

    torch.manual_seed(0)
    net = MultiHead(channels=(4, 6, 8), head_hidden=(5,))
    net.train()
    with torch.no_grad():
        net(torch.rand(16, 3, 28, 28))  # batch-norm statistics that are not the defaults
    return net.eval()


def _method(name):
    from pipeline.attribution.gradcam import GradCAM
    from pipeline.attribution.guided import GuidedGradCAM
    from pipeline.attribution.integrated_gradients import IntegratedGradients
    from pipeline.attribution.saliency import Saliency
    from pipeline.attribution.scorecam import ScoreCAM
    from pipeline.attribution.smoothgrad import SmoothGrad

    return {"gradcam": lambda m, h: GradCAM(m, "features.conv3", heads=h, batch_size=2),
            "scorecam": lambda m, h: ScoreCAM(m, "features.conv3", heads=h, batch_size=2),
            "guided_gradcam": lambda m, h: GuidedGradCAM(m, "features.conv3", heads=h, batch_size=2),
            "saliency": lambda m, h: Saliency(m, heads=h, batch_size=2),
            "integrated_gradients": lambda m, h: IntegratedGradients(m, heads=h, n_steps=4, batch_size=2),
            "smoothgrad": lambda m, h: SmoothGrad(m, heads=h, n_samples=3, batch_size=2)}[name]


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "guided_gradcam", "saliency", "integrated_gradients",
                                    "smoothgrad"])
def test_head_cascades_with_reuse_equal_recomputing(method):
    """Every step's maps and correlations, every head and seed: the reused bottom gives the maps of
    the full recomputation (CAMs: the bottom without autograd; input methods: through the stored
    graphs; Guided Grad-CAM: with its ReLU gates in the backward)."""
    net = _multihead()
    heads = list(net.head_classes)
    make = _method(method)
    x = torch.rand(3, 3, 28, 28)
    targets = {h: torch.tensor([0, 1, 0]) for h in heads}
    layers = {h: parameter_layers(net, prefixes=("features", f"heads.{h}")) for h in heads}

    def all_heads(model, xb, t):
        with make(model, list(t)) as m:
            return {h: r.maps for h, r in m(xb, dict(t)).items()}

    got = head_cascades(net, all_heads, x, targets, layers, seeds=[3, 1003])
    want = head_cascades(net, all_heads, x, targets, layers, seeds=[3, 1003], reuse_bytes=0)
    for h in heads:
        for run_g, run_w in zip(got[h], want[h]):
            assert [s["layer"] for s in run_g] == [s["layer"] for s in run_w]
            for g, w in zip(run_g, run_w):
                torch.testing.assert_close(g["maps"], w["maps"], rtol=0, atol=1e-6)
                torch.testing.assert_close(g["spearman"], w["spearman"], rtol=0, atol=1e-6)


def _counting_cnn():
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(
        conv1=CountingConv(1, 4, 3, padding=1), relu1=nn.ReLU(),
        conv2=nn.Conv2d(4, 4, 3, padding=1), relu2=nn.ReLU(),
        flatten=nn.Flatten(), fc=nn.Linear(4 * 8 * 8, 6), relu3=nn.ReLU(), out=nn.Linear(6, 3)))
    return model.eval()


def _input_gradient(model, x, targets):
    x = x.clone().requires_grad_(True)
    score = model(x).gather(1, targets.view(-1, 1)).sum()
    grad, = torch.autograd.grad(score, x)
    return grad.sum(1)


@pytest.mark.parametrize("grad", [True, False])
def test_the_bottom_runs_once_per_input(grad):
    """conv1 under the randomized layers: computed once (the reference), reused at every step; a
    step that randomizes conv1 computes it afresh. Without reuse it runs at every step."""
    model = _counting_cnn()
    x, t = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])

    def fn(m, xb, tb):
        if grad:
            return _input_gradient(m, xb, tb)
        with torch.no_grad():
            return m(xb)[:, :1].expand(-1, 4).reshape(-1, 2, 2) * xb[:, 0, :2, :2]

    top = ["conv2", "fc", "out"]  # conv1 stays trained
    runs = {}
    for reuse_bytes in (0, 1 << 30):
        CountingConv.calls = 0
        runs[reuse_bytes] = randomization_cascade(model, fn, x, t, seed=1, layers=top, reuse_bytes=reuse_bytes)
        runs[reuse_bytes, "calls"] = CountingConv.calls
    assert runs[0, "calls"] == len(top) + 1
    assert runs[1 << 30, "calls"] == 1
    for g, w in zip(runs[1 << 30], runs[0]):
        torch.testing.assert_close(g["maps"], w["maps"], rtol=0, atol=1e-6)

    CountingConv.calls = 0
    every = randomization_cascade(model, fn, x, t, seed=1, reuse_bytes=1 << 30)  # conv1 randomized last
    assert CountingConv.calls == 2
    plain = randomization_cascade(model, fn, x, t, seed=1, reuse_bytes=0)
    for g, w in zip(every, plain):
        torch.testing.assert_close(g["maps"], w["maps"], rtol=0, atol=1e-6)


def test_bottom_is_below_the_first_randomized_leaf_and_memory_is_capped():
    model = _counting_cnn()
    reuse = BottomReuse(model)
    assert reuse.bottom([]) == ["conv1", "relu1", "conv2", "relu2", "flatten", "fc", "relu3", "out"]
    assert reuse.bottom(["out", "fc"]) == ["conv1", "relu1", "conv2", "relu2", "flatten"]
    assert reuse.bottom(["conv1"]) == []
    tiny = BottomReuse(model, max_bytes=1)  # nothing fits: every input is computed, the result unchanged
    x = torch.rand(2, 1, 8, 8)
    with tiny.active(model, []):
        y = model(x)
    assert "forward" not in model.conv1.__dict__  # unpatched on exit
    torch.testing.assert_close(y, model(x), rtol=0, atol=0)
    assert tiny.bytes == 0 and tiny.stats["unstored"] > 0
