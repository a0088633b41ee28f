"""Spearman against a numpy reference; cascading randomization on a tiny CNN."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.evaluation.sanity import merge_cascades, parameter_layers, randomization_cascade, rankdata, spearman


def np_average_ranks(row: np.ndarray) -> np.ndarray:
    """Reference: 1-based ranks, ties get the mean of the positions they occupy."""
    order = np.argsort(row, kind="stable")
    ranks = np.empty(len(row), dtype=np.float64)
    ranks[order] = np.arange(1, len(row) + 1)
    for v in np.unique(row):
        sel = row == v
        ranks[sel] = ranks[sel].mean()
    return ranks


def np_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = []
    for ra, rb in zip(a.reshape(len(a), -1), b.reshape(len(b), -1)):
        ra, rb = np_average_ranks(ra), np_average_ranks(rb)
        if ra.std() == 0 or rb.std() == 0:
            out.append(0.0)
        else:
            out.append(np.corrcoef(ra, rb)[0, 1])
    return np.array(out)


def test_rankdata_matches_reference_with_ties():
    rng = np.random.default_rng(0)
    v = rng.integers(0, 5, size=(7, 30)).astype(np.float32)     # many ties
    got = rankdata(torch.from_numpy(v)).numpy()
    ref = np.stack([np_average_ranks(r) for r in v])
    np.testing.assert_allclose(got, ref)
    assert rankdata(torch.tensor([[3.0, 1.0, 3.0, 2.0]])).tolist() == [[3.5, 1.0, 3.5, 2.0]]


def test_spearman_matches_reference():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 6, 6))
    b = a + rng.normal(scale=1.0, size=a.shape)
    np.testing.assert_allclose(spearman(torch.from_numpy(a), torch.from_numpy(b)).numpy(),
                               np_spearman(a, b), atol=1e-6)
    ai = rng.integers(0, 3, size=(4, 20)).astype(np.float64)   # ties
    bi = rng.integers(0, 3, size=(4, 20)).astype(np.float64)
    np.testing.assert_allclose(spearman(torch.from_numpy(ai), torch.from_numpy(bi)).numpy(),
                               np_spearman(ai, bi), atol=1e-6)


def test_spearman_special_cases():
    x = torch.rand(3, 4, 4)
    assert torch.allclose(spearman(x, x), torch.ones(3))
    assert torch.allclose(spearman(x, -x), -torch.ones(3))
    assert torch.allclose(spearman(x, x ** 3 + 5), torch.ones(3))     # monotone -> 1
    const = torch.zeros(2, 4, 4)
    r = spearman(const, torch.rand(2, 4, 4))
    assert torch.equal(r, torch.zeros(2)) and not torch.isnan(r).any()
    assert torch.equal(spearman(torch.rand(2, 4, 4), torch.full((2, 4, 4), 7.0)), torch.zeros(2))
    with pytest.raises(ValueError):
        spearman(torch.rand(2, 3), torch.rand(3, 2))


def tiny_cnn(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1),
        bn1=nn.BatchNorm2d(4),
        relu1=nn.ReLU(),
        conv2=nn.Conv2d(4, 4, 3, padding=1),
        relu2=nn.ReLU(),
        flatten=nn.Flatten(),
        fc=nn.Linear(4 * 8 * 8, 16),
        relu3=nn.ReLU(),
        out=nn.Linear(16, 3),
    ))
    with torch.no_grad():   # non-trivial batch-norm statistics, so that resetting them is visible
        model.bn1.running_mean.uniform_(-0.5, 0.5)
        model.bn1.running_var.uniform_(0.5, 2.0)
        model.bn1.weight.uniform_(0.5, 1.5)
    return model.eval()


def input_gradient(model, x, targets):
    """Signed input-gradient saliency, summed over channels: [N, H, W]."""
    x = x.clone().requires_grad_(True)
    logits = model(x)
    score = logits.gather(1, targets.view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(score, x)
    return grad.sum(1)


def test_parameter_layers_order():
    model = tiny_cnn()
    assert parameter_layers(model) == ["conv1", "bn1", "conv2", "fc", "out"]

    class Nested(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
            self.heads = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.Linear(2, 1)})

    assert parameter_layers(Nested()) == ["features.0", "heads.a", "heads.b"]
    assert parameter_layers(Nested(), prefixes=("features", "heads.b")) == ["features.0", "heads.b"]
    assert parameter_layers(Nested(), prefixes="head") == []


def test_cascade_on_tiny_cnn():
    model = tiny_cnn()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    targets = torch.tensor([0, 1, 2, 0, 1])
    seen = []

    def recording_attr(m, xb, t):
        # which layers of the copy differ from the trained model at this call?
        changed = sorted({k.split(".")[0] for k, v in m.state_dict().items()
                          if not torch.equal(v, original[k])})
        seen.append(changed)
        assert m is not model
        return input_gradient(m, xb, t)

    rng_state = torch.get_rng_state()
    steps = randomization_cascade(model, recording_attr, x, targets, seed=0)
    assert torch.equal(torch.get_rng_state(), rng_state)

    # the original model is untouched
    for k, v in model.state_dict().items():
        assert torch.equal(v, original[k]), k
    assert not model.training

    assert [s["layer"] for s in steps] == ["none", "out", "fc", "conv2", "bn1", "conv1"]
    assert steps[3]["randomized"] == ["out", "fc", "conv2"]
    # cumulative randomization, top down: exactly the randomized layers differ
    assert seen == [[], ["out"], ["fc", "out"], ["conv2", "fc", "out"],
                    ["bn1", "conv2", "fc", "out"], ["bn1", "conv1", "conv2", "fc", "out"]]

    assert torch.allclose(steps[0]["spearman"], torch.ones(5))
    assert steps[0]["mean"] == pytest.approx(1.0)
    assert steps[1]["mean"] < 0.6                      # randomizing the classifier changes the map
    assert steps[-1]["mean"] < 0.6
    for s in steps:
        assert s["spearman"].shape == (5,) and s["spearman_abs"].shape == (5,)
        assert s["maps"].shape == (5, 8, 8)
        assert not torch.isnan(s["spearman"]).any()
        assert s["mean"] == pytest.approx(float(s["spearman"].mean()))
    assert torch.allclose(steps[0]["maps"], input_gradient(model, x, targets))

    # reproducible for a seed, different for another
    again = randomization_cascade(model, input_gradient, x, targets, seed=0)
    assert all(torch.equal(a["maps"], b["maps"]) for a, b in zip(steps, again))
    other = randomization_cascade(model, input_gradient, x, targets, seed=1)
    assert not torch.equal(steps[1]["maps"], other[1]["maps"])


def test_batchnorm_running_stats_reset():
    model = tiny_cnn()
    stats = []

    def attr(m, xb, t):
        stats.append((m.bn1.running_mean.clone(), m.bn1.running_var.clone()))
        return input_gradient(m, xb, t)

    randomization_cascade(model, attr, torch.rand(2, 1, 8, 8), torch.tensor([0, 1]), layers=["bn1", "out"])
    # steps: none, out, bn1
    assert not torch.equal(stats[1][0], torch.zeros(4))
    assert torch.equal(stats[2][0], torch.zeros(4)) and torch.equal(stats[2][1], torch.ones(4))
    assert not torch.equal(model.bn1.running_mean, torch.zeros(4))


def test_model_independent_method_fails_the_check():
    model = tiny_cnn()
    fixed = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(5))

    def edge_detector(m, xb, t):          # ignores the model entirely
        return fixed.clone()

    steps = randomization_cascade(model, edge_detector, torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    for s in steps:
        assert torch.allclose(s["spearman"], torch.ones(4))


def test_layers_validation():
    model = tiny_cnn()
    with pytest.raises(ValueError):
        randomization_cascade(model, input_gradient, torch.rand(1, 1, 8, 8), torch.tensor([0]), layers=["nope"])
    with pytest.raises(ValueError):
        randomization_cascade(model, input_gradient, torch.rand(1, 1, 8, 8), torch.tensor([0]), layers=["relu1"])


def test_merge_cascades_pools_independent_draws():
    model = tiny_cnn()
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    targets = torch.tensor([0, 1, 2, 0, 1])
    runs = [randomization_cascade(model, input_gradient, x, targets, seed=s) for s in (0, 1000)]
    # different seeds are different re-initializations
    assert not torch.equal(runs[0][1]["spearman"], runs[1][1]["spearman"])
    merged = merge_cascades(runs)
    assert [s["layer"] for s in merged] == [s["layer"] for s in runs[0]]
    for i, step in enumerate(merged):
        assert torch.equal(step["spearman"], torch.cat([runs[0][i]["spearman"], runs[1][i]["spearman"]]))
        assert step["run_means"] == [runs[0][i]["mean"], runs[1][i]["mean"]]
        assert step["mean"] == pytest.approx((runs[0][i]["mean"] + runs[1][i]["mean"]) / 2, abs=1e-6)
        assert step["maps"] is runs[0][i]["maps"]
    assert merge_cascades(runs[:1])[1]["mean"] == runs[0][1]["mean"]
    with pytest.raises(ValueError, match="at least one"):
        merge_cascades([])
    with pytest.raises(ValueError, match="different layers"):
        merge_cascades([runs[0], runs[1][:2]])


def _small_multihead():
    from pipeline.models.multihead import MultiHead

    torch.manual_seed(0)
    net = MultiHead(channels=(4, 6, 8), head_hidden=(5,))
    net.train()
    with torch.no_grad():
        net(torch.rand(16, 3, 28, 28))  # batch-norm statistics that are not the defaults
    return net.eval()


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_head_cascades_equal_one_cascade_per_head(method):
    """Every head's maps from one shared model per step (its own layers re-initialized with its
    own seeds) equal that head's own cascade, for each seed; the reference is shared."""
    from pipeline.attribution.gradcam import GradCAM
    from pipeline.attribution.scorecam import ScoreCAM
    from pipeline.evaluation.sanity import head_cascades

    net = _small_multihead()
    heads = list(net.head_classes)
    cls = GradCAM if method == "gradcam" else ScoreCAM
    x = torch.rand(3, 3, 28, 28)
    targets = {h: torch.tensor([0, 1, 0]) for h in heads}
    layers = {h: parameter_layers(net, prefixes=("features", f"heads.{h}")) for h in heads}
    before = [p.clone() for p in net.parameters()]

    def all_heads(model, xb, t):
        return {h: r.maps for h, r in cls(model, "features.conv3", heads=list(t))(xb, dict(t)).items()}

    seeds = [5, 1005]
    joint = head_cascades(net, all_heads, x, targets, layers, seeds)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # the model is not modified
    for h in heads:
        def one_head(model, xb, t, h=h):
            return cls(model, "features.conv3", heads=[h])(xb, {h: t})[h].maps

        assert len(joint[h]) == len(seeds)
        for seed, got in zip(seeds, joint[h]):
            want = randomization_cascade(net, one_head, x, targets[h], seed=seed, layers=layers[h])
            assert [s["layer"] for s in got] == [s["layer"] for s in want]
            assert [s["randomized"] for s in got] == [s["randomized"] for s in want]
            for g, w in zip(got, want):
                torch.testing.assert_close(g["maps"], w["maps"], rtol=0, atol=0)
                torch.testing.assert_close(g["spearman"], w["spearman"], rtol=0, atol=0)
        # a different seed gives different maps once the top layer is randomized
        assert not torch.equal(joint[h][0][1]["maps"], joint[h][1][1]["maps"])


def test_head_cascades_run_heads_with_clashing_layers_apart():
    """A layer at different steps in two heads' lists: those heads run in separate passes,
    each still equal to its own cascade."""
    from pipeline.evaluation.sanity import head_cascades

    torch.manual_seed(1)
    net = nn.Sequential(OrderedDict(a=nn.Linear(4, 4), b=nn.Linear(4, 4), c=nn.Linear(4, 1)))
    x = torch.rand(2, 4)
    layers = {"p": ["a", "b", "c"], "q": ["a", "c"]}  # "a" at step 3 for p, step 2 for q
    calls = []

    def fn(model, xb, t):
        calls.append(sorted(t))
        y = model(xb).expand(-1, 4) * xb
        return {h: y.view(2, 2, 2) for h in t}

    joint = head_cascades(net, fn, x, {"p": None, "q": None}, layers, seeds=[0])
    assert ["p"] in calls and ["q"] in calls and ["p", "q"] not in calls
    for h in ("p", "q"):
        want = randomization_cascade(net, lambda m, xb, t: fn(m, xb, {h: t})[h], x, None, seed=0, layers=layers[h])
        for g, w in zip(joint[h][0], want):
            torch.testing.assert_close(g["maps"], w["maps"], rtol=0, atol=0)
