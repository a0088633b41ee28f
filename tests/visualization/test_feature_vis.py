"""Feature visualization (issue 10): objectives, Fourier parametrization, transforms, job checks,
HDF5 and figures -- with exact oracles where there is one."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.errors import CnnvisError
from pipeline.models.multihead import MultiHead
from pipeline.visualization.feature_param import Parametrization, fft_params_from_image, fft_to_image
from pipeline.visualization.feature_transforms import apply_transforms, check_transforms, draw_transforms
from pipeline.visualization.feature_vis import FeatureVisualizer, head_layers
from tests.visualization import helpers

pytestmark = pytest.mark.usefixtures("one_thread")


class Linear(nn.Module):
    """One 8x8 convolution over an 8x8 image (one output position) and a 3-class head on top."""

    def __init__(self, c=1):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(c, 4, 8)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        return self.head(self.conv(x))


@pytest.fixture(scope="module")
def multi():
    return helpers.prepared(lambda: MultiHead(channels=(4, 6, 8)), 3, seed=0)


@pytest.mark.parametrize("objective", ["channel", "neuron"])
def test_linear_conv_optimum_is_the_kernel_sign(objective):
    """For a linear unit sum(k * x) + b the best image in [0, 1] is 1 where k > 0 and 0 where k < 0."""
    net = Linear().eval()
    res = FeatureVisualizer(net, "conv", (1, 8, 8))(objective=objective, param="pixel", transforms=[], steps=60, lr=0.1)
    want = (net.conv.weight.detach() > 0).float()
    assert torch.equal(res.patterns, want)
    assert torch.allclose(res.scores, (net.conv.weight.clamp_min(0).flatten(1).sum(1) + net.conv.bias).detach(), atol=1e-5)
    assert res.patterns.shape == (4, 1, 8, 8) and torch.equal(res.targets, torch.arange(4))


def test_class_objective_reaches_the_linear_optimum():
    """Class logit of a linear network: the optimum is the sign of the class's effective kernel."""
    net = Linear().eval()
    res = FeatureVisualizer(net, "head", (1, 8, 8))(objective="class", param="pixel", transforms=[], steps=60, lr=0.1)
    eff = torch.einsum("kc,chw->khw", net.head[1].weight, net.conv.weight[:, 0]).detach()
    assert torch.equal(res.patterns[:, 0], (eff > 0).float())
    assert res.probs is not None and res.probs.shape == (3,)


@pytest.mark.parametrize("c", [1, 3])
def test_fft_parametrization_inverse(c):
    x = torch.rand(2, c, 12, 10, dtype=torch.float64) * 0.98 + 0.01
    back = fft_to_image(fft_params_from_image(x), 12, 10)
    assert torch.allclose(back, x, atol=1e-9)
    par = Parametrization("fft", 3, (c, 12, 10), seed=1, dtype=torch.float64)
    img = par.image().detach()
    assert img.shape == (3, c, 12, 10) and float(img.min()) > 0 and float(img.max()) < 1
    if c == 3:  # only the data's colour channels: the others are exactly 0, for either parametrization
        for kind in ("fft", "pixel"):
            img = Parametrization(kind, 2, (3, 6, 6), seed=1, channels=[0, 2]).image().detach()
            assert float(img[:, 1].abs().max()) == 0.0 and float(img[:, [0, 2]].min()) > 0


def test_transforms_geometry():
    x = torch.zeros(1, 1, 15, 15, dtype=torch.float64)
    x[0, 0, 7, 11] = 1.0  # 4 px right of the centre (7, 7)

    def peak(t):
        y = apply_transforms(x, torch.tensor([t], dtype=torch.float64))[0, 0]
        return divmod(int(y.argmax()), 15), float(y.max())

    assert peak([2, -3, 1, 0]) == ((9, 8), pytest.approx(1.0))        # shifted down 2, left 3
    assert peak([0, 0, 1, 90])[0] == (3, 7)                             # 90 deg counter-clockwise: above the centre
    assert peak([0, 0, 1, 90])[1] == pytest.approx(1.0, abs=1e-9)
    assert peak([0, 0, 1, 180])[0] == (7, 3)
    x2 = torch.zeros_like(x)
    x2[0, 0, 7, 9] = 1.0  # 2 px right of the centre
    y = apply_transforms(x2, torch.tensor([[0, 0, 2.0, 0]], dtype=torch.float64))[0, 0]
    assert divmod(int(y.argmax()), 15) == (7, 11) and float(y.max()) == pytest.approx(1.0)  # zoom x2: 2 px -> 4 px
    d = draw_transforms(5, 3, ["jitter"], jitter=2, seed=0)
    assert d.shape == (5, 3, 4) and float(d[..., :2].abs().max()) <= 2 and torch.all(d[..., 2] == 1)
    assert torch.all(d[..., 3] == 0)
    with pytest.raises(ValueError, match="unknown transform shear"):
        check_transforms(["jitter", "shear"])


def test_batched_equals_one_at_a_time(multi):
    net = multi.double()
    vis = FeatureVisualizer(net, "features.conv2", (3, 28, 28))
    kw = dict(objective="channel", param="fft", transforms=["jitter", "scale", "rotate"], steps=4, lr=0.05, l1=0.1,
              lhalf=0.1, centre=2.0,
              tv=0.1, blur=0.1)
    a, b = vis([0, 3, 5], **kw), vis.one_at_a_time([0, 3, 5], **kw)
    assert torch.allclose(a.patterns, b.patterns, atol=1e-9) and torch.allclose(a.scores, b.scores, atol=1e-9)
    assert float(a.patterns.min()) >= 0 and float(a.patterns.max()) <= 1
    assert (a.scores > a.start_scores).all()
    net.float()


def test_heads_and_class_errors(multi):
    heads = head_layers(multi, (3, 28, 28))
    assert heads["heads.angle"] == 12 and heads["heads.colour"] == 2 and heads["heads.angle.out"] == 12
    assert "features.conv3" not in heads
    with pytest.raises(ValueError, match="needs a head layer"):
        FeatureVisualizer(multi, "features.conv3", (3, 28, 28))(objective="class", steps=1)
    with pytest.raises(ValueError, match="channels"):
        FeatureVisualizer(multi, "features.conv1", (3, 28, 28))(channels=[3], steps=1)
    with pytest.raises(ValueError, match="class 12 is out of range"):
        FeatureVisualizer(multi, "heads.angle", (3, 28, 28))([12], objective="class", steps=1)
    res = FeatureVisualizer(multi, "heads.colour", (3, 28, 28))(objective="class", steps=3, copies=2, diversity=1.0)
    assert res.targets.tolist() == [0, 0, 1, 1] and res.probs.shape == (4,)
    # binary head: class 0 is the negative logit
    with torch.no_grad():
        logit = multi(res.patterns)["colour"][:, 0]
    assert torch.allclose(res.scores, torch.where(res.targets == 1, logit, -logit), atol=1e-5)


def _ctx(net):
    return SimpleNamespace(net=net, input_shape=(3, 28, 28), head_classes={"length": 2, "width": 2, "angle": 12,
                           "colour": 2}, class_names=[str(i) for i in range(96)])


@pytest.mark.parametrize("layers, kw, msg", [
    (["features.conv3"], {"objective": "class"}, "needs a head layer"),
    (["heads.angle"], {"objective": "class", "classes": [13]}, "class 13 is out of range"),
    (None, {"transforms": ["jitter", "twist"]}, "unknown transform twist"),
    (None, {"objective": "pixels"}, "objective=pixels is unknown"),
    (["heads.angle"], {}, "not a convolution layer"),
])
def test_job_rejects_bad_input_before_work(multi, layers, kw, msg):
    from pipeline.jobs.filters import FiltersJob

    with pytest.raises(CnnvisError, match=msg):
        FiltersJob(_ctx(multi), layers, 0, **kw)


def test_job_store_render(multi, tmp_path):
    from pipeline.jobs.filters import FiltersJob
    from pipeline.storage.h5_reader import H5Run
    from pipeline.storage.h5_writer import H5RunWriter

    job = FiltersJob(_ctx(multi), None, 0, steps=2, top=6, max_filters=None)
    result = job.compute(None, 8)
    assert [(r.layer, r.objective) for r in result["patterns"]][:3] == [  # conv1 reads the image: closed form
        ("features.conv1", "neuron"), ("features.conv2", "channel"), ("features.conv3", "channel")]
    assert result["patterns"][0].settings["param"] == "kernel" and result["patterns"][1].settings["param"] == "pixel"
    with H5RunWriter(tmp_path / "v.h5", attrs={"dataset": "lines"}) as w:
        job.store(result, w, tmp_path)
    run = H5Run(tmp_path / "v.h5")
    f = run.filters("heads.angle", "class")
    assert f["patterns"].shape == (12, 3, 28, 28) and f["targets"].tolist() == list(range(12))
    assert f["attrs"]["param"] == "pixel" and f["probs"].shape == (12,)
    assert run.filter_objectives("features.conv1") == ["neuron"]
    np.testing.assert_array_equal(run.kernels("features.conv1"), multi.features.conv1.weight.detach().numpy())
    figs = job.render(result, tmp_path / "fig")
    names = sorted(p.name for p in (tmp_path / "fig" / "filters").iterdir())
    assert "features.conv1_neuron_all.png" in names and "features.conv1_neuron_top6.png" not in names  # 4 <= 6
    assert "features.conv3_channel_top6.png" in names and "features.conv1_kernels.png" in names
    assert "heads.angle_class_top6.png" in names
    section = job.section(result, figs)
    assert any("class pictures" in o for o in section.observations)


def test_dataset_prior_fills_what_is_not_given(multi):
    from pipeline.jobs.filters import FiltersJob, data_prior

    priors = {"lines": {"class": {"lhalf": 20.0, "centre": 100.0, "channels": [0, 2]}, "unit": {"channels": [0, 2]}},
              "default": {"class": {"lhalf": 10.0, "centre": 3.0}}}
    assert data_prior("lines", "class", None, None, None, priors) == (20.0, 100.0, [0, 2])
    assert data_prior("lines", "channel", None, None, None, priors) == (0.0, 0.0, [0, 2])
    assert data_prior("mnist", "class", None, None, None, priors) == (10.0, 3.0, None)
    assert data_prior("mnist", "neuron", None, None, None, priors) == (0.0, 0.0, None)
    assert data_prior("lines", "class", 1.0, None, [1], priors) == (1.0, 100.0, [1])  # a given value wins
    assert data_prior("lines", "class", None, None, None, None) == (0.0, 0.0, None)
    ctx = _ctx(multi)
    ctx.dataset_name = "lines"
    job = FiltersJob(ctx, ["heads.colour"], 0, objective="class", steps=1, priors=priors)
    assert job.settings_for("class")["centre"] == 100.0 and job.settings_for("channel")["centre"] == 0.0
    res = job.compute(None, 8)["patterns"][0]
    assert (res.settings["lhalf"], res.settings["centre"], res.settings["channels"]) == (20.0, 100.0, [0, 2])
    assert float(res.patterns[:, 1].abs().max()) == 0.0 and float(res.patterns[:, [0, 2]].max()) > 0  # green stays 0
    res = FiltersJob(ctx, ["features.conv1"], 0, steps=1, priors=priors, first_layer="ascent").compute(None, 8)
    res = res["patterns"][0]
    assert (res.settings["lhalf"], res.settings["centre"], res.settings["channels"]) == (0.0, 0.0, [0, 2])
    assert float(res.patterns[:, 1].abs().max()) == 0.0  # green stays 0 in unit pictures too
    res = FiltersJob(ctx, ["features.conv1"], 0, priors=priors).compute(None, 8)["patterns"][0]  # grey + kernel
    assert res.settings["channels"] == [0, 2] and float(res.patterns[:, 1].abs().max()) == 0.0
    with pytest.raises(CnnvisError, match="filters.channels"):
        FiltersJob(ctx, ["features.conv1"], 0, steps=1, channels=[3])


def test_lhalf_and_centre_penalty_values():
    """L½ = w * mean sqrt(|x| + 0.01); centre weighs each pixel's L1 / L½ by 1 + c (r / half-side)^2."""
    from pipeline.visualization.feature_objectives import LHALF_EPS, centre_weights, penalties

    w = centre_weights(4, 4, 2.0, dtype=torch.float64)
    r2 = torch.tensor([1.5, 0.5, 0.5, 1.5], dtype=torch.float64) ** 2 / 4  # (offset / half-side)^2 per row/col
    torch.testing.assert_close(w, 1 + 2.0 * (r2[:, None] + r2[None, :]))
    assert torch.equal(centre_weights(4, 4, 0.0), torch.ones(4, 4))
    x = torch.rand(3, 2, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(penalties(x, lhalf=3.0), 3.0 * (x + LHALF_EPS).sqrt().flatten(1).mean(1))
    torch.testing.assert_close(penalties(x, l1=2.0, centre=2.0), 2.0 * (x * w).flatten(1).mean(1))
    torch.testing.assert_close(penalties(x, lhalf=1.0, centre=2.0), ((x + LHALF_EPS).sqrt() * w).flatten(1).mean(1))
    # L½ prefers one bright pixel to the same total spread thin (L1 cannot tell them apart)
    one, spread = torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 1 / 16)
    one[0, 0, 1, 1] = 1.0
    assert float(penalties(one, lhalf=1.0)) < float(penalties(spread, lhalf=1.0))
    torch.testing.assert_close(penalties(one, l1=1.0), penalties(spread, l1=1.0))


def test_centre_penalty_keeps_the_centre_and_clears_the_border():
    """A unit that is the plain sum of all pixels: with the centre-weighted L½ (relative weights) the
    picture keeps its centre lit and the far pixels go to the black background. A flipped sign
    or a weight map that grew towards the centre would do the opposite."""
    res = FeatureVisualizer(helpers.SumUnit(8).double(), "conv", (1, 8, 8))(objective="channel", param="pixel", transforms=[],
                                                                 steps=60, lr=0.1, noise=0.0, lhalf=4.0, centre=20.0)
    img = res.patterns[0, 0]
    assert float(img[3:5, 3:5].min()) == 1.0 and float(img[0, 0]) == 0.0 and float(img[0, 7]) == 0.0
    assert float(img.mean()) < 0.5


def test_settings_in_words_name_the_penalties_and_channels():
    from pipeline.jobs.filters import FiltersJob

    base = dict(param="pixel", transforms=["jitter"], steps=32, lr=0.05, l1=0.0, lhalf=0.0, centre=0.0, tv=0.0,
                blur=0.0, channels=None)
    assert FiltersJob.how(base) == "pixel parametrization, transforms jitter, 32 Adam steps (lr 0.05)"
    words = FiltersJob.how({**base, "lhalf": 20.0, "centre": 200.0, "channels": [0, 2]})
    assert words.endswith("; penalties x |score|: lhalf 20, centre 200; input channels [0, 2] only")
    assert FiltersJob.how({**base, "channels": [0, 2]}).endswith("(lr 0.05); input channels [0, 2] only")


def test_diversity_compares_gram_matrices_of_the_layer():
    from pipeline.visualization.feature_objectives import diversity_term

    a = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    same = torch.cat([a, a.roll(2, dims=3)])  # the same "style" shifted: Gram equal, pixels differ
    torch.testing.assert_close(diversity_term(same, 2), torch.ones(2, dtype=torch.float64))
    apart = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    apart[0, 0], apart[1, 1] = 1.0, 1.0  # different channels on: orthogonal Gram matrices
    torch.testing.assert_close(diversity_term(apart, 2), torch.zeros(2, dtype=torch.float64))
    g = torch.einsum("ncp,ndp->ncd", a.flatten(2), a.flatten(2)).flatten(1)
    b = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    h = torch.einsum("ncp,ndp->ncd", b.flatten(2), b.flatten(2)).flatten(1)
    cos = torch.nn.functional.cosine_similarity(g, h)
    torch.testing.assert_close(diversity_term(torch.cat([a, b]), 2), cos.repeat(2))
    assert torch.equal(diversity_term(torch.cat([a, b]), 1), torch.zeros(2, dtype=torch.float64))


def test_diversity_pushes_the_copies_apart(multi):
    from pipeline.visualization.feature_objectives import diversity_term

    vis = FeatureVisualizer(multi, "features.conv2", (3, 28, 28))
    kw = dict(objective="channel", param="pixel", transforms=[], steps=20, lr=0.05, noise=0.2, copies=2)
    plain, diverse = vis([1, 4], **kw), vis([1, 4], diversity=10.0, **kw)
    hook = vis._hook()
    try:
        with torch.no_grad():
            sims = [float(diversity_term(vis._to_layer(r.patterns), 2).mean()) for r in (plain, diverse)]
    finally:
        hook.remove()
    assert sims[0] > 0.99 and sims[1] < 0.5, sims  # without the term the copies converge to one style


def test_polish_raises_the_objective_and_its_mask_keeps_the_dark_pixels(multi):
    """The polish steps climb the objective alone (no transforms, no penalties) from the robust picture; with
    ``polish_mask`` only the pixels the robust phase lit (grown by one pixel) move; batched == one at a time."""
    vis = FeatureVisualizer(multi, "heads.angle", (3, 28, 28))
    base = dict(objective="class", param="pixel", steps=8, lr=0.05, lhalf=20.0, centre=200.0, channels=[0, 2], seed=0)
    robust = vis(**base)
    polished = vis(**base, polish=8, polish_lr=0.05)
    assert bool((polished.scores > robust.scores).all())
    assert polished.settings["polish"] == 8 and robust.settings["polish"] == 0
    assert float(polished.patterns[:, 1].abs().max()) == 0.0  # the channels prior holds through the polish
    masked = vis(**base, polish=8, polish_lr=0.05, polish_mask=0.5)
    bright = robust.patterns.amax(1, keepdim=True)
    lit = (bright > 0.5 * bright.flatten(1).amax(1).view(-1, 1, 1, 1)).float()
    grown = torch.nn.functional.max_pool2d(lit, 3, stride=1, padding=1).expand_as(robust.patterns)
    assert torch.equal(masked.patterns[grown == 0], robust.patterns[grown == 0])
    assert not torch.equal(masked.patterns, robust.patterns)
    one = vis.one_at_a_time([0, 5], **base, polish=4, polish_lr=0.05, polish_mask=0.5)
    both = vis([0, 5], **base, polish=4, polish_lr=0.05, polish_mask=0.5)
    assert torch.allclose(one.patterns, both.patterns, atol=1e-5) and torch.allclose(one.scores, both.scores, atol=1e-4)
    with pytest.raises(ValueError, match="polish"):
        vis(**base, polish=-1)
    with pytest.raises(ValueError, match="polish"):
        vis(**base, polish=2, polish_mask=1.0)


def test_polish_prior_by_picture_kind(multi):
    from pipeline.jobs.filters import FiltersJob, prior_setting

    priors = {"lines": {"class": {"polish": 0}, "unit": {"polish": 8}}, "default": {"unit": {"polish": 3}}}
    assert prior_setting("lines", "class", "polish", None, priors) == 0
    assert prior_setting("lines", "channel", "polish", None, priors) == 8
    assert prior_setting("mnist", "neuron", "polish", None, priors) == 3
    assert prior_setting("mnist", "class", "polish", None, priors) == 0  # not in the prior: the default
    assert prior_setting("lines", "channel", "polish", 5, priors) == 5  # a given value wins
    ctx = _ctx(multi)
    ctx.dataset_name = "lines"
    job = FiltersJob(ctx, None, 0, steps=1, priors=priors)
    assert job.settings_for("channel")["polish"] == 8 and job.settings_for("class")["polish"] == 0
    assert "8 polish steps" in job.how(job.settings_for("channel"))
    for kw, msg in ((dict(polish=-1), "filters.polish"), (dict(polish_lr=0), "filters.polish_lr"),
                    (dict(polish_mask=1.0), "filters.polish_mask")):
        with pytest.raises(CnnvisError, match=msg):
            FiltersJob(ctx, None, 0, steps=1, **kw)


def test_restarts_keep_each_targets_best_start(multi):
    """``restarts`` optimizes every target from that many starts in one batch and keeps, per target, the start
    with the highest score: the pictures and scores are those of the best restart (restart r's rows are the rows
    r*n .. of one run with the targets repeated); batched == one at a time; the job takes it from the prior."""
    from pipeline.jobs.filters import FiltersJob

    vis = FeatureVisualizer(multi, "heads.angle", (3, 28, 28))
    base = dict(objective="class", param="pixel", steps=4, lr=0.05, lhalf=20.0, centre=200.0, channels=[0, 2], seed=3)
    best = vis([0, 5, 7], **base, restarts=3)
    every = vis([0, 5, 7] * 3, **base)  # the same starts and draws: targets repeated restart-major
    scores = every.scores.view(3, 3)
    pick = scores.argmax(0)
    assert best.targets.tolist() == [0, 5, 7] and best.settings["restarts"] == 3
    assert torch.equal(best.scores, scores.max(0).values)
    assert torch.equal(best.patterns, every.patterns.view(3, 3, 3, 28, 28)[pick, torch.arange(3)])
    one = vis.one_at_a_time([0, 5, 7], **base, restarts=3)
    assert torch.allclose(one.patterns, best.patterns, atol=1e-5) and torch.allclose(one.scores, best.scores, atol=1e-4)
    two = vis([0, 5], **base, restarts=2, copies=2)  # copies of a target come from one restart
    assert two.targets.tolist() == [0, 0, 5, 5] and len(two.patterns) == 4
    with pytest.raises(ValueError, match="restarts"):
        vis(**base, restarts=0)
    ctx = _ctx(multi)
    ctx.dataset_name = "lines"
    priors = {"lines": {"class": {"restarts": 3}}}
    job = FiltersJob(ctx, None, 0, steps=1, priors=priors)
    assert job.settings_for("class")["restarts"] == 3 and job.settings_for("channel")["restarts"] == 1
    assert "best of 3 starts" in job.how(job.settings_for("class"))
    assert FiltersJob(ctx, None, 0, steps=1, priors=priors, restarts=1).settings_for("class")["restarts"] == 1
    with pytest.raises(CnnvisError, match="filters.restarts"):
        FiltersJob(ctx, None, 0, steps=1, restarts=0)
