"""The glue between tested parts (issue 26, "Tests that catch a wrong wire"): what a job hands a figure
function (which scale, which image's values), which half of a compatibility check refuses which case,
indices at exactly the length of what they index, and the class order a folder's names give.

Each test is built so that the plausible wrong wire gives a different answer: images whose per-image
scales differ from the shared one, checks fed a case that only one half of their condition catches,
folder names whose sorted, natural and creation orders differ. docs/glue-tests.md lists the slips
they were checked against."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline.attribution.result import AttributionResult, normalize_maps
from pipeline.errors import CnnvisError
from pipeline.visualization.inputs import Selection
from tests.visualization.helpers import Tiny


# --- 1. scales and values handed from jobs to figure functions -----------------------------------

def _spy(monkeypatch, module, name: str) -> list:
    """Replace ``module.name`` by a recorder (a local function: render_all calls it in this process)."""
    calls = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


def _images_of_different_strength(n: int = 3, ch: int = 1) -> torch.Tensor:
    torch.manual_seed(1)
    base = torch.rand(n, ch, 12, 12)
    return base * torch.tensor([1.0, 6.0, 0.2][:n]).view(n, 1, 1, 1)  # per-image ranges far apart


def test_activation_figures_get_the_layers_shared_limits_and_their_own_images_values(tmp_path, monkeypatch):
    from pipeline.jobs.activations import ActivationsJob
    from pipeline.rendering import figures

    calls = _spy(monkeypatch, figures, "render_activation_figure")
    torch.manual_seed(0)
    ctx = SimpleNamespace(net=Tiny(k=3, in_ch=1).eval(), device=torch.device("cpu"), class_names=["a", "b", "c"],
                          dataset_name="x", layer_rows=[])
    images = _images_of_different_strength()
    sel = Selection(images, torch.tensor([0, 1, 2]), ["test[0]", "test[1]", "test[2]"], None)
    job = ActivationsJob(ctx, ["features.conv1", "features.relu2"], 0, layer_types=["Conv2d"], cmap="viridis")
    result = job.compute(sel, 2)
    job.render(result, tmp_path)
    assert len(calls) == 2 * 3
    with torch.no_grad():  # the oracle: the layer's outputs recomputed here, by hand
        conv1 = ctx.net.features.conv1(images)
        relu2 = ctx.net.features.relu2(ctx.net.features.conv2(ctx.net.features.relu1(conv1)))
    for (args, kwargs) in calls:
        layer = args[3].split(":")[0]
        i = int(args[3].split("image ")[1].split(":")[0])
        own = {"features.conv1": conv1, "features.relu2": relu2}[layer]
        torch.testing.assert_close(torch.as_tensor(args[0]), images[i])           # this image
        torch.testing.assert_close(torch.as_tensor(args[1]), own[i], atol=1e-5, rtol=1e-5)  # its own activations
        lo, hi = kwargs["limits"]
        assert (lo, hi) == pytest.approx((float(own.min()), float(own.max())), abs=1e-5)  # one scale: every image
        per_image = (float(own[i].min()), float(own[i].max()))
        if i != 1:  # image 1 is the strongest: the layer's scale is its own
            assert per_image != pytest.approx((lo, hi), abs=1e-3), "the case must tell the scales apart"


def _result(peaks, seed=0) -> AttributionResult:
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(len(peaks), 6, 6, generator=g)
    maps = maps / maps.flatten(1).amax(1).view(-1, 1, 1) * torch.tensor(peaks, dtype=torch.float32).view(-1, 1, 1)
    n = len(peaks)
    return AttributionResult(maps=maps, maps_normalized=normalize_maps(maps), layer_maps=maps[:, :3, :3] * 2,
                             targets=torch.zeros(n, dtype=torch.long), probs=torch.ones(n), scores=torch.ones(n),
                             all_zero=~(maps.flatten(1) > 0).any(1))


def _attribution_job(scale: str, per_target: bool = False):
    from pipeline.jobs.attribution_maps import AttributionMapsJob

    job = object.__new__(AttributionMapsJob)
    job.ctx = SimpleNamespace(head_classes={"class": 2}, class_names=["a", "b"], multihead=False, dataset_name="x")
    job.alpha, job.cmap, job.scale, job.methods = 0.5, "jet", scale, {"gradcam": None}
    job.per_target = per_target
    return job


@pytest.mark.parametrize("scale", ["per_image", "shared"])
def test_attribution_figures_get_the_maps_of_the_chosen_scale(tmp_path, monkeypatch, scale):
    """per_image: each map min-max to [0, 1]; shared: the RAW maps over the largest raw value of the figure
    (not the normalized ones over their maximum, which is 1 for every image)."""
    from pipeline.jobs.attribution_maps import AttributionMaps, MapSet
    from pipeline.rendering import figures

    sheets = _spy(monkeypatch, figures, "render_gradcam_sheet")
    singles = _spy(monkeypatch, figures, "render_gradcam_figure")
    sel = Selection(torch.rand(3, 3, 6, 6), torch.tensor([0, 1, 0]), ["test[0]", "test[1]", "test[2]"], None)
    r = _result([4.0, 1.0, 0.5])
    _attribution_job(scale).render(AttributionMaps(sel, [MapSet("gradcam", "class", "conv", r)]), tmp_path)
    expected = r.maps_normalized if scale == "per_image" else r.maps / 4.0
    assert len(sheets) == 1 and len(singles) == 3
    torch.testing.assert_close(torch.as_tensor(sheets[0][0][1]), expected)
    for i, (args, _) in enumerate(singles):
        torch.testing.assert_close(torch.as_tensor(args[0]), sel.images[i])
        torch.testing.assert_close(torch.as_tensor(args[1]), expected[i])
        torch.testing.assert_close(torch.as_tensor(args[2]), r.layer_maps[i])  # the layer's own map, raw
    if scale == "shared":
        assert float(expected[2].max()) == pytest.approx(0.125)  # the weak map stays faint


@pytest.mark.parametrize("scale", ["per_image", "shared"])
def test_per_target_figures_share_one_scale_across_the_targets(tmp_path, monkeypatch, scale):
    from pipeline.jobs.attribution_maps import AttributionMaps, MapSet
    from pipeline.rendering import figures

    sheets = _spy(monkeypatch, figures, "render_gradcam_sheet")
    sel = Selection(torch.rand(2, 3, 6, 6), torch.tensor([0, 1]), ["test[0]", "test[1]"], None)
    top1, top2 = _result([2.0, 1.0], seed=1), _result([8.0, 0.5], seed=2)
    maps = [MapSet("gradcam", "class", "conv", top1, target="top1"), MapSet("gradcam", "class", "conv", top2, target="top2")]
    _attribution_job(scale, per_target=True).render(AttributionMaps(sel, maps), tmp_path)
    if scale == "per_image":
        expected = torch.stack([top1.maps_normalized, top2.maps_normalized])
    else:
        expected = torch.stack([top1.maps, top2.maps]) / 8.0  # the largest raw value over both targets
    per_image_sheets, sheet = sheets[:2], sheets[2]
    for i, (args, _) in enumerate(per_image_sheets):  # image i: one column per target
        torch.testing.assert_close(torch.as_tensor(args[1]), expected[:, i])
        torch.testing.assert_close(torch.as_tensor(args[0]), sel.images[i:i + 1].repeat(2, 1, 1, 1))
    # the sheet: a row per image, a column per target
    order = [(0, 0), (1, 0), (0, 1), (1, 1)]
    torch.testing.assert_close(torch.as_tensor(sheet[0][1]), torch.stack([expected[j, i] for j, i in order]))


def test_the_kernel_figure_gets_the_first_convolutions_raw_weights(tmp_path, monkeypatch):
    from pipeline.jobs.filters import FiltersJob
    from pipeline.rendering import feature_figures

    calls = _spy(monkeypatch, feature_figures, "render_kernel_grid")
    net = Tiny(k=3, in_ch=1).eval()
    job = object.__new__(FiltersJob)
    job.top = 4
    FiltersJob.render(job, {"patterns": [], "kernels": {"features.conv1": net.features.conv1.weight.detach()}}, tmp_path)
    assert len(calls) == 1
    torch.testing.assert_close(torch.as_tensor(calls[0][0][0]), net.features.conv1.weight.detach())


def test_the_filters_job_hands_on_the_first_convolutions_raw_kernels():
    """What compute() hands store() and render(): the first convolution's weights as they are in the net."""
    from pipeline.jobs.filters import FiltersJob

    net = Tiny(k=3, in_ch=1).eval()
    job = object.__new__(FiltersJob)
    job.ctx, job.jobs, job.kernel_layer = SimpleNamespace(net=net, input_shape=(1, 12, 12)), [], None
    kernels = job.compute(None, 1)["kernels"]
    assert list(kernels) == ["features.conv1"]
    torch.testing.assert_close(kernels["features.conv1"], net.features.conv1.weight.detach())


# --- 2. compatibility checks: cases only one half of the condition catches -----------------------

def _module(names, heads, dataset="lines", name="cnn_basic"):
    return SimpleNamespace(hparams={"class_names": list(names), "dataset": dataset, "name": name},
                           head_classes=dict(heads))


def _datamodule(names, heads=None, name="lines"):
    return SimpleNamespace(class_names=list(names), heads=heads, name=name)


@pytest.mark.parametrize("ck_names,ck_heads,dm_names,dm_heads,fits", [
    (["a", "b", "c"], {"class": 3}, ["a", "b", "c"], None, True),
    (["a", "b", "c"], {"class": 3}, ["x", "y", "z"], None, False),           # same count, other names
    (["a", "b", "c"], {"class": 3}, ["a", "b"], None, False),                # a prefix of the names
    (["a", "b", "c"], {"class": 3}, ["c", "b", "a"], None, False),           # same names, other order
    (["a", "b"], {"class": 3}, ["a", "b"], None, False),                     # same names, a head of another size
    (["a", "b", "c", "d"], {"h1": 2, "h2": 2}, ["a", "b", "c", "d"], {"h1": 2, "h2": 2}, True),
    (["a", "b", "c", "d"], {"h1": 2, "h2": 2}, ["a", "b", "c", "d"], {"h1": 2, "h3": 2}, False),  # names equal, heads not
    (["a", "b", "c", "d"], {"h1": 2, "h2": 2}, ["a", "b", "c", "e"], {"h1": 2, "h2": 2}, False),  # heads equal, names not
    (["a", "b", "c", "d"], {"h1": 2, "h2": 2}, ["a", "b", "c", "d"], None, False),  # a plain dataset
])
def test_eval_and_resume_checkpoint_fit_check(ck_names, ck_heads, dm_names, dm_heads, fits):
    from pipeline.training.evaluate import CheckpointDataMismatch, check_checkpoint_fits

    module, dm = _module(ck_names, ck_heads), _datamodule(dm_names, dm_heads)
    if fits:
        check_checkpoint_fits(module, Path("x.ckpt"), dm)
    else:
        with pytest.raises(CheckpointDataMismatch, match="predicts"):
            check_checkpoint_fits(module, Path("x.ckpt"), dm)


@pytest.mark.parametrize("heads,data_heads,n,fits", [
    ({"class": 10}, None, 10, True),
    ({"class": 10}, None, 96, False),
    ({"class": 96}, None, 10, False),
    ({"length": 2, "width": 2}, {"length": 2, "width": 2}, 4, True),
    ({"length": 2, "width": 2}, {"length": 2, "width": 3}, 4, False),     # same head names, other sizes
    ({"length": 2, "width": 2}, {"length": 2, "colour": 2}, 4, False),    # same sizes, other names
    ({"length": 2, "width": 2}, None, 4, False),                          # same class count, no heads
])
def test_model_fits_data(heads, data_heads, n, fits):
    from pipeline.config import check_model_fits_data
    from pipeline.errors import ConfigError

    if fits:
        check_model_fits_data("m", heads, "d", data_heads, n)
    else:
        with pytest.raises(ConfigError):
            check_model_fits_data("m", heads, "d", data_heads, n)


def _png_folder(root: Path, classes: list[str], per_class: int = 3, size: int = 8) -> Path:
    from PIL import Image

    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            Image.fromarray(np.full((size, size), 40 * c + k, np.uint8)).save(root / name / f"{k}.png")
    return root


@pytest.mark.parametrize("ck_dataset,ck_names,refused", [
    ("image_folder", ["cat", "dog", "emu"], False),
    ("image_folder", ["ant", "bee", "cow"], True),     # same dataset name and class count, other names
    ("image_folder", ["dog", "cat", "emu"], True),     # same names in another order: other labels
    ("mnist", ["cat", "dog", "emu"], True),            # same names, another dataset
])
def test_visualize_refuses_a_checkpoint_of_other_classes(tmp_path, monkeypatch, ck_dataset, ck_names, refused):
    from pipeline.visualization import context
    from tests.conftest import compose_cfg

    root = _png_folder(tmp_path / "pics", ["cat", "dog", "emu"])
    (tmp_path / "m.ckpt").write_bytes(b"x")
    cfg = compose_cfg(tmp_path, ["dataset=image_folder", f"data.root={root}", "data.progress=false",
                                 f"ckpt={tmp_path / 'm.ckpt'}", "device=cpu", "data.image_size=12"],
                      config_name="visualize")
    fake = SimpleNamespace(hparams={"name": "cnn_basic", "dataset": ck_dataset, "class_names": ck_names},
                           head_classes={"class": 3}, net=Tiny(k=3, in_ch=1))
    monkeypatch.setattr(context, "load_module", lambda *a, **k: fake)
    if refused:
        with pytest.raises(context.CheckpointMismatchError, match="was trained on"):
            context.load_context(cfg)
    else:
        assert context.load_context(cfg).class_names == ["cat", "dog", "emu"]


# --- 3. indices at exactly the length of what they index ------------------------------------------

def test_image_index_equal_to_the_test_set_size_is_refused_and_the_last_one_taken():
    from pipeline.visualization.inputs import ImageInputError, select_images

    images = torch.arange(5).view(5, 1, 1, 1).repeat(1, 1, 4, 4).to(torch.uint8)
    labels = torch.tensor([0, 1, 0, 1, 0])
    sel = select_images([4, 0], images, labels, None, 2)
    assert sel.sources == ["test[4]", "test[0]"] and float(sel.images[0].max()) == pytest.approx(4 / 255)
    for bad in (5, -1, "5"):
        with pytest.raises(ImageInputError, match="out of range: the test split has 5 images"):
            select_images([bad], images, labels, None, 2)


@pytest.mark.parametrize("k,index,ok", [(3, 2, True), (3, 3, False), (3, -1, False), (1, 0, True), (1, 1, False)])
def test_target_class_index_at_the_class_count(k, index, ok):
    from pipeline.jobs.target_choice import parse_targets

    if ok:
        assert parse_targets(index, {"class": k}, False)[0].index == index
    else:
        with pytest.raises(CnnvisError, match="out of range"):
            parse_targets(index, {"class": k}, False)


def test_target_rank_at_the_class_count():
    from pipeline.jobs.target_choice import parse_targets

    assert parse_targets("top3", {"class": 3}, False)[0].rank == 3
    with pytest.raises(CnnvisError, match="top1..top3"):
        parse_targets("top4", {"class": 3}, False)
    with pytest.raises(CnnvisError, match="of head width"):  # every head is checked, the smallest too
        parse_targets(3, {"length": 4, "width": 3}, True)


def test_feature_vis_unit_and_input_channel_at_the_count():
    from pipeline.visualization.feature_vis import FeatureVisualizer

    net = Tiny(k=3, in_ch=3).eval()
    vis = FeatureVisualizer(net, "features.conv1", (3, 12, 12))
    assert vis.n_units == 4
    assert len(vis([3], objective="channel", steps=1, seed=0).patterns) == 1
    with pytest.raises(ValueError, match="unit 4 is out of range for layer 'features.conv1': valid are 0..3"):
        vis([4], objective="channel", steps=1, seed=0)
    assert len(vis([0], objective="channel", steps=1, seed=0, channels=[2]).patterns) == 1
    with pytest.raises(ValueError, match=r"must be a non-empty subset of 0..2"):
        vis([0], objective="channel", steps=1, seed=0, channels=[3])
    with pytest.raises(ValueError, match="class 3 is out of range"):  # a head layer: the class count
        FeatureVisualizer(net, "classifier.1", (3, 12, 12))([3], objective="class", steps=1, seed=0)


def test_filters_class_at_the_class_count():
    from pipeline.jobs.filters import FiltersJob

    net = Tiny(k=3, in_ch=1).eval()
    dm = SimpleNamespace(channels=1, image_size=12)
    ctx = SimpleNamespace(net=net, input_shape=(1, 12, 12), device=torch.device("cpu"), head_classes={"class": 3},
                          class_names=["a", "b", "c"], multihead=False, datamodule=dm, layer_rows=[])
    FiltersJob(ctx, ["classifier.1"], 0, objective="class", classes=[2])
    with pytest.raises(CnnvisError, match="class 3 is out of range for classifier.1: valid classes are 0..2"):
        FiltersJob(ctx, ["classifier.1"], 0, objective="class", classes=[3])


# --- 4. the class order folder names give ----------------------------------------------------------

ORDER_TRAP = ["class10", "class2", "Zebra", "apple", "class1"]  # created in this order
SORTED = sorted(ORDER_TRAP)                                     # ['Zebra', 'apple', 'class1', 'class10', 'class2']


def test_the_promised_order_differs_from_the_other_plausible_ones():
    import re

    natural = sorted(ORDER_TRAP, key=lambda s: [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)])
    assert SORTED != natural and SORTED != ORDER_TRAP and SORTED != sorted(ORDER_TRAP, key=str.lower)


def test_image_folder_labels_follow_pythons_sorted_order_of_the_folder_names(tmp_path):
    from pipeline.data.image_folder import scan_image_folder

    root = _png_folder(tmp_path / "pics", ORDER_TRAP, per_class=1)
    scan = scan_image_folder(root)
    assert scan.class_names == SORTED
    for rel, label in scan.files:  # every file gets the label of its folder's place in that order
        assert SORTED[label] == Path(rel).parts[0]


def test_image_folder_datamodule_keeps_that_order_and_its_labels(tmp_path):
    from pipeline.data.image_folder_datamodule import ImageFolderDataModule

    root = _png_folder(tmp_path / "pics", ORDER_TRAP, per_class=4)
    dm = ImageFolderDataModule(root=str(root), cache_dir=str(tmp_path / "cache"), test_fraction=0.5, val_fraction=0.2,
                               image_size=8, progress=False, batch_size=4)
    dm.setup("test")
    assert list(dm.class_names) == SORTED
    # each folder's images are constant greys 40 x its creation index + 0..3: label -> grey is the sorted order
    assert len(set(int(v) for v in dm.test.labels)) == len(ORDER_TRAP)
    for img, label in zip(dm.test.images, dm.test.labels):
        created = ORDER_TRAP.index(SORTED[int(label)])
        assert 40 * created <= int(img.float().mean().round()) <= 40 * created + 3


def test_lines_folder_labels_come_from_the_class_name_and_ids_sort_as_numbers(tmp_path):
    """Class folders whose string order (0_0_10_0 < 0_0_1_0 < 0_0_2_0) is not their label order (angle 1 < 2 < 10),
    files whose ids sort differently as text (100 < 9) and as numbers: the arrays are in (label, id) order
    and every image keeps the label of its own name."""
    from PIL import Image

    from pipeline.data.lines_folder import read_lines_folder
    from pipeline.data.lines_labels import encode_label

    angles, ids = [10, 1, 2], [100, 9, 10]  # created in this order
    value = {}
    for a in angles:
        (tmp_path / f"0_0_{a}_0").mkdir()
        for i in ids:
            v = 10 * angles.index(a) + ids.index(i) + 1
            Image.fromarray(np.full((28, 28, 3), v, np.uint8)).save(tmp_path / f"0_0_{a}_0" / f"0_0_{a}_0_{i}.png")
            value[(a, i)] = v
    arrays = read_lines_folder(tmp_path)
    expected = [(a, i) for a in sorted(angles) for i in sorted(ids)]
    assert arrays.paths == [f"0_0_{a}_0/0_0_{a}_0_{i}.png" for a, i in expected]
    assert list(arrays.labels) == [int(encode_label(0, 0, a, 0)) for a, _ in expected]
    assert [int(img[0, 0, 0]) for img in arrays.images] == [value[k] for k in expected]


def test_default_images_reach_the_last_class():
    """The docstring's example: 96 classes, 6 images -> classes 0, 19, 38, 57, 76, 95 (the last one included),
    each its first test image."""
    from pipeline.visualization.inputs import spread_indices

    labels = torch.arange(96).repeat(2).flip(0)  # every class twice, in reverse: index != class
    picks = spread_indices(labels, 6, 96)
    assert [int(labels[i]) for i in picks] == [0, 19, 38, 57, 76, 95]
    assert picks == [int((labels == c).nonzero()[0]) for c in (0, 19, 38, 57, 76, 95)]
    assert sorted(int(labels[i]) for i in spread_indices(labels[:3], 5, 96)) == [93, 94, 95]  # fewer classes than asked


def test_train_and_eval_hand_the_confusion_figure_the_raw_counts_and_each_heads_names(tmp_path, monkeypatch):
    """write_test_results (train.py and eval.py): each head's figure and CSV get that head's raw counts (the
    figure normalizes them itself) and that head's class names, in order; the JSON takes the main head."""
    import csv
    import json

    from pipeline.rendering import training_plots
    from pipeline.training.artifacts import write_test_results

    calls = _spy(monkeypatch, training_plots, "plot_confusion_matrix")
    counts = {"aggregate": torch.tensor([[3, 1, 0], [0, 5, 2], [1, 0, 7]]), "length": torch.tensor([[9, 2], [1, 7]])}
    module = SimpleNamespace(test_results={"aggregate": {"accuracy": 0.79, "f1_macro": 0.7},
                                           "length": {"accuracy": 0.84, "f1_macro": 0.8}},
                             main_head="aggregate", test_confusion=counts)
    metrics = write_test_results(tmp_path, module, dataset="d", model_name="m", checkpoint=None, test_images=19,
                                 class_names=["zeta", "alpha", "mu"])
    assert metrics["accuracy"] == 0.79 and metrics["f1_macro"] == 0.7
    by_head = {Path(args[2]).stem: args for args, _ in calls}
    assert set(by_head) == {"aggregate", "length"}
    for head, cm in counts.items():
        np.testing.assert_array_equal(np.asarray(by_head[head][0]), cm.numpy())  # raw counts, not row-normalized
    assert list(by_head["aggregate"][1]) == ["zeta", "alpha", "mu"]  # the dataset's order, not sorted
    assert list(by_head["length"][1]) == ["short", "long"]
    with open(tmp_path / "confusion" / "aggregate.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == ["zeta", "alpha", "mu"] and [r[1:] for r in rows[1:]] == [["3", "1", "0"], ["0", "5", "2"],
                                                                                   ["1", "0", "7"]]
    assert json.loads((tmp_path / "test_metrics.json").read_text())["heads"]["length"]["accuracy"] == 0.84
