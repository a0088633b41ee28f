"""The Grad-CAM job's figures (issue 24): titles name the head and the class, class 0 of a one-output head
says it is -logit, masks are outlined, inputs named, and one figure per image shows every head side by side."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from pipeline.attribution.result import AttributionResult, normalize_maps
from pipeline.data.lines_labels import HEADS, class_names, join_label
from pipeline.jobs.attribution_maps import AttributionMaps, AttributionMapsJob, MapSet
from pipeline.visualization.inputs import Selection


def _result(targets, binary):
    n = len(targets)
    maps = torch.rand(n, 8, 8, generator=torch.Generator().manual_seed(0)) + 0.1
    return AttributionResult(maps=maps, maps_normalized=normalize_maps(maps), layer_maps=maps[:, :4, :4],
                             targets=torch.tensor(targets), probs=torch.full((n,), 0.75), scores=torch.ones(n),
                             all_zero=torch.zeros(n, dtype=torch.bool), binary=binary, head="", layer="features.conv3")


def _job():
    job = object.__new__(AttributionMapsJob)
    job.ctx = SimpleNamespace(head_classes=dict(HEADS), class_names=class_names(), multihead=True, dataset_name="lines")
    job.alpha, job.cmap, job.scale, job.methods = 0.5, "jet", "per_image", {"gradcam": None}
    return job


def _selection():
    # image 0: short thin 0° red; image 1: long thick 15° blue
    labels = join_label({"length": torch.tensor([0, 1]), "width": torch.tensor([0, 1]),
                         "angle": torch.tensor([0, 1]), "colour": torch.tensor([0, 1])})
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, 2:6, 4] = True
    return Selection(torch.rand(2, 3, 8, 8), labels, ["test[0]", "test[5]"], masks)


def test_titles_masks_notes_and_the_every_head_figure(tmp_path, monkeypatch):
    from pipeline.rendering import figures

    sheets, singles = [], []
    monkeypatch.setattr(figures, "render_gradcam_sheet",
                        lambda images, maps, titles, path, **kw: sheets.append((path, list(titles), kw)) or path)
    monkeypatch.setattr(figures, "render_gradcam_figure", lambda *a, **kw: singles.append((a, kw)) or a[3])
    sel = _selection()
    maps = [MapSet("gradcam", "length", "features.conv3", _result([0, 1], True)),
            MapSet("gradcam", "angle", "features.conv3", _result([0, 1], False))]
    job = _job()
    sections = job.render(AttributionMaps(sel, maps), tmp_path)

    # the heads side by side come first: one figure per image, input column + one overlay per head
    assert sections[0].title == "gradcam: every head side by side, layer features.conv3"
    assert [f.path.name for f in sections[0].figures] == ["image00.png", "image01.png"]
    every = [s for s in sheets if s[0].parent.parent.name == "all_heads"]
    assert len(every) == 2
    path, titles, kw = every[0]
    assert titles == ["length: short (p=0.75)\n(-logit: not long)", "angle: 0° (p=0.75)"]
    assert kw["ncols"] == 2 and kw["input_titles"] == ["image 0: short thin 0° red"] * 2
    assert torch.equal(kw["masks"], sel.masks[0:1].repeat(2, 1, 1))
    assert "every head" in kw["title"] and "image 0 (test[0])" in kw["title"]
    assert sections[1].title == "gradcam: head length, layer features.conv3"

    # per-head sheets: every tile names its head and class; the inputs are named by class; masks outlined
    length = next(s for s in sheets if s[0].parent.parent.name == "length")
    assert length[1] == ["length: short (p=0.75)\n(-logit: not long)", "length: long (p=0.75)"]
    assert length[2]["input_titles"] == ["image 0: short thin 0° red", "image 1: long thick 15° blue"]
    assert length[2]["masks"] is sel.masks and "head length" in length[2]["title"]

    # per-image figures: the class 0 map of a one-output head carries the note; others none
    (args0, kw0), (args1, kw1) = singles[0], singles[1]
    assert "length: short (p=0.75)" in args0[4] and kw0["note"].startswith("head length has one output: 'short' "
                                                                          "is explained as -logit")
    assert kw1["note"] == "" and torch.equal(kw0["mask"], sel.masks[0])
    assert all(kw["note"] == "" for _, kw in singles[2:])          # the angle head: softmax, no note
    assert kw0["input_title"] == "image 0: short thin 0° red"

    # the report says it once per head, and why the pointing game counts those maps
    obs = job.section(AttributionMaps(sel, maps), sections).observations
    note = [o for o in obs if "-logit" in o]
    assert len(note) == 1 and note[0].startswith("gradcam at features.conv3, head length: 1 of 2 maps explain "
                                                 "class 0 (short) of a one-output head as -logit")
    assert "pointing game below counts them" in note[0]


def test_a_single_output_model_gets_no_every_head_figure(tmp_path, monkeypatch):
    from pipeline.rendering import figures

    sheets = []
    monkeypatch.setattr(figures, "render_gradcam_sheet",
                        lambda images, maps, titles, path, **kw: sheets.append((list(titles), kw)) or path)
    monkeypatch.setattr(figures, "render_gradcam_figure", lambda *a, **kw: a[3])
    job = object.__new__(AttributionMapsJob)
    job.ctx = SimpleNamespace(head_classes={"class": 10}, class_names=[str(i) for i in range(10)], multihead=False,
                              dataset_name="mnist")
    job.alpha, job.cmap, job.scale, job.methods = 0.5, "jet", "per_image", {"gradcam": None}
    sel = Selection(torch.rand(2, 1, 8, 8), torch.tensor([7, 2]), ["test[0]", "test[1]"], None)
    sections = job.render(AttributionMaps(sel, [MapSet("gradcam", "class", "features.conv1",
                                                       _result([7, 3], False))]), tmp_path)
    assert [s.title for s in sections] == ["gradcam: layer features.conv1"]
    (titles, kw), = sheets
    assert titles == ["class: 7 (p=0.75)", "class: 3 (p=0.75)"]
    assert kw["input_titles"] == ["image 0: digit 7", "image 1: digit 2"] and kw["masks"] is None


def test_the_evaluation_says_why_a_one_output_heads_pointing_game_is_mixed():
    import numpy as np

    from pipeline.jobs.evaluate import Evaluation, EvaluateJob

    job = object.__new__(EvaluateJob)
    job.ctx = SimpleNamespace(head_classes=dict(HEADS), class_names=class_names())
    arrays = {("gradcam", "length"): {"arrays": {"targets": np.array([0, 0, 0, 0, 1, 1]),
                                                 "pointing_game": np.array([0, 0, 0, 1, 1, 1], bool)}, "attrs": {}},
              ("gradcam", "angle"): {"arrays": {"targets": np.array([0, 1, 2, 3, 4, 5]),
                                                "pointing_game": np.ones(6, bool)}, "attrs": {}}}
    ev = Evaluation(torch.arange(6), [], arrays, has_masks=True)
    assert job.binary_head_observations(ev) == [
        "gradcam, head length (one output): the pointing game is 25% on the 4 images explained as short (class 0: "
        "-logit, the evidence for short over long, which can lie where the line is not) and 100% on the 2 long "
        "images; the table's 50% mixes the two (docs/gradcam.md)."]
