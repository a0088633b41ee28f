"""Grad-CAM++, Score-CAM, Layer-CAM, HiResCAM (pipeline.attribution).

Each CAM is checked against a deliberately naive transcription of its paper's formula written
here (per image, per channel, per location loops in float64 on a float64 copy of the model;
no code shared with cams.py), to 1e-5 of the map's scale.
"""
from __future__ import annotations

import copy
import functools
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.multihead import MultiHead
from pipeline.attribution.gradcam import GradCAM
from pipeline.attribution.gradcam_plus_plus import GradCAMPlusPlus
from pipeline.attribution.hirescam import HiResCAM
from pipeline.attribution.layercam import LayerCAM
from pipeline.attribution.result import AttributionResult
from pipeline.attribution.scorecam import ScoreCAM
from tests.visualization import helpers
from tests.visualization.helpers import (OneHead, check_all_zero, check_hooks_modes_grads,
                                         check_hooks_removed_after_error, rand_images, tiny)

GRAD_CAMS = {"gradcam++": GradCAMPlusPlus, "layercam": LayerCAM, "hirescam": HiResCAM}
ALL_CAMS = {**GRAD_CAMS, "scorecam": ScoreCAM}
N, S = 4, 12  # images, image side of the tiny model (helpers.Tiny)

pytestmark = pytest.mark.usefixtures("one_thread")

# |ours - ref| <= tol * max|ref| (plus a float32 floor) everywhere
close = functools.partial(helpers.close, floor=1e-7)


def imgs(n=N, side=S, ch=3, seed=1):
    return rand_images(n, ch, side, seed)


# --- naive references ---------------------------------------------------------------------

def split(ref_model, layer):
    """(below, above): the float64 model cut after features.<layer>."""
    names = [n for n, _ in ref_model.features.named_children()]
    i = names.index(layer.split(".")[1]) + 1
    below = ref_model.features[:i]

    def above(a):
        return ref_model.classifier(ref_model.features[i:](a))
    return below, above


def naive_score(logits_row, t):
    """Target score of one image: logit, or +/-logit for a 1-unit head."""
    if logits_row.numel() == 1:
        return logits_row[0] if t == 1 else -logits_row[0]
    return logits_row[t]


def naive_prob(logits_row, t):
    if logits_row.numel() == 1:
        return float(torch.sigmoid(naive_score(logits_row, t)))
    return float(torch.softmax(logits_row, 0)[t])


def naive_gradient_cam(model, layer, x, targets, method):
    ref = copy.deepcopy(model).double()
    below, above = split(ref, layer)
    out = []
    for i in range(len(x)):
        a = below(x[i:i + 1].double()).detach().requires_grad_(True)
        score = naive_score(above(a)[0], int(targets[i]))
        g, = torch.autograd.grad(score, a)
        A, G = a[0].detach().tolist(), g[0].tolist()  # python floats, [C][h][w]
        C, h, w = len(A), len(A[0]), len(A[0][0])
        L = [[0.0] * w for _ in range(h)]
        if method == "gradcam++":
            wts = []
            for k in range(C):
                s_k = sum(A[k][p][q] for p in range(h) for q in range(w))
                wk = 0.0
                for p in range(h):
                    for q in range(w):
                        gg = G[k][p][q]
                        if gg != 0:
                            alpha = gg ** 2 / (2 * gg ** 2 + s_k * gg ** 3)
                            wk += alpha * max(gg, 0.0)
                wts.append(wk)
            for p in range(h):
                for q in range(w):
                    L[p][q] = max(0.0, sum(wts[k] * A[k][p][q] for k in range(C)))
        elif method == "layercam":
            for p in range(h):
                for q in range(w):
                    L[p][q] = max(0.0, sum(max(G[k][p][q], 0.0) * A[k][p][q] for k in range(C)))
        elif method == "hirescam":
            for p in range(h):
                for q in range(w):
                    L[p][q] = max(0.0, sum(G[k][p][q] * A[k][p][q] for k in range(C)))
        out.append(L)
    return torch.tensor(out, dtype=torch.float64)


def naive_score_cam(model, layer, x, targets, subtract_baseline=False):
    ref = copy.deepcopy(model).double()
    below, _ = split(ref, layer)
    out = []
    with torch.no_grad():
        for i in range(len(x)):
            xi = x[i:i + 1].double()
            t = int(targets[i])
            a = below(xi)
            base = naive_prob(ref(torch.zeros_like(xi))[0], t)
            cam = torch.zeros(a.shape[2:], dtype=torch.float64)
            for k in range(a.shape[1]):
                up = F.interpolate(a[:, k:k + 1], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
                if up.max() == up.min():
                    continue
                mask = (up - up.min()) / (up.max() - up.min())
                wk = naive_prob(ref(xi * mask)[0], t) - (base if subtract_baseline else 0.0)
                cam += wk * a[0, k]
            out.append(cam.clamp_min(0))
    return torch.stack(out)


# --- equality with the papers' formulas ----------------------------------------------------

@pytest.mark.parametrize("k", [5, 1])
@pytest.mark.parametrize("layer", ["features.conv2", "features.pool"])
@pytest.mark.parametrize("name", list(GRAD_CAMS))
def test_gradient_cams_match_naive_formula(name, layer, k):
    model = tiny(k)
    x = imgs()
    targets = torch.tensor([0, 3, 4, 1]) if k == 5 else torch.tensor([0, 1, 1, 0])
    res = GRAD_CAMS[name](model, layer)(x, targets)
    assert isinstance(res, AttributionResult)
    assert res.method == name and res.binary == (k == 1)
    assert torch.equal(res.targets, targets)
    ref = naive_gradient_cam(model, layer, x, targets, name)
    assert ref.abs().max() > 0
    close(res.layer_maps, ref)
    close(res.maps, F.interpolate(ref[:, None], size=(S, S), mode="bilinear", align_corners=False)[:, 0])
    assert res.maps.shape == (N, S, S) and res.layer_maps.shape == ref.shape
    assert res.maps_normalized.min() >= 0 and res.maps_normalized.max() <= 1
    assert res.attributions is None


@pytest.mark.parametrize("k,subtract", [(5, False), (5, True), (1, False)])
def test_score_cam_matches_naive_formula(k, subtract):
    model = tiny(k)
    x = imgs()
    targets = torch.tensor([2, 0, 4, 1]) if k == 5 else torch.tensor([1, 0, 0, 1])
    res = ScoreCAM(model, "features.pool", subtract_baseline=subtract, mask_batch_size=5)(x, targets)
    ref = naive_score_cam(model, "features.pool", x, targets, subtract)
    assert ref.abs().max() > 0
    # p(masked) - p(baseline) cancels (an untrained model is near-uniform): float32 error
    # grows to ~7e-6 of the map's scale there, so that case gets 5e-5
    close(res.layer_maps, ref, 5e-5 if subtract else 1e-5)
    assert res.weights.shape == (N, 6)


def test_gradcampp_weights_and_hirescam_equals_gradcam_on_a_1x1_layer():
    """HiResCAM = Grad-CAM (up to the 1/hw of the mean) when the layer is 1x1."""
    torch.manual_seed(3)
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 5, 12), relu=nn.ReLU(), flat=nn.Flatten(),
                                      fc=nn.Linear(5, 4))).eval()
    x = imgs()
    hi = HiResCAM(model, "conv")(x)
    gc = GradCAM(model, "conv")(x)
    close(hi.layer_maps, gc.layer_maps)
    pp = GradCAMPlusPlus(model, "conv")(x)
    assert pp.weights.shape == (N, 5) and torch.isfinite(pp.weights).all()


# --- multi-head, targets, batching -------------------------------------------------------------

@pytest.fixture(scope="module")
def multi():
    torch.manual_seed(4)
    m = MultiHead(channels=(6, 8, 8), head_hidden=(16,))
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.bias.uniform_(0.0, 0.3)
    return m.eval()


@pytest.mark.parametrize("name", list(ALL_CAMS))
def test_multihead_per_head_equals_single_head_wrapper(multi, name):
    x = imgs(3, 28)
    layer = multi.features.conv2
    targets = {"angle": torch.tensor([3, 0, 11]), "colour": 1}
    res = ALL_CAMS[name](multi, layer)(x, targets)
    assert set(res) == {"length", "width", "angle", "colour"}
    assert torch.equal(res["colour"].targets, torch.ones(3, dtype=torch.long))
    assert res["length"].binary and not res["angle"].binary
    for head, r in res.items():
        single = ALL_CAMS[name](OneHead(multi, head), layer)(x, targets.get(head))
        assert single.head == "class" and r.head == head
        assert torch.equal(single.targets, r.targets)
        close(r.layer_maps, single.layer_maps, 1e-5)
        close(r.maps, single.maps, 1e-5)
        close(r.probs, single.probs, 1e-6)


def test_heads_selection_and_unknown_head(multi):
    res = LayerCAM(multi, "features.conv3", heads=["angle"])(imgs(2, 28))
    assert list(res) == ["angle"]
    with pytest.raises(ValueError, match="valid heads"):
        HiResCAM(multi, "features.conv3", heads=["size"])
    with pytest.raises(ValueError, match="out of range"):
        ScoreCAM(multi, "features.conv3")(imgs(2, 28), {"angle": 12})


@pytest.mark.parametrize("name", list(ALL_CAMS))
def test_per_image_targets_and_batching(name):
    model = tiny()
    x = imgs(5)
    targets = torch.tensor([4, 0, 2, 2, 1])
    full = ALL_CAMS[name](model, "features.conv2")(x, targets)
    chunked = ALL_CAMS[name](model, "features.conv2", batch_size=2)(x, targets.tolist())
    close(chunked.maps, full.maps, 1e-6)
    for i in range(len(x)):
        one = ALL_CAMS[name](model, "features.conv2")(x[i], int(targets[i]))
        close(one.maps[0], full.maps[i], 1e-5)
    default = ALL_CAMS[name](model, "features.conv2")(x)
    assert torch.equal(default.targets, model(x).argmax(1))
    assert torch.allclose(default.probs, torch.softmax(model(x), 1).max(1).values, atol=1e-6)


# --- zeros, hooks, modes, grads ---------------------------------------------------------------

@pytest.mark.parametrize("name", list(ALL_CAMS))
def test_all_zero_maps_are_zeros_with_a_note_not_nan(name):
    model = tiny()
    with torch.no_grad():
        model.features.conv2.bias.fill_(-100.0)  # relu2 is zero everywhere
    res = ALL_CAMS[name](model, "features.relu2")(imgs())
    check_all_zero(res, (res.maps, res.maps_normalized, res.layer_maps), N)


@pytest.mark.parametrize("name", list(ALL_CAMS))
def test_hooks_modes_grads_and_inference_mode(name):
    check_hooks_modes_grads(lambda m: ALL_CAMS[name](m, "features.conv2"), tiny(), imgs(), "maps", close)


def test_closed_method_refuses_and_hooks_removed_after_errors():
    model = tiny()
    with HiResCAM(model, "features.conv2") as cam:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        cam(imgs())
    check_hooks_removed_after_error([lambda m, cls=cls: cls(m, "features.conv2") for cls in ALL_CAMS.values()],
                                    imgs())
    with pytest.raises(ValueError, match="needs a target layer"):
        LayerCAM(model, None)


@pytest.mark.parametrize("name", list(ALL_CAMS))
def test_inplace_relu_gives_the_same_maps(name):
    x = imgs()
    plain = ALL_CAMS[name](tiny(), "features.conv2")(x)
    inplace = ALL_CAMS[name](tiny(inplace=True), "features.conv2")(x)
    close(inplace.maps, plain.maps, 1e-6)


def test_attribution_notes_name_the_method_and_reason():
    maps = torch.zeros(3, 4, 4)
    maps[2] = 0.5  # constant, not zero
    res = AttributionResult(maps=maps, maps_normalized=maps, layer_maps=maps, targets=torch.tensor([1, 2, 3]),
                            scores=torch.zeros(3), probs=torch.zeros(3), weights=None,
                            all_zero=torch.tensor([True, True, False]), zero_grad=torch.tensor([True, False, False]),
                            layer="input", head="angle", method="saliency", zero_reason="no evidence")
    assert res.notes() == [
        "head angle, saliency: image 0 (target 1): the gradient of the target score w.r.t. the input is zero "
        "everywhere, map is all zeros",
        "head angle, saliency: image 1 (target 2): no evidence, map is all zeros",
        "head angle, saliency: image 2 (target 3): map is constant, normalized to all ones"]


# --- the shared fast paths ------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ALL_CAMS))
def test_every_cam_gets_the_fast_paths_and_the_same_maps_without_them(multi, name):
    """channels_last below the layer and unrequested heads skipped, for every CAM (they live in
    the base class), with the maps of the plain path."""
    seen = {"cl": [], "length_rows": []}
    h1 = multi.features.conv1.register_forward_pre_hook(
        lambda m, args: seen["cl"].append(args[0].is_contiguous(memory_format=torch.channels_last)))
    h2 = multi.heads["length"].register_forward_hook(lambda m, args, out: seen["length_rows"].append(len(args[0])))
    x = imgs(3, 28)
    try:
        fast = ALL_CAMS[name](multi, "features.conv3", heads=["angle"])(x)
    finally:
        h1.remove()
        h2.remove()
    assert seen["cl"] and all(seen["cl"]), "channels_last input below the layer"
    assert seen["length_rows"] and not any(seen["length_rows"]), "the unrequested head gets an empty batch"
    plain = ALL_CAMS[name](multi, "features.conv3", heads=["angle"], channels_last=False, skip_unused_heads=False)(x)
    close(fast["angle"].maps, plain["angle"].maps, 1e-5)
