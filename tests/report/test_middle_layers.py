"""The report opens the first and the last layer of the activations and of the unit pictures and
folds the layers between them (a `job=all` report of the default model stays within 15 screens)."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from pipeline.jobs.activations import Activations, ActivationsJob
from pipeline.jobs.filters import _fold_middle_layers
from pipeline.report.sections import Figure, Section


def _activations_section(types: dict[str, str]) -> Section:
    rows = [{"name": n, "type": t, "output_shape": [4, 6, 6]} for n, t in types.items()]
    job = ActivationsJob(SimpleNamespace(layer_rows=rows), None, 0, layer_types=list(set(types.values())),
                         cmap="viridis")
    acts = {n: torch.rand(2, 4, 6, 6) for n in types}
    stats = {n: {"sparsity": 0.5, "mean": 0.1, "max": 1.0, "dead_channels": 0} for n in types}
    figs = {n: [Figure(f"/x/{n}/image00.png", n)] for n in types}
    return job.section(Activations(None, acts, stats), figs)


def test_activations_open_the_first_and_last_relu_and_fold_the_rest():
    types = {"c1": "Conv2d", "r1": "ReLU", "c2": "Conv2d", "r2": "ReLU", "p2": "MaxPool2d", "c3": "Conv2d",
             "r3": "ReLU"}
    sec = _activations_section(types)
    folded = {s.title.removeprefix("Layer "): s.folded for s in sec.subsections}
    assert folded == {"c1": True, "r1": False, "c2": True, "r2": True, "p2": True, "c3": True, "r3": False}
    assert "middle layer" in next(s for s in sec.subsections if s.title == "Layer r2").note


def test_two_relu_layers_stay_open_and_without_relu_nothing_is_folded():
    two = _activations_section({"c1": "Conv2d", "r1": "ReLU", "c2": "Conv2d", "r2": "ReLU"})
    assert [s.folded for s in two.subsections] == [True, False, True, False]
    none = _activations_section({"c1": "Conv2d", "c2": "Conv2d"})
    assert [s.folded for s in none.subsections] == [False, False]


def test_unit_pictures_of_the_middle_layers_are_folded():
    names = ["features.conv1 (kernels: the first layer's best inputs)", "features.conv1 (neuron)",
             "features.conv2 (channel)", "features.conv3 (channel)", "features.conv4 (channel)",
             "heads.angle (class)", "heads.colour (class)"]
    secs = _fold_middle_layers([Section(n) for n in names])
    assert [s.folded for s in secs] == [False, True, True, True, False, False, False]
    one = _fold_middle_layers([Section("features.conv1 (channel)"), Section("classifier (class)")])
    assert [s.folded for s in one] == [False, False]
