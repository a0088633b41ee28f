"""job=units: the top-k test images per unit, from one streaming pass (pipeline/visualization/unit_examples.py,
pipeline/jobs/units.py), checked on a hand-built model whose units respond to known patterns, against a
brute-force top-k over the full activation tensor, and end to end on the session's tiny trained model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.errors import CnnvisError
from pipeline.storage.h5store import H5Run
from pipeline.training.lit_module import LitClassifier
from pipeline.visualize_run import run_visualize
from pipeline.visualization.unit_examples import RunningTopK, crop, receptive_field, top_unit_examples
from tests.conftest import TINY, compose_cfg

pytestmark = pytest.mark.usefixtures("one_thread")


class BarNet(nn.Module):
    """conv (3x3, padding 1): channel 0 = a horizontal 3-px bar (+1 on the middle row, -1 on the others),
    channel 1 = a vertical one; head: the two channels' maxima as the logits of class 0 and 1."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        k = -torch.ones(3, 3)
        k[1] = 1.0
        with torch.no_grad():
            self.conv.weight.copy_(torch.stack([k, k.T])[:, None])
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Flatten()

    def forward(self, x):
        return self.head(self.pool(self.conv(x)))


def bar_images(n=40, size=12, seed=0):
    """Faint noise (<= 0.02); images 5, 17, 33 hold a horizontal bar of brightness 1.0, 0.9, 0.8
    centred at known places, images 8, 21 a vertical one (1.0, 0.85). Returns uint8 images, labels, bars."""
    g = np.random.default_rng(seed)
    x = g.uniform(0, 0.02, (n, 1, size, size))
    bars = {5: ("h", 1.0, (3, 4)), 17: ("h", 0.9, (0, 9)), 33: ("h", 0.8, (10, 6)),
            8: ("v", 1.0, (6, 1)), 21: ("v", 0.85, (2, 10))}
    for i, (kind, b, (y, xx)) in bars.items():
        if kind == "h":
            x[i, 0, y, xx - 1:xx + 2] = b
        else:
            x[i, 0, y - 1:y + 2, xx] = b
    labels = torch.tensor([0 if bars.get(i, ("", 0, 0))[0] == "h" else 1 for i in range(n)])
    return torch.from_numpy(np.round(x * 255).astype(np.uint8)), labels, bars


@pytest.mark.parametrize("batch_size", [1, 7, 40])
def test_top_examples_are_the_images_with_the_pattern(batch_size):
    net = BarNet().eval()
    images, labels, bars = bar_images()
    ex = top_unit_examples(net, images, labels, ["conv", "head"], k=3, batch_size=batch_size)
    conv = ex["conv"]
    # channel 0: the three horizontal-bar images, brightest first; channel 1: the two vertical ones first
    assert conv.indices[0].tolist() == [5, 17, 33]
    assert conv.indices[1, :2].tolist() == [8, 21]
    # the maximum sits on the bar's centre, and the crop (3x3 receptive field) is the bar itself
    for c, row in ((0, [5, 17, 33]), (1, [8, 21])):
        for j, i in enumerate(row):
            assert tuple(conv.positions[c, j]) == bars[i][2]
            y, xx = bars[i][2]
            expect = crop(images[i].numpy(), (y - 1, xx - 1, y + 2, xx + 2))
            np.testing.assert_array_equal(conv.crops[c, j], expect)
            line = expect[0, 1] if c == 0 else expect[0, :, 1]
            assert (line == round(bars[i][1] * 255)).all()
    assert conv.values[0, 0] == pytest.approx(3.0, abs=0.1)  # three lit pixels on the kernel's +1 row
    assert conv.kind == "channel" and conv.field.size == 3 and conv.boxes.shape == (2, 3, 4)
    # the head's classes: class 0 is the horizontal channel's maximum, so the same images rank first
    head = ex["head"]
    assert head.kind == "class" and head.indices[0].tolist() == [5, 17, 33]
    assert head.indices[1, :2].tolist() == [8, 21]
    assert (head.positions == -1).all() and head.crops.shape == (2, 3, 1, 12, 12)
    np.testing.assert_array_equal(head.crops[0, 0], images[5].numpy())
    assert head.labels[0].tolist() == [0, 0, 0]


def test_streaming_equals_the_full_tensor_topk():
    """Oracle: the top-k of the whole [N, C, H, W] activation tensor, computed at once."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(5, 4, 3)).eval()
    images = torch.randint(0, 256, (50, 3, 10, 10), dtype=torch.uint8)
    with torch.no_grad():
        a = net[:1](images.float() / 255)
        b = net(images.float() / 255)
    for name, full in (("0", a), ("3", b)):
        ex = top_unit_examples(net, images, torch.zeros(50, dtype=torch.long), [name], k=6, batch_size=8)[name]
        flat = full.flatten(2)
        m, arg = flat.max(2)                                     # [N, C]
        top = torch.topk(m.T, 6, dim=1)
        np.testing.assert_array_equal(ex.indices, top.indices.numpy())
        np.testing.assert_allclose(ex.values, top.values.numpy(), rtol=1e-5)
        w = full.shape[-1]
        for c in range(full.shape[1]):
            for j, i in enumerate(top.indices[c].tolist()):
                assert tuple(ex.positions[c, j]) == (int(arg[i, c]) // w, int(arg[i, c]) % w)


def test_running_topk_keeps_the_earlier_image_on_ties():
    t = RunningTopK(units=1, k=2)
    t.update(torch.tensor([[1.0], [2.0]]), torch.zeros(2, 1, 2, dtype=torch.long), 0)
    t.update(torch.tensor([[2.0], [2.0]]), torch.zeros(2, 1, 2, dtype=torch.long), 2)
    assert t.indices[0].tolist() == [1, 2] and t.values[0].tolist() == [2.0, 2.0]


def test_receptive_field_and_crops_past_the_border():
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, padding=1)).eval()
    rf = receptive_field(net, "2", (1, 12, 12))
    # a 3x3 conv, a 2x2 pool and a 3x3 conv: 3 + 1 + 2 * 2 = 8 px, step 2, cell 0 centred at pixel 0.5
    assert (rf.size, rf.jump, rf.start) == (8, 2.0, 0.5)
    assert rf.box(0, 0) == (-3, -3, 5, 5)
    image = np.arange(1, 1 + 2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    c = crop(image, (-1, 2, 2, 6))
    assert c.shape == (2, 3, 4)
    assert (c[:, 0] == 0).all() and (c[:, :, 2:] == 0).all()
    np.testing.assert_array_equal(c[:, 1:, :2], image[:, :2, 2:])


# ---- the job, end to end on the session's tiny trained multihead (tests/conftest.py)
def vis_cfg(root: Path, extra: list[str]):
    return compose_cfg(root, [*TINY["lines"], "search_cut_short=true", *extra], config_name="visualize")


def test_units_job_writes_the_store_figures_and_explorer(tiny_trained):
    root, runs = tiny_trained
    cfg = vis_cfg(root, ["job=units", "units.k=3", "units.batch_size=50"])
    summary = run_visualize(cfg)
    run_dir = Path(cfg.paths.output_dir)
    net = LitClassifier.load_from_checkpoint(runs[("lines", "multihead")]["best_checkpoint"]).net.eval()
    from pipeline.visualization.context import load_context

    test = load_context(cfg).datamodule.test
    with H5Run(run_dir / "visualization.h5") as h5:
        assert h5.unit_layers() == ["features.conv1", "features.conv2", "features.conv3",
                                    "heads.length", "heads.width", "heads.angle", "heads.colour"]
        u = h5.units("features.conv3")
        assert u["values"].shape == (64, 3) and u["positions"].shape == (64, 3, 2)
        assert u["crops"].shape == (64, 3, 3, 10, 10) and u["attrs"]["rf_size"] == 10
        # every test image is ranked once however often it repeats (the course's data repeats images)
        distinct = {bytes(im.numpy().tobytes()) for im in test.images}
        assert u["attrs"]["images"] == len(distinct) <= len(test.labels)
        for row in u["indices"]:
            assert len({bytes(test.images[int(i)].numpy().tobytes()) for i in row}) == len(row)
        first = {}
        for i, im in enumerate(test.images):
            first.setdefault(bytes(im.numpy().tobytes()), i)
        assert set(u["indices"].ravel().tolist()) <= set(first.values())  # a copy's first test index
        # oracle: a direct forward of the named test images gives the stored value at the stored position
        x = test.images[torch.from_numpy(u["indices"][:, 0])].float() / 255
        with torch.no_grad():
            acts = net.features[:8](x)  # conv1 .. conv3
        for c in range(64):
            y, xx = u["positions"][c, 0]
            assert float(acts[c, c, y, xx]) == pytest.approx(float(u["values"][c, 0]), rel=1e-4, abs=1e-5)
            assert float(acts[c, c].max()) == pytest.approx(float(u["values"][c, 0]), rel=1e-4, abs=1e-5)
        np.testing.assert_array_equal(u["labels"], test.labels[torch.from_numpy(u["indices"])].numpy())
        angle = h5.units("heads.angle")
        assert angle["values"].shape == (12, 3) and angle["attrs"]["kind"] == "class"
        assert len(angle["attrs"]["class_names"]) == 12
    figs = sorted(p.name for p in (run_dir / "figures" / "units").glob("*.png"))
    assert figs == sorted(f"{n}.png" for n in ["features.conv1", "features.conv2", "features.conv3", "heads.length",
                                               "heads.width", "heads.angle", "heads.colour"])
    report = (run_dir / "index.html").read_text()
    assert "Dataset examples per unit" in report and "explorer.html" in report
    # the run's explorer page carries the same examples (pipeline/report/explorer.py)
    import json
    import re

    page = (run_dir / "explorer.html").read_text()
    data = json.loads(re.search(r'<script id="explorer-data" type="application/json">(.*?)</script>', page,
                                re.S).group(1).replace("<\\/", "</"))
    with H5Run(run_dir / "visualization.h5") as h5:
        assert data["units"]["features.conv3"]["indices"] == h5.units("features.conv3")["indices"].tolist()
    assert summary["key_numbers"]["units top-3 precision heads.angle"] >= 0


@pytest.mark.parametrize("overrides, needle", [
    (["job=units", "units.k=0"], "units.k=0 is invalid"),
    (["job=units", "layer=features.relu1"], "neither a convolution layer nor a head"),
    (["job=units", "units.k=many"], "units.k"),   # typed by UnitsJob's keyword arguments
])
def test_bad_units_settings_fail_before_any_work(tiny_trained, overrides, needle):
    root, _ = tiny_trained
    cfg = vis_cfg(root, overrides)
    with pytest.raises(CnnvisError, match=needle.replace(".", r"\.")):
        run_visualize(cfg)
    assert not (Path(cfg.paths.output_dir) / "visualization.h5").exists()


def test_unit_figure_rows_blocks_and_nearest_upscale(tmp_path):
    from PIL import Image

    from pipeline.rendering.unit_figures import ROWS_PER_BLOCK, render_unit_figure, upscale

    img = np.arange(6).reshape(2, 3)
    up = upscale(np.stack([img] * 3, axis=-1), 6)   # [2, 3, 3] -> [6, 6, 3]: each pixel a 3x2 block
    assert up.shape == (6, 6, 3) and (up[:3, :2] == img[0, 0]).all() and (up[3:, 4:] == img[1, 2]).all()
    assert (up[:3, 2:4] == img[0, 1]).all() and (up[3:, :2] == img[1, 0]).all()
    crops = np.full((ROWS_PER_BLOCK, 8, 1, 3, 3), 200, np.uint8)
    sizes = {}
    for units in (ROWS_PER_BLOCK, 2 * ROWS_PER_BLOCK):
        c = np.concatenate([crops] * (units // ROWS_PER_BLOCK))
        path = render_unit_figure(c, np.ones((units, 8)), np.zeros((units, 8), int), ["zero"], tmp_path / f"{units}.png",
                                  "t", pictures={0: np.zeros((1, 5, 5))})
        sizes[units] = Image.open(path).size
    # twice the units: a second block of rows beside the first (wider, as tall), not twice as tall
    (w1, h1), (w2, h2) = sizes[ROWS_PER_BLOCK], sizes[2 * ROWS_PER_BLOCK]
    assert w2 > 1.7 * w1 and abs(h2 - h1) <= 0.05 * h1
