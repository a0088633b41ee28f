"""gradcam.target=[top1,top2] (or class indices): one map per image, head and target, stored per
target, equal to a direct call of Grad-CAM with that target; one column per target in the figures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.attribution.gradcam import GradCAM
from pipeline.errors import CnnvisError
from pipeline.jobs.target_choice import TargetSpec, parse_targets, rank_classes
from pipeline.storage.h5store import H5Run
from pipeline.training.lit_module import LitClassifier, head_probabilities
from pipeline.visualize_run import run_visualize
from tests.conftest import TINY, compose_cfg

HEADS = ("length", "width", "angle", "colour")


def _vis(root: Path, extra: list[str]):
    cfg = compose_cfg(root, [*TINY["lines"], "search_cut_short=true", "job=gradcam", "image=[0,1,2]", *extra],
                      config_name="visualize")
    run_visualize(cfg)
    return Path(cfg.paths.output_dir)


def test_top1_top2_maps_per_head_equal_direct_gradcam_calls(tiny_trained, monkeypatch):
    from pipeline.rendering import figures

    calls, real = [], figures.render_gradcam_sheet
    monkeypatch.setattr(figures, "render_gradcam_sheet",
                        lambda images, maps, titles, path, **kw: calls.append((Path(path), list(titles), kw["ncols"], kw["title"]))
                        or real(images, maps, titles, path, **kw))
    root, runs = tiny_trained
    run_dir = _vis(root, ["gradcam.target=[top1,top2]"])
    net = LitClassifier.load_from_checkpoint(runs[("lines", "multihead")]["best_checkpoint"]).net.eval()
    with H5Run(run_dir / "visualization.h5") as h5:
        x = torch.from_numpy(h5.inputs()["images"])
        with torch.no_grad():
            logits = net(x)
        for head in HEADS:
            assert h5.attribution_targets("gradcam", head, "features.conv3") == ["top1", "top2"]
            ranked = rank_classes(head_probabilities(logits[head]))
            for rank, name in ((0, "top1"), (1, "top2")):
                stored = h5.attribution("gradcam", head, "features.conv3", target=name)
                assert stored["targets"].tolist() == ranked[:, rank].tolist()
                assert stored["attrs"]["target"] == name
                direct = GradCAM(net, "features.conv3", heads=head)(x, {head: ranked[:, rank]})[head]
                np.testing.assert_allclose(stored["maps"], direct.maps.numpy(), rtol=1e-5, atol=1e-7)
                np.testing.assert_allclose(stored["probs"], direct.probs.numpy(), rtol=1e-5)
            # top2 differs from the prediction on every image
            top2 = h5.attribution("gradcam", head, "features.conv3", target="top2")["targets"]
            assert (top2 != logits[head].argmax(1).numpy()).all() if head == "angle" else True
        with pytest.raises(KeyError, match="stored per target"):
            h5.attribution("gradcam", "angle", "features.conv3")
    # per head: a figure per image with one column per target, titled head target: class (p=...), and a sheet
    angle = [c for c in calls if c[0].parent.parent.name == "angle"]
    assert [path.name for path, *_ in angle] == ["image00.png", "image01.png", "image02.png", "sheet.png"]
    assert all(ncols == 2 for _, _, ncols, _ in calls) and len(calls) == 4 * len(HEADS)
    assert all("head angle" in title for *_, title in angle)
    names0 = [t.split("\n")[0] for t in angle[0][1]]
    assert [t.split(":")[0] for t in names0] == ["angle top1", "angle top2"] and all("(p=" in t for t in names0)
    assert len(angle[3][1]) == 6   # 3 images x 2 targets
    figs = run_dir / "figures" / "attribution" / "gradcam" / "angle" / "features.conv3"
    assert (figs / "sheet.png").is_file() and (figs / "image02.png").is_file()
    html = (run_dir / "index.html").read_text()
    assert "top2: " in html and "targets top1, top2" in html


def test_class_index_list_for_one_head(tiny_trained):
    root, runs = tiny_trained
    run_dir = _vis(root, ["gradcam.target=[3,7]", "gradcam.head=angle"])
    net = LitClassifier.load_from_checkpoint(runs[("lines", "multihead")]["best_checkpoint"]).net.eval()
    with H5Run(run_dir / "visualization.h5") as h5:
        assert h5.attribution_heads("gradcam") == ["angle"]
        assert h5.attribution_targets("gradcam", "angle", "features.conv3") == ["class3", "class7"]
        x = torch.from_numpy(h5.inputs()["images"])
        stored = h5.attribution("gradcam", "angle", "features.conv3", target="class7")
        assert stored["targets"].tolist() == [7, 7, 7]
        direct = GradCAM(net, "features.conv3", heads="angle")(x, {"angle": 7})["angle"]
        np.testing.assert_allclose(stored["maps"], direct.maps.numpy(), rtol=1e-5, atol=1e-7)


def test_single_target_keeps_the_plain_layout(tiny_trained):
    root, _ = tiny_trained
    run_dir = _vis(root, ["gradcam.target=top2", "gradcam.head=angle"])
    with H5Run(run_dir / "visualization.h5") as h5:
        assert h5.attribution_targets("gradcam", "angle", "features.conv3") == []
        assert h5.attribution("gradcam", "angle", "features.conv3")["maps"].shape == (3, 28, 28)


@pytest.mark.parametrize("target, needle", [
    (None, None), (1, None), ("top2", None), (["top1", "top2"], None),
    (["top1", "top3"], "gradcam.target=top3 is out of range of head length: it has 2 classes"),
    ("best", "is not a target: use null"), ([], "names no target"), (["top1", "top1"], "names a target twice"),
    (12, "out of range of head length: valid classes are 0..1"), (True, "is not a target"),
])
def test_parse_targets(target, needle):
    classes = {"length": 2, "angle": 12}
    if needle is None:
        specs = parse_targets(target, classes, multihead=True)
        assert specs and all(isinstance(s, TargetSpec) for s in specs)
    else:
        with pytest.raises(CnnvisError, match=needle):
            parse_targets(target, classes, multihead=True)


def test_rank_classes_binary_head_top2_is_the_other_class():
    probs = head_probabilities(torch.tensor([[2.0], [-1.0]]))
    assert rank_classes(probs).tolist() == [[1, 0], [0, 1]]
    assert TargetSpec(rank=2).classes({"length": probs})["length"].tolist() == [0, 1]
