"""Grad-CAM (pipeline.attribution.gradcam): equal to Captum's LayerGradCam, per-image targets, multi-head, hooks, grad modes."""
from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from captum.attr import LayerAttribution, LayerGradCam  # test-only dependency
from pipeline.models.cnn_basic import CNNBasic
from pipeline.models.cnn_deep import CNNDeep
from pipeline.models.multihead import MultiHead
from pipeline.attribution.gradcam import GradCAM
from pipeline.attribution.result import AttributionResult, normalize_maps
from pipeline.visualization.layers import UnknownLayerError
from tests.visualization import helpers
from tests.visualization.helpers import no_hooks, rand_images

N = 6

# one intra-op thread: on a busy shared CPU, OpenMP waits make many small ops crawl
pytestmark = pytest.mark.usefixtures("one_thread")

# random init, non-trivial batch-norm statistics and affine parameters, eval mode
prepared = functools.partial(helpers.prepared, batch=16, passes=3, bn_weight=(0.5, 1.5), bn_bias=(-0.2, 0.2))


def images(in_ch, n=N, seed=1):
    return rand_images(n, in_ch, 28, seed)


def captum_maps(model, layer_name, x, targets, head=None):
    layer = dict(model.named_modules())[layer_name]
    if head is None:
        fwd = model
    elif model.head_classes[head] == 2 and model(x[:1])[head].shape[1] == 1:
        def fwd(inp):
            logit = model(inp)[head]
            return torch.cat([-logit, logit], 1)  # Captum target 0/1 -> -logit/+logit
    else:
        def fwd(inp):
            return model(inp)[head]
    attr = LayerGradCam(fwd, layer).attribute(x, target=targets, relu_attributions=True)
    return LayerAttribution.interpolate(attr, (28, 28), "bilinear")[:, 0].detach()


@pytest.fixture(scope="module")
def basic():
    return prepared(lambda: CNNBasic(in_channels=1, num_classes=10), 1, seed=0)


@pytest.fixture(scope="module")
def deep():
    return prepared(lambda: CNNDeep(in_channels=1, num_classes=10), 1, seed=1)


@pytest.fixture(scope="module")
def multi():
    return prepared(lambda: MultiHead(), 3, seed=2)


# --- equality with Captum -------------------------------------------------------------------

@pytest.mark.parametrize("model_name,layer", [("basic", "features.conv1"), ("deep", "features.conv2"),
                                              ("deep", "features.conv4")])
def test_matches_captum_per_image_targets(model_name, layer, request):
    model = request.getfixturevalue(model_name)
    x = images(1)
    targets = torch.tensor([0, 3, 9, 1, 7, 5])  # a different class per image
    res = GradCAM(model, layer, placement="stretch")(x, targets)   # Captum stretches the map over the image
    assert isinstance(res, AttributionResult) and res.method == "gradcam"
    ref = captum_maps(model, layer, x, targets)
    assert res.maps.shape == (N, 28, 28) and res.maps.dtype == torch.float32
    assert ref.abs().max() > 0
    torch.testing.assert_close(res.maps, ref, rtol=0, atol=1e-5)
    assert torch.equal(res.targets, targets)
    placed = GradCAM(model, layer)(x, targets)   # the default: each cell at its receptive field's centre
    if model_name == "deep":   # padded 3x3 convs and 2x2 pools: the stretch is already right, bit for bit
        assert torch.equal(placed.maps, res.maps)
    else:   # cnn_basic's unpadded 7x7 conv: cell j is centred at pixel j + 3; the border pixels repeat the edge
        raw = LayerGradCam(model, dict(model.named_modules())[layer]).attribute(x, target=targets,
                                                                                relu_attributions=True)
        ref = torch.nn.functional.pad(raw.detach(), (3, 3, 3, 3), mode="replicate")[:, 0]
        torch.testing.assert_close(placed.maps, ref, rtol=0, atol=1e-5)
        assert not torch.allclose(placed.maps, res.maps, atol=1e-4)


@pytest.mark.parametrize("opts", [{}, {"channels_last": False, "skip_unused_heads": False}])
def test_multihead_matches_captum_per_head(multi, opts):
    x = images(3)
    targets = {"length": torch.tensor([0, 1, 0, 1, 1, 0]), "width": torch.tensor([1, 0, 1, 0, 0, 1]),
               "angle": torch.tensor([0, 11, 4, 7, 2, 9]), "colour": torch.tensor([1, 1, 0, 0, 1, 0])}
    res = GradCAM(multi, "features.conv3", **opts)(x, targets)
    assert list(res) == ["length", "width", "angle", "colour"]
    for head, t in targets.items():
        ref = captum_maps(multi, "features.conv3", x, t, head)
        assert ref.abs().max() > 0
        torch.testing.assert_close(res[head].maps, ref, rtol=0, atol=1e-5, msg=head)
        assert torch.equal(res[head].targets, t)
        assert res[head].layer_maps.shape == (N, 14, 14)
    # one requested head (the unrequested ones are skipped) gives the same map
    one = GradCAM(multi, "features.conv3", heads=["angle"], **opts)(x, targets["angle"])
    assert list(one) == ["angle"]
    torch.testing.assert_close(one["angle"].maps, res["angle"].maps, rtol=0, atol=1e-6)


def test_multihead_at_a_layer_inside_one_head_of_a_deeper_conv(multi):
    x = images(3)
    res = GradCAM(multi, multi.features.conv2, heads=["width"])(x, 1)
    torch.testing.assert_close(res["width"].maps, captum_maps(multi, "features.conv2", x, 1, "width"),
                               rtol=0, atol=1e-5)


# --- targets, scores, probabilities ---------------------------------------------------------

def test_default_targets_are_argmax_and_probs_softmax(deep):
    x = images(1)
    res = GradCAM(deep, "features.conv4")(x)
    with torch.no_grad():
        logits = deep(x)
    assert torch.equal(res.targets, logits.argmax(1))
    torch.testing.assert_close(res.scores, logits.gather(1, res.targets[:, None])[:, 0])
    torch.testing.assert_close(res.probs, logits.softmax(1).gather(1, res.targets[:, None])[:, 0])
    torch.testing.assert_close(res.maps, captum_maps(deep, "features.conv4", x, res.targets), rtol=0, atol=1e-5)


def test_multihead_default_targets_and_sigmoid_probs(multi):
    x = images(3)
    res = GradCAM(multi, "features.conv3")(x)
    with torch.no_grad():
        out = multi(x)
    for head in ("length", "width", "colour"):
        logit = out[head][:, 0]
        t = (logit > 0).long()
        assert torch.equal(res[head].targets, t)
        torch.testing.assert_close(res[head].scores, torch.where(t == 1, logit, -logit))
        p1 = torch.sigmoid(logit)
        torch.testing.assert_close(res[head].probs, torch.where(t == 1, p1, 1 - p1))
        assert (res[head].probs >= 0.5).all()
    assert torch.equal(res["angle"].targets, out["angle"].argmax(1))
    torch.testing.assert_close(res["angle"].probs, out["angle"].softmax(1).max(1).values)
    # explicit class 0 for a binary head: score -logit, probability 1 - sigmoid
    r0 = GradCAM(multi, "features.conv3", heads=["colour"])(x, {"colour": 0})
    torch.testing.assert_close(r0["colour"].scores, -out["colour"][:, 0])
    torch.testing.assert_close(r0["colour"].probs, 1 - torch.sigmoid(out["colour"][:, 0]))


def test_int_and_dict_targets(multi, basic):
    x = images(1)
    r = GradCAM(basic, "features.conv1")(x, 4)
    assert torch.equal(r.targets, torch.full((N,), 4))
    xm = images(3)
    r = GradCAM(multi, "features.conv3")(xm, {"angle": 3})
    assert torch.equal(r["angle"].targets, torch.full((N,), 3))
    with torch.no_grad():
        assert torch.equal(r["length"].targets, (multi(xm)["length"][:, 0] > 0).long())  # missing -> predicted


def test_bad_heads_and_targets_raise_value_error(multi, basic):
    x = images(3)
    with pytest.raises(ValueError, match="angle"):
        GradCAM(multi, "features.conv3", heads=["size"])
    cam = GradCAM(multi, "features.conv3")
    with pytest.raises(ValueError, match="0..11"):
        cam(x, {"angle": 12})
    with pytest.raises(ValueError, match="0..1"):
        cam(x, 5)  # fine for angle, out of range for the binary heads
    with pytest.raises(ValueError, match="nope"):
        cam(x, {"nope": 1})
    with pytest.raises(ValueError, match="targets for 6 images"):
        cam(x, {"angle": [1, 2, 3]})
    cb = GradCAM(basic, "features.conv1")
    xb = images(1)
    for bad in (10, -1, [0, 1, 2, 3, 4, 10]):
        with pytest.raises(ValueError, match="0..9"):
            cb(xb, bad)
    with pytest.raises(ValueError, match="spatial"):
        GradCAM(basic, "classifier.fc1")(xb)
    with pytest.raises(ValueError, match="class"):
        GradCAM(basic, "features.conv1", heads=["angle"])


def test_unknown_layer_lists_valid_names(basic):
    with pytest.raises(UnknownLayerError) as info:
        GradCAM(basic, "features.conv2")
    assert "features.conv1" in str(info.value) and "classifier.out" in str(info.value)


# --- in-place ReLU, all-zero maps -----------------------------------------------------------

class Small(nn.Module):
    def __init__(self, inplace: bool):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=inplace),
                                      nn.Conv2d(4, 6, 3), nn.ReLU(inplace=inplace))
        self.classifier = nn.Linear(6 * 24 * 24, 5)
        self.head_classes = {"class": 5}

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


@pytest.mark.parametrize("layer", ["features.0", "features.2"])
def test_inplace_relu_after_layer_gives_same_maps(layer):
    torch.manual_seed(0)
    plain = Small(False).eval()
    inplace = Small(True).eval()
    inplace.load_state_dict(plain.state_dict())
    x = images(1)
    t = torch.tensor([0, 1, 2, 3, 4, 0])
    a = GradCAM(plain, layer)(x, t)
    b = GradCAM(inplace, layer)(x, t)
    assert a.maps.abs().max() > 0
    torch.testing.assert_close(b.maps, a.maps, rtol=0, atol=1e-6)
    torch.testing.assert_close(b.scores, a.scores)
    torch.testing.assert_close(GradCAM(plain, layer, placement="stretch")(x, t).maps, captum_maps(plain, layer, x, t),
                               rtol=0, atol=1e-5)


def test_all_zero_map_gives_zeros_a_note_and_no_nan():
    class Neg(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.relu = nn.ReLU()
            self.fc = nn.Linear(2 * 26 * 26, 3)
            with torch.no_grad():
                self.conv.weight.fill_(0.1)
                self.conv.bias.fill_(0.1)      # activations > 0 everywhere on positive images
                self.fc.weight.zero_()
                self.fc.weight[0] = -0.01      # class 0: every gradient negative
                self.fc.weight[1] = 0.01       # class 1: every gradient positive
                self.fc.bias.zero_()           # class 2: zero gradient
            self.head_classes = {"class": 3}

        def forward(self, x):
            return self.fc(self.relu(self.conv(x)).flatten(1))

    x = images(1, n=3) + 0.1
    res = GradCAM(Neg().eval(), "conv")(x, [0, 1, 2])
    assert res.all_zero.tolist() == [True, False, True]
    assert res.zero_grad.tolist() == [False, False, True]
    for t in (res.maps, res.maps_normalized, res.layer_maps):
        assert not torch.isnan(t).any()
    assert torch.equal(res.maps_normalized[0], torch.zeros(28, 28))
    assert torch.equal(res.maps[0], torch.zeros(28, 28))
    assert res.maps_normalized[1].max() == 1.0 and res.maps_normalized[1].min() == 0.0
    notes = res.notes()
    assert len(notes) == 2
    assert "image 0" in notes[0] and "non-positive" in notes[0] and "all zeros" in notes[0]
    assert "image 2" in notes[1] and "zero everywhere" in notes[1]


def test_normalize_maps_never_nan():
    maps = torch.stack([torch.zeros(4, 4), torch.full((4, 4), 2.0), torch.arange(16.0).view(4, 4)])
    out = normalize_maps(maps)
    assert not torch.isnan(out).any()
    assert torch.equal(out[0], torch.zeros(4, 4))
    assert torch.equal(out[1], torch.ones(4, 4))
    torch.testing.assert_close(out[2], torch.arange(16.0).view(4, 4) / 15)


# --- hooks, memory, modes -------------------------------------------------------------------

def test_context_manager_removes_hooks_and_repeated_calls_do_not_grow_them(multi):
    x = images(3)
    with GradCAM(multi, "features.conv3", heads=["angle"]) as cam:
        first = cam(x)
        for _ in range(3):
            cam(x)
            assert no_hooks(multi)
    assert no_hooks(multi)
    assert not any(isinstance(v, torch.Tensor) for v in vars(cam).values())  # nothing kept between calls
    assert first["angle"].maps.grad_fn is None and not first["angle"].maps.requires_grad
    with pytest.raises(RuntimeError, match="closed"):
        cam(x)


def test_hooks_removed_after_an_error(basic):
    with pytest.raises(ValueError):
        GradCAM(basic, "classifier.fc1")(images(1))
    assert no_hooks(basic)
    assert torch.is_grad_enabled()


def test_no_graph_below_the_layer_no_param_grads_and_modes_restored(deep):
    seen = {}
    h1 = deep.features.conv1.register_forward_hook(
        lambda m, i, o: seen.update(below=o.requires_grad, grad_below=torch.is_grad_enabled()))
    h2 = deep.features.bn3.register_forward_hook(lambda m, i, o: seen.update(after=i[0].requires_grad))
    try:
        GradCAM(deep, "features.conv3")(images(1), 2)
    finally:
        h1.remove()
        h2.remove()
    assert seen == {"below": False, "grad_below": False, "after": True}
    assert all(p.grad is None for p in deep.parameters())
    assert not deep.training and torch.is_grad_enabled()
    with torch.no_grad():
        GradCAM(deep, "features.conv3")(images(1))
        assert not torch.is_grad_enabled()


def test_train_mode_is_left_unchanged():
    m = prepared(lambda: CNNBasic(), 1)
    m.train()
    res = GradCAM(m, "features.conv1")(images(1))
    assert m.training and all(mod.training for mod in m.modules())
    assert res.maps.shape == (N, 28, 28)
    m.eval()
    GradCAM(m, "features.conv1")(images(1))
    assert not any(mod.training for mod in m.modules())


def test_batched_chunks_equal_one_batch(deep):
    x = images(1, n=10)
    t = torch.arange(10) % 10
    a = GradCAM(deep, "features.conv2", batch_size=4)(x, t)
    b = GradCAM(deep, "features.conv2")(x, t)
    torch.testing.assert_close(a.maps, b.maps, rtol=0, atol=1e-6)
    assert torch.equal(a.targets, b.targets)


def test_works_inside_inference_mode(multi):
    x = images(3)
    ref = GradCAM(multi, "features.conv3")(x)
    with torch.inference_mode():
        xi = x.clone()
        assert xi.is_inference()
        res = GradCAM(multi, "features.conv3")(xi)
        ti = torch.tensor([3, 1, 4, 1, 5, 9])
        res_t = GradCAM(multi, "features.conv3", heads=["angle"])(xi, {"angle": ti})
        assert torch.is_inference_mode_enabled()
    for head in ref:
        torch.testing.assert_close(res[head].maps, ref[head].maps, rtol=0, atol=1e-6)
    # not a comparison of blanks: a random network's top class may argue against itself on one head
    assert sum(bool(res[head].maps.abs().max() > 0) for head in ref) >= 3
    ref_t = GradCAM(multi, "features.conv3", heads=["angle"])(x, {"angle": torch.tensor([3, 1, 4, 1, 5, 9])})
    torch.testing.assert_close(res_t["angle"].maps, ref_t["angle"].maps, rtol=0, atol=1e-6)


def test_channels_last_fallback_for_a_model_that_views_its_input():
    class Viewer(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4 * 26 * 26, 3)

        def forward(self, x):
            x = x.view(len(x), -1).view(len(x), 3, 28, 28)  # rejects a channels_last input
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    torch.manual_seed(0)
    m = Viewer().eval()
    x = images(3)
    a = GradCAM(m, "conv")(x, [0, 1, 2, 0, 1, 2])
    b = GradCAM(m, "conv", channels_last=False)(x, [0, 1, 2, 0, 1, 2])
    torch.testing.assert_close(a.maps, b.maps)
    c = GradCAM(m, "conv", placement="stretch")(x, [0, 1, 2, 0, 1, 2])   # Captum stretches the 26x26 map
    torch.testing.assert_close(c.maps, captum_maps(m, "conv", x, torch.tensor([0, 1, 2, 0, 1, 2])), rtol=0, atol=1e-5)


def test_inside_a_lightning_predict_loop():
    pl = pytest.importorskip("pytorch_lightning")
    from torch.utils.data import DataLoader, TensorDataset

    class Module(pl.LightningModule):
        def __init__(self, net):
            super().__init__()
            self.net = net
            self.was_inference = None

        def forward(self, x):
            return self.net(x)

        def predict_step(self, batch, batch_idx):
            self.was_inference = torch.is_inference_mode_enabled()
            with GradCAM(self.net, "features.conv3") as cam:
                return cam(batch[0], {"angle": 5})

    net = prepared(lambda: MultiHead(), 3, seed=3)
    x = images(3, n=4)
    lm = Module(net)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_predict_batches=1)
    out = trainer.predict(lm, DataLoader(TensorDataset(x), batch_size=4))
    assert lm.was_inference is True
    res = out[0]
    net.eval()
    ref = GradCAM(net, "features.conv3")(x, {"angle": 5})
    for head in ref:
        assert torch.isfinite(res[head].maps).all()
        torch.testing.assert_close(res[head].maps, ref[head].maps, rtol=0, atol=1e-6)
    assert res["angle"].maps.abs().max() > 0
    assert no_hooks(net)


def test_models_without_head_classes_are_checked_against_their_outputs():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 26 * 26, 4)).eval()
    x = images(1)
    res = GradCAM(plain, "0", placement="stretch")(x, [0, 1, 2, 3, 0, 1])
    torch.testing.assert_close(res.maps, captum_maps(plain, "0", x, torch.tensor([0, 1, 2, 3, 0, 1])),
                               rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="0..3"):
        GradCAM(plain, "0")(x, 4)

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3)
            self.a = nn.Linear(3 * 26 * 26, 5)
            self.b = nn.Linear(3 * 26 * 26, 1)

        def forward(self, x):
            f = torch.relu(self.conv(x)).flatten(1)
            return {"a": self.a(f), "b": self.b(f)}

    two = Two().eval()
    out = GradCAM(two, "conv")(x)
    assert list(out) == ["a", "b"] and out["b"].binary
    with pytest.raises(ValueError, match="0..1"):
        GradCAM(two, "conv")(x, {"b": 2})
    with pytest.raises(ValueError, match="valid heads"):
        GradCAM(two, "conv", heads=["c"])(x)
    assert no_hooks(two)


def test_flattened_7x7_multihead_variant_matches_captum():
    """The 7x7 multihead layout with the map flattened into the heads
    (model.net.channels=[16,32,64] pool_after=[1,2] global_pool=false)."""
    model = prepared(lambda: MultiHead(channels=(16, 32, 64), pool_after=(1, 2), global_pool=False), 3, seed=4)
    x = images(3)
    targets = {"angle": torch.tensor([0, 11, 4, 7, 2, 9]), "width": torch.tensor([1, 0, 1, 0, 0, 1])}
    res = GradCAM(model, "features.conv3")(x, targets)
    for head, t in targets.items():
        torch.testing.assert_close(res[head].maps, captum_maps(model, "features.conv3", x, t, head),
                                   rtol=0, atol=1e-5, msg=head)
        assert res[head].layer_maps.shape == (N, 7, 7)


def test_normalize_maps_and_all_zero_against_their_definitions():
    """normalize_maps == per-row (m - min) / (max - min) (flat rows: 0 stays 0, constant -> 1);
    _all_zero == no pixel > 0, NaN rows included."""
    from pipeline.attribution.result import _all_zero, normalize_maps

    g = torch.Generator().manual_seed(0)
    m = torch.relu(torch.randn(8, 5, 5, generator=g))
    m[1] = 0
    m[2] = 2.5
    m[3, 0, 0] = float("nan")          # one NaN among positives: not all zero
    m[4] = float("nan")                # all NaN: all zero (no pixel > 0)
    m[5] = 0
    m[5, 1, 1] = float("nan")          # NaN among zeros: all zero
    want_zero = torch.tensor([not bool((r > 0).any()) for r in m])
    assert torch.equal(_all_zero(m), want_zero)
    assert want_zero.tolist() == [False, True, False, False, True, True, False, False]
    ok = [0, 6, 7]
    n = normalize_maps(m)
    for i in ok:
        r = m[i]
        assert torch.equal(n[i], ((r - r.min()) / (r.max() - r.min())).clamp(0, 1))
    assert torch.equal(n[1], torch.zeros(5, 5)) and torch.equal(n[2], torch.ones(5, 5))
    assert not torch.isnan(n).any()
