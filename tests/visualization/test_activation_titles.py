"""Activation figures name their image by class (issue 24): "short thin 45° red", "digit 7", not only test[i]."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib.figure
import pytest
import torch

from pipeline.data.lines_labels import class_names, encode_label
from pipeline.visualization.class_words import class_words, image_words
from pipeline.visualization.inputs import Selection
from tests.visualization.helpers import Tiny


def test_class_words():
    lines = class_names()
    assert image_words(encode_label(0, 0, 3, 0), lines, "lines") == "short thin 45\u00b0 red"
    assert image_words(encode_label(1, 1, 11, 1), lines) == "long thick 165\u00b0 blue"
    digits = [str(i) for i in range(10)]
    assert image_words(7, digits, "mnist") == "digit 7"
    assert image_words(7, digits, "my_folder") == "7"  # only MNIST's names are digits drawn
    fashion = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal"]
    assert image_words(5, fashion, "fashion_mnist") == "Sandal"
    assert image_words(-1, digits, "mnist") == "class unknown" and image_words(10, digits, "mnist") == "class unknown"
    assert class_words("3", "mnist") == "digit 3" and class_words("15\u00b0", "lines") == "15\u00b0"


def test_activation_figures_and_captions_name_the_class(tmp_path, monkeypatch):
    from pipeline.jobs.activations import ActivationsJob
    from pipeline.rendering import figures

    calls = []
    real = figures.render_activation_figure

    def spy(*args, **kwargs):  # a local function: render_all draws it in this process
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(figures, "render_activation_figure", spy)
    titles = []
    save = matplotlib.figure.Figure.savefig

    def saved(self, fname, *args, **kwargs):
        titles.append((self._suptitle.get_text(), self.axes[0].get_title()))
        return save(self, fname, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", saved)
    torch.manual_seed(0)
    net = Tiny(k=10, in_ch=1).eval()
    ctx = SimpleNamespace(net=net, device=torch.device("cpu"), class_names=[str(i) for i in range(10)],
                          dataset_name="mnist", layer_rows=[])
    sel = Selection(torch.rand(2, 1, 12, 12), torch.tensor([7, -1]), ["test[3]", "mine.png"], None)
    job = ActivationsJob(ctx, ["features.conv1"], 0, layer_types=["Conv2d"], cmap="viridis")
    figs = job.render(job.compute(sel, 2), tmp_path)
    assert [f.caption for f in figs["features.conv1"]] == ["features.conv1, image 0: digit 7 (test[3])",
                                                           "features.conv1, image 1: class unknown (mine.png)"]
    assert [c[0][3] for c in calls] == ["features.conv1: 4 channels; image 0: digit 7 (test[3])",
                                        "features.conv1: 4 channels; image 1: class unknown (mine.png)"]
    assert [c[1]["image_name"] for c in calls] == ["digit 7", "class unknown"]
    assert titles == [("features.conv1: 4 channels; image 0: digit 7 (test[3])", "digit 7\ninput 12x12"),
                      ("features.conv1: 4 channels; image 1: class unknown (mine.png)", "class unknown\ninput 12x12")]
