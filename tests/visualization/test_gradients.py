"""Saliency, SmoothGrad, Integrated Gradients, Guided Grad-CAM (pipeline.attribution).

Checked against Captum (test-only): Saliency(abs=True), IntegratedGradients (same n_steps,
method and baseline), GuidedGradCam (same interpolation) to 1e-5 of the attribution's scale;
SmoothGrad against NoiseTunnel(Saliency) fed the identical noise (one image), against a direct
formula with the documented noise (several images), and statistically against Captum's own
noise.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from captum.attr import GuidedGradCam as CaptumGuidedGradCam  # test-only dependency
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import NoiseTunnel
from captum.attr import Saliency as CaptumSaliency
from pipeline.models.cnn_deep import CNNDeep
from pipeline.models.multihead import MultiHead
from pipeline.attribution.gradcam import GradCAM
from pipeline.attribution.guided import GuidedBackprop, GuidedGradCAM
from pipeline.attribution.integrated_gradients import IntegratedGradients, quadrature
from pipeline.attribution.result import AttributionResult
from pipeline.attribution.saliency import Saliency
from pipeline.attribution.smoothgrad import SmoothGrad
from tests.visualization.helpers import (OneHead, check_all_zero, check_hooks_modes_grads,
                                         check_hooks_removed_after_error, close, no_hooks, prepared,
                                         rand_images, tiny)

N = 4

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def deep():
    """Seeded random init, non-trivial batch-norm statistics, eval mode."""
    return prepared(lambda: CNNDeep(in_channels=1, channels=(6, 8, 8, 12), hidden=(24,)), 1, seed=1,
                    bn_weight=(0.5, 1.5), bn_bias=(-0.1, 0.3))


@pytest.fixture(scope="module")
def multi():
    return prepared(lambda: MultiHead(channels=(6, 8, 8), head_hidden=(16,)), 3, seed=2,
                    bn_weight=(0.5, 1.5), bn_bias=(-0.1, 0.3))


def imgs(n=N, ch=1, side=28, seed=1):
    return rand_images(n, ch, side, seed)


class CaptumHead(nn.Module):
    """A Captum forward for one head; a 1-unit head becomes [-logit, +logit]."""

    def __init__(self, model, head):
        super().__init__()
        self.m, self.head = model, head

    def forward(self, inp):
        out = self.m(inp)[self.head]
        return torch.cat([-out, out], 1) if out.shape[1] == 1 else out


TARGETS = torch.tensor([0, 3, 9, 5])
MH_TARGETS = {"length": torch.tensor([0, 1, 1, 0]), "angle": torch.tensor([11, 0, 4, 7])}


# --- Captum equality ------------------------------------------------------------------------

def test_saliency_matches_captum(deep, multi):
    x = imgs()
    res = Saliency(deep)(x, TARGETS)
    assert isinstance(res, AttributionResult) and res.method == "saliency" and res.layer == "input"
    ref = CaptumSaliency(deep).attribute(x.clone().requires_grad_(), target=TARGETS.tolist(), abs=True)
    close(res.attributions, ref, 1e-6)
    close(res.maps, ref.amax(1), 1e-6)
    assert torch.equal(res.layer_maps, res.maps) and torch.equal(res.targets, TARGETS)
    x3 = imgs(ch=3)
    mres = Saliency(multi)(x3, MH_TARGETS)
    for head, t in MH_TARGETS.items():
        ref = CaptumSaliency(CaptumHead(multi, head)).attribute(x3.clone().requires_grad_(), target=t, abs=True)
        close(mres[head].attributions, ref, 1e-6)
        close(mres[head].maps, ref.amax(1), 1e-6)


@pytest.mark.parametrize("method,n_steps,random_baseline", [("gausslegendre", 16, False),
                                                            ("riemann_trapezoid", 9, True),
                                                            ("riemann_middle", 5, False)])
def test_integrated_gradients_match_captum(deep, method, n_steps, random_baseline):
    x = imgs()
    base = imgs(seed=7) * 0.3 if random_baseline else torch.zeros_like(x)
    ig = IntegratedGradients(deep, None, n_steps=n_steps, method=method,
                             baseline=base if random_baseline else 0.0, batch_size=7)
    res = ig(x, TARGETS)
    ref, delta = CaptumIG(deep).attribute(x, baselines=base, target=TARGETS, n_steps=n_steps, method=method,
                                          return_convergence_delta=True)
    close(res.attributions, ref, 1e-5)
    close(res.maps, ref.sum(1).abs(), 1e-5)
    assert torch.allclose(res.extras["delta"], delta.float(), atol=1e-5 * float(ref.abs().sum()))


def test_integrated_gradients_multihead_binary_head_matches_captum(multi):
    x = imgs(ch=3)
    res = IntegratedGradients(multi, None, n_steps=8)(x, MH_TARGETS)
    for head, t in MH_TARGETS.items():
        ref = CaptumIG(CaptumHead(multi, head)).attribute(x, target=t, n_steps=8)
        close(res[head].attributions, ref, 1e-5)


def test_integrated_gradients_delta_is_the_completeness_error(deep):
    x, t = imgs(2), torch.tensor([4, 6])
    base = torch.full_like(x, 0.25)
    res = IntegratedGradients(deep, None, n_steps=32, baseline=0.25)(x, t)
    with torch.no_grad():
        diff = deep(x).gather(1, t[:, None])[:, 0] - deep(base).gather(1, t[:, None])[:, 0]
    expect = res.attributions.flatten(1).sum(1) - diff
    assert torch.allclose(res.extras["delta"], expect, atol=1e-6)
    assert torch.allclose(res.extras["delta_relative"], expect.abs() / diff.abs(), rtol=1e-5, atol=1e-7)
    assert torch.allclose(res.scores, deep(x).gather(1, t[:, None])[:, 0], atol=1e-6)


@pytest.mark.parametrize("layer,mode", [("features.conv4", "bilinear"), ("features.conv2", "nearest"),
                                        ("features.relu3", "bilinear")])
@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
def test_guided_gradcam_matches_captum(deep, layer, mode):
    x = imgs()
    res = GuidedGradCAM(deep, layer, interpolate_mode=mode)(x, TARGETS)
    module = dict(deep.named_modules())[layer]
    ref = CaptumGuidedGradCam(deep, module).attribute(x.clone().requires_grad_(), target=TARGETS,
                                                      interpolate_mode=mode)
    close(res.attributions, ref, 1e-5)
    close(res.maps, ref.abs().amax(1), 1e-5)
    gc = GradCAM(deep, layer)(x, TARGETS)
    assert torch.equal(res.layer_maps, gc.layer_maps) and res.layer == layer
    assert no_hooks(deep)


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
def test_guided_gradcam_multihead_matches_captum(multi):
    x = imgs(ch=3)
    res = GuidedGradCAM(multi, "features.conv3")(x, MH_TARGETS)
    for head, t in MH_TARGETS.items():
        ref = CaptumGuidedGradCam(CaptumHead(multi, head), multi.features.conv3).attribute(
            x.clone().requires_grad_(), target=t, interpolate_mode="bilinear")
        close(res[head].attributions, ref, 1e-5)


def test_smoothgrad_matches_captum_noise_tunnel_on_identical_noise(deep):
    x = imgs(1)
    sg = SmoothGrad(deep, None, n_samples=12, stdev_spread=0.2, seed=5, batch_size=5)
    res = sg(x, 3)
    sigma = float(0.2 * (x.max() - x.min()))
    torch.manual_seed(5)  # Captum draws torch.normal(0, sigma) from the global generator
    ref = NoiseTunnel(CaptumSaliency(deep)).attribute(x.clone().requires_grad_(), nt_type="smoothgrad",
                                                      nt_samples=12, stdevs=sigma, target=3, abs=True)
    close(res.attributions, ref, 1e-5)
    close(res.maps, ref.amax(1), 1e-5)


def test_smoothgrad_direct_formula_batching_and_statistics(deep):
    x = imgs(3)
    x = (x - x.amin((1, 2, 3), keepdim=True)) / (x.amax((1, 2, 3), keepdim=True) - x.amin((1, 2, 3), keepdim=True))
    x[1] *= 0.5  # a different range: a different sigma
    t = torch.tensor([2, 7, 1])
    n, spread, seed = 6, 0.15, 11
    res = SmoothGrad(deep, None, n_samples=n, stdev_spread=spread, seed=seed)(x, t)
    # direct formula with the documented noise: randn([n, C, H, W]) * sigma_i, image by image
    gen = torch.Generator().manual_seed(seed)
    expect = []
    for i in range(len(x)):
        noise = torch.randn((n,) + tuple(x.shape[1:]), generator=gen) * (spread * (x[i].max() - x[i].min()))
        acc = torch.zeros_like(x[i])
        for s in range(n):
            xi = (x[i] + noise[s]).unsqueeze(0).requires_grad_(True)
            g, = torch.autograd.grad(deep(xi)[0, t[i]], xi)
            acc += g[0].abs()
        expect.append(acc / n)
    expect = torch.stack(expect)
    close(res.attributions, expect, 1e-5)
    # the same for any batch_size (copies of one image split across forwards)
    res2 = SmoothGrad(deep, None, n_samples=n, stdev_spread=spread, seed=seed, batch_size=4)(x, t)
    close(res2.attributions, res.attributions, 1e-6)
    # no noise: plain saliency
    close(SmoothGrad(deep, None, n_samples=2, stdev_spread=0.0)(x, t).attributions,
          Saliency(deep)(x, t).attributions, 1e-6)
    # statistically equal to Captum's own noise (images 0 and 2 have range exactly 1)
    xs, ts = x[[0, 2]], t[[0, 2]]
    ours = SmoothGrad(deep, None, n_samples=48, stdev_spread=spread, seed=1)(xs, ts).maps
    torch.manual_seed(123)
    theirs = NoiseTunnel(CaptumSaliency(deep)).attribute(
        xs.clone().requires_grad_(), nt_type="smoothgrad", nt_samples=48, stdevs=spread, target=ts,
        abs=True).amax(1)
    for a, b in zip(ours, theirs):
        corr = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
        assert corr > 0.85, float(corr)  # about 0.92 for two independent draws of 48
        assert abs(float(a.mean() / b.mean()) - 1) < 0.05


# --- multi-head, targets, batching -------------------------------------------------------------

METHODS = {
    "saliency": lambda m, **kw: Saliency(m, None, **kw),
    "smoothgrad": lambda m, **kw: SmoothGrad(m, None, n_samples=3, **kw),
    "integrated_gradients": lambda m, **kw: IntegratedGradients(m, None, n_steps=4, **kw),
    "guided_backprop": lambda m, **kw: GuidedBackprop(m, None, **kw),
    "guided_gradcam": lambda m, **kw: GuidedGradCAM(m, "features.conv1", **kw),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_multihead_per_head_equals_single_head_wrapper(multi, name):
    x = imgs(3, ch=3)
    targets = {"angle": torch.tensor([3, 0, 11]), "colour": 1}
    res = METHODS[name](multi)(x, targets)
    assert set(res) == {"length", "width", "angle", "colour"}
    assert torch.equal(res["colour"].targets, torch.ones(3, dtype=torch.long))
    for head, r in res.items():
        wrapper = OneHead(multi, head)
        if name == "guided_gradcam":
            single = GuidedGradCAM(wrapper, multi.features.conv1)(x, targets.get(head))
        else:
            single = METHODS[name](wrapper)(x, targets.get(head))
        assert single.head == "class" and r.head == head and r.binary == (head != "angle")
        assert torch.equal(single.targets, r.targets)
        close(r.attributions, single.attributions, 1e-5)
        close(r.maps, single.maps, 1e-5)
        close(r.probs, single.probs, 1e-6)


@pytest.mark.parametrize("name", list(METHODS))
def test_per_image_targets_batching_and_default_targets(name):
    model = tiny()
    x = imgs(5, ch=3, side=12)
    targets = torch.tensor([4, 0, 2, 2, 1])
    full = METHODS[name](model)(x, targets)
    chunked = METHODS[name](model, batch_size=2)(x, targets.tolist())
    close(chunked.attributions, full.attributions, 1e-6)
    assert full.attributions.abs().amax((1, 2, 3)).min() > 0
    for i in range(len(x)):
        if name == "smoothgrad":  # the noise of image i is the i-th draw: compared by formula above
            break
        one = METHODS[name](model)(x[i], int(targets[i]))
        close(one.attributions[0], full.attributions[i], 1e-5)
    default = METHODS[name](model)(x)
    logits = model(x)
    assert torch.equal(default.targets, logits.argmax(1))
    assert torch.allclose(default.scores, logits.max(1).values, atol=1e-6)
    assert torch.allclose(default.probs, torch.softmax(logits, 1).max(1).values, atol=1e-6)


# --- zeros, hooks, modes, grads ---------------------------------------------------------------

@pytest.mark.parametrize("name", list(METHODS))
def test_all_zero_maps_are_zeros_with_a_note_not_nan(name):
    model = tiny()
    with torch.no_grad():
        model.features.conv1.bias.fill_(-100.0)  # relu1 dead: no gradient reaches the input
    res = METHODS[name](model)(imgs(ch=3, side=12))
    zero = [res.maps, res.maps_normalized, res.attributions]
    if name != "guided_gradcam":  # there layer_maps is Grad-CAM's map (not zero: conv2's bias)
        zero.append(res.layer_maps)
    check_all_zero(res, zero, N)


@pytest.mark.parametrize("name", list(METHODS))
def test_hooks_modes_grads_and_inference_mode(name):
    # no_hooks covers the guided-backprop ReLU hooks too
    check_hooks_modes_grads(METHODS[name], tiny(), imgs(ch=3, side=12), "attributions")


def test_hooks_removed_after_an_error_and_argument_checks():
    check_hooks_removed_after_error(METHODS.values(), imgs(2, ch=3, side=12))
    model = tiny()
    with pytest.raises(ValueError, match="target_layer must be None"):
        Saliency(model, "features.conv1")
    with pytest.raises(ValueError, match="needs a target layer"):
        GuidedGradCAM(model, None)
    with pytest.raises(ValueError, match="gausslegendre"):
        IntegratedGradients(model, None, method="simpson")
    with pytest.raises(ValueError, match="n_steps"):
        IntegratedGradients(model, None, n_steps=1, method="riemann_left")
    with pytest.raises(ValueError, match="baseline"):
        IntegratedGradients(model, None, baseline=torch.zeros(2, 3, 5, 5))(imgs(2, ch=3, side=12))
    with pytest.raises(ValueError, match="n_samples"):
        SmoothGrad(model, None, n_samples=0)


def test_quadrature_matches_captum():
    from captum.attr._utils.approximation_methods import approximation_parameters
    for method in ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"):
        steps, alphas = quadrature(method, 7)
        s_ref, a_ref = approximation_parameters(method)
        assert np.allclose(steps, s_ref(7), rtol=0, atol=1e-12)
        assert np.allclose(alphas, a_ref(7), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["guided_backprop", "guided_gradcam", "saliency"])
def test_inplace_relu_gives_the_same_attributions(name):
    x = imgs(ch=3, side=12)
    plain = METHODS[name](tiny())(x)
    inplace = METHODS[name](tiny(inplace=True))(x)
    close(inplace.attributions, plain.attributions, 1e-6)


def test_guided_backprop_only_positive_gradients_pass_relus():
    """Guided backprop = the gradient where every ReLU's backward is relu(grad_in) (by hand)."""
    model = tiny()
    x = imgs(2, ch=3, side=12)
    res = GuidedBackprop(model)(x, [1, 3])
    f = model.features
    xi = x.clone().requires_grad_(True)
    z1 = f.conv1(xi)
    r1 = z1.clamp_min(0)
    z2 = f.conv2(r1)
    r2 = z2.clamp_min(0)
    logits = model.classifier(f.pool(r2))
    score = logits[0, 1] + logits[1, 3]
    g_r2, = torch.autograd.grad(score, r2, retain_graph=True)
    g_z2 = (g_r2 * (z2 > 0)).clamp_min(0)
    g_r1, = torch.autograd.grad(z2, r1, g_z2, retain_graph=True)
    g_z1 = (g_r1 * (z1 > 0)).clamp_min(0)
    g_x, = torch.autograd.grad(z1, xi, g_z1)
    close(res.attributions, g_x, 1e-6)


def test_affine_batchnorm_grads_keep_the_outputs_and_the_gradient():
    """The eval-mode batch norms' cheap backward: the same outputs (bit for bit) and the same
    input gradient up to float rounding; training-mode batch norms are left alone."""
    from pipeline.attribution.input_gradient import affine_batchnorm_grads
    from pipeline.models.multihead import MultiHead

    torch.manual_seed(0)
    net = MultiHead(channels=(4, 6, 8), head_hidden=(5,))
    net.train()
    with torch.no_grad():
        net(torch.rand(16, 3, 28, 28))
    net.eval()
    x = torch.rand(5, 3, 28, 28)

    def run(fast):
        leaf = x.clone().requires_grad_(True)
        if fast:
            with affine_batchnorm_grads(net) as n_hooked:
                out = net(leaf)["angle"]
            assert n_hooked == 3
        else:
            out = net(leaf)["angle"]
        g, = torch.autograd.grad(out[:, 3].sum(), leaf)
        return out.detach(), g

    (out0, g0), (out1, g1) = run(False), run(True)
    assert torch.equal(out0, out1)
    torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-7)
    net.train()
    with affine_batchnorm_grads(net) as n_hooked:
        assert n_hooked == 0
    net.eval()


def test_affine_batchnorm_grads_with_an_inplace_relu_after_the_norm():
    """The cheap backward hands on the norm's own output (no copy): an in-place ReLU after it still
    gives the values and the input gradient of the plain forward, for Saliency and Grad-CAM."""
    from pipeline.attribution.fast_backward import affine_batchnorm_grads

    def net(inplace):
        torch.manual_seed(3)
        m = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(inplace=inplace),
                          nn.Conv2d(5, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=inplace),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4))
        m.train()
        with torch.no_grad():
            m(torch.rand(8, 3, 12, 12))
        return m.eval()

    x = torch.rand(4, 3, 12, 12)
    plain, inplace = net(False), net(True)
    leaf = x.clone().requires_grad_(True)
    out0 = plain(leaf)
    g0, = torch.autograd.grad(out0[:, 1].sum(), leaf)
    leaf = x.clone().requires_grad_(True)
    with affine_batchnorm_grads(inplace):
        out1 = inplace(leaf)
    g1, = torch.autograd.grad(out1[:, 1].sum(), leaf)
    assert torch.equal(out0, out1)
    torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-7)
    close(Saliency(inplace)(x, 1).attributions, Saliency(plain)(x, 1).attributions, 1e-5)
    close(GradCAM(inplace, "3")(x, 1).maps, GradCAM(plain, "3")(x, 1).maps, 1e-5)


def test_completeness_relative_edge_cases():
    from pipeline.attribution.integrated_gradients import completeness_relative

    got = completeness_relative(torch.tensor([0.5, -0.2, 0.0, 0.3]), torch.tensor([2.0, -0.4, 0.0, 0.0]))
    assert got.tolist() == [0.25, 0.5, 0.0, float("inf")]


def test_gauss_legendre_beats_riemann_at_the_same_steps_on_a_smooth_model():
    """The quadrature's point: on a smooth path integral (tanh net) Gauss-Legendre with few nodes
    has a far smaller completeness error than the Riemann sums with more."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 28 * 28, 4)).eval()
    x, t = imgs(3), torch.tensor([0, 1, 2])
    err = {m: IntegratedGradients(net, None, n_steps=n, method=m)(x, t).extras["delta"].abs().max().item()
           for m, n in [("gausslegendre", 4), ("riemann_trapezoid", 16), ("riemann_middle", 16)]}
    assert err["gausslegendre"] < 0.1 * min(err["riemann_trapezoid"], err["riemann_middle"]), err
