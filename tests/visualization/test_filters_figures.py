"""The filters job's figures (issue 24): class pictures in class order with "not reached" marks, the legend
saying where the ascent starts and how tiles are ranked, class names in words, the first layer's kernels."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib.figure
import pytest
import torch

from pipeline.models.multihead import MultiHead
from pipeline.visualization.feature_vis import FeatureVisualizer
from tests.visualization import helpers

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def multi():
    return helpers.prepared(lambda: MultiHead(channels=(4, 6, 8)), 3, seed=0)


def _ctx(net, dataset="lines", class_names=None, input_shape=(3, 28, 28), heads=None):
    return SimpleNamespace(net=net, input_shape=input_shape, dataset_name=dataset,
                           head_classes=heads or {"length": 2, "width": 2, "angle": 12, "colour": 2},
                           class_names=class_names or [str(i) for i in range(96)])


@pytest.fixture
def saved(monkeypatch):
    """{file name: figure} of every figure saved while the test runs."""
    seen = {}
    real = matplotlib.figure.Figure.savefig

    def spy(self, fname, *args, **kwargs):
        seen[str(fname).split("/")[-1].split(".partial")[0]] = self
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    return seen


def _legend(fig) -> str:
    return " ".join(t.get_text() for t in fig.texts[1:]).replace("\n", " ")


def test_legend_says_where_the_ascent_starts_and_how_tiles_are_ranked(multi):
    """The start in words is the real start: grey 0.5 plus noise whose std the legend gives (measured on
    the optimizer's own steps=0 result), only in the used channels when ``channels`` is set."""
    from pipeline.jobs.filters import FiltersJob

    job = FiltersJob(_ctx(multi), ["features.conv2"], 3, steps=1, noise=0.05, priors={})
    res = job.compute(None, 8)["patterns"][0]
    start = FeatureVisualizer(multi, "features.conv2", (3, 28, 28))([0, 1, 2, 3], **{
        **job.settings_for("channel"), "steps": 0, "polish": 0, "seed": 3}).patterns
    std = float((start - 0.5).std())
    assert job.start_words(res.settings) == f"a blank grey image (every pixel 0.5, plus seeded noise of std {std:.2g})"
    assert f"{std:.2g}" == "0.05"
    legend = job.legend(res)
    assert "\nGradient ascent starts from a blank grey image (every pixel 0.5, plus seeded noise" in legend
    assert legend.startswith("#rank: by score, best first = by the loss the ascent minimises (loss = -score), lowest "
                             "first")
    assert "score = mean activation of the channel on the picture" in legend
    s = {**res.settings, "channels": [0, 2], "restarts": 3}
    assert job.start_words(s).startswith("a blank grey image (0.5 in input channels [0, 2], the others 0, plus seeded "
                                         "noise of std ")
    assert job.start_words(s).endswith(", 3 such starts per picture, the best kept")
    assert "Fourier noise" in job.start_words({**res.settings, "param": "fft"})


def test_class_figures_in_class_order_with_not_reached_marks(multi, tmp_path, saved):
    from pipeline.jobs.filters import FiltersJob

    kw = dict(objective="class", steps=2, priors={})
    result = FiltersJob(_ctx(multi), ["heads.angle"], 0, **kw).compute(None, 8)
    res = result["patterns"][0]
    p = res.probs.tolist()
    reached = float(res.probs.median())  # an untrained model: p ~ 1/12; half of the classes count as reached
    FiltersJob(_ctx(multi), ["heads.angle"], 0, reached=reached, **kw).render(result, tmp_path)
    fig = saved["heads.angle_class_all.png"]
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert [s.split("\n")[0] for s in labels] == [f"{15 * i}\u00b0" for i in range(12)]
    assert 0 < sum(v < reached for v in p) < 12
    assert [s.endswith("\nnot reached") for s in labels] == [v < reached for v in p]
    assert [s.split("\n")[1] for s in labels] == [f"{float(res.scores[i]):.3g} p={p[i]:.2f}" for i in range(12)]
    legend = _legend(fig)
    assert "Tiles in class order" in legend and f"'not reached' (red): p < {reached:g}" in legend
    assert "\nA black picture is one the penalties emptied" in fig.texts[1].get_text()  # starts a line of its own
    assert "A black picture is one the penalties emptied: no pixel raised the logit by more than it cost." in legend
    assert "in class order" in fig.texts[0].get_text()
    with pytest.raises(Exception, match="filters.reached"):
        FiltersJob(_ctx(multi), None, 0, reached=1.0)


def test_mnist_class_pictures_are_named_as_digits():
    from pipeline.jobs.filters import FiltersJob
    from pipeline.models.cnn_basic import CNNBasic

    net = helpers.prepared(lambda: CNNBasic(in_channels=1), 1)
    ctx = _ctx(net, "mnist", [str(i) for i in range(10)], (1, 28, 28), {"class": 10})
    job = FiltersJob(ctx, ["classifier"], 0, objective="class", steps=1)
    assert job.class_names("classifier") == [f"digit {i}" for i in range(10)]


def test_first_layer_pictures_are_the_kernels_and_lead_the_figures(multi, tmp_path, saved):
    """Default: conv1 (it reads the image) gets grey + its kernels, scored by the centre unit, shown cropped to
    the receptive field; its kernel grid comes first, with a colour bar. first_layer=ascent: the ascent."""
    from pipeline.jobs.filters import FiltersJob

    job = FiltersJob(_ctx(multi), ["features.conv1", "features.conv2"], 0, steps=1, priors={})
    assert job.jobs == [("features.conv1", "neuron"), ("features.conv2", "channel")]
    result = job.compute(None, 8)
    res = result["patterns"][0]
    assert res.settings["param"] == "kernel" and res.objective == "neuron"
    w = multi.features.conv1.weight.detach()
    r0, r1, c0, c1 = res.settings["window"]
    assert (r1 - r0, c1 - c0) == tuple(w.shape[-2:])  # a 3x3 kernel: a 3x3 receptive field
    figs = job.render(result, tmp_path)
    assert list(figs)[0] == "features.conv1 (kernels: the first layer's best inputs)"
    positive, grey = int((res.scores > 0).sum()), int((res.start_scores > 0).sum())
    observations = job.section(result, figs).observations
    assert any(o.startswith(f"features.conv1 (grey + kernel): {positive} of 4 units reach a positive score on their "
                            f"kernel picture, {grey} on the blank grey image") for o in observations)
    grid = saved["features.conv1_neuron_all.png"]
    tile = grid.axes[0].images[0].get_array()
    assert "grey + the kernel itself" in grid.texts[0].get_text().replace("\n", " ")
    legend = _legend(grid)
    assert "best input is its kernel itself" in legend and f"rows {r0}-{r1 - 1}" in legend
    assert tile.shape[1] == 2 * 15 + 1  # 2 x 2 tiles cropped to 3 + 2 px, drawn 3 x 3 px per pixel, a 1-px gap
    kernels = saved["features.conv1_kernels.png"]
    assert len(kernels.axes) == 2 and "weight" in kernels.axes[1].get_xlabel()  # the colour bar
    assert "so under a norm bound its best input is its kernel itself" in _legend(kernels)
    ascent = FiltersJob(_ctx(multi), ["features.conv1"], 0, steps=1, priors={}, first_layer="ascent")
    assert ascent.jobs == [("features.conv1", "channel")]
    with pytest.raises(Exception, match="filters.first_layer=pixels is unknown"):
        FiltersJob(_ctx(multi), None, 0, first_layer="pixels")
