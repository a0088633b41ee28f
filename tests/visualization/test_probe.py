"""job=probe, the shortcut probe: redrawing reproduces the test images, each factor changes what
it says, the stored accuracies equal an independent recomputation, a brightness shortcut is
caught and named, the image-level path (MNIST), bad input, and the CLI end to end."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from torch import nn

from pipeline.data.line_geometry import measure_lines
from pipeline.data.line_render import jpeg_roundtrip
from pipeline.data.line_render import gaussian_blur
from pipeline.data.line_styles import centre_range, get_style, render
from pipeline.data.lines_labels import HEADS as LINES_HEADS
from pipeline.data.lines_labels import decode_label
from pipeline.errors import CnnvisError
from pipeline.evaluation.probe_factors import changed_params, transform_images
from pipeline.evaluation.probe_observations import probe_observations
from pipeline.evaluation.sampling import evaluation_sample
from pipeline.jobs.base import execute
from pipeline.storage.h5store import H5Run, H5RunWriter
from pipeline.visualization.context import VisContext
from tests.conftest import QUIET_TRAINER, TINY, compose_cfg, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


# -- hand-made models ----------------------------------------------------------------------------
class LineStats(nn.Module):
    """Reads simple image statistics: length = total intensity - ``length_threshold`` (a
    brightness shortcut by construction); width = bright-pixel count - ``width_threshold``;
    angle = a fixed random projection; colour = blue minus red. ``only_length`` makes the
    other heads constant."""

    def __init__(self, length_threshold: float, width_threshold: float = 30.0, only_length: bool = False):
        super().__init__()
        self.t_len, self.t_w, self.only_length = float(length_threshold), float(width_threshold), only_length
        self.register_buffer("proj", torch.randn(12, 3 * 28 * 28, generator=torch.Generator().manual_seed(0)))
        self.head_classes = dict(LINES_HEADS)

    def forward(self, x):
        n = len(x)
        length = (x.sum((1, 2, 3)) - self.t_len)[:, None]
        if self.only_length:
            return {"length": length, "width": torch.zeros(n, 1), "angle": torch.zeros(n, 12),
                    "colour": torch.zeros(n, 1)}
        width = ((x.amax(1) > 0.5).sum((1, 2)).float() - self.t_w)[:, None]
        angle = x.flatten(1) @ self.proj.T
        colour = (x[:, 2].sum((1, 2)) - x[:, 0].sum((1, 2)))[:, None]
        return {"length": length, "width": width, "angle": angle, "colour": colour}


class TinyDigits(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.fc = nn.Linear(64, 10)
        self.head_classes = {"class": 10}

    def forward(self, x):
        return self.fc(self.features(x) * 20)


# -- fixtures ------------------------------------------------------------------------------------
def _cfg(root: Path, dataset: str, extra=(), data_extra=()):
    data = [*TINY[dataset], *data_extra] + (["data.cache_dir=null"] if dataset == "lines" else [])
    return compose_cfg(root, [*data, "job=probe", *extra], config_name="visualize")


def _ctx(cfg, net, dm=None) -> VisContext:
    if dm is None:
        dm = hydra.utils.instantiate(cfg.data)
        dm.setup()
    return VisContext(net=net.eval(), model_name="handmade", dataset_name=dm.name, class_names=list(dm.class_names),
                      head_classes=dict(net.head_classes), ckpt=Path("handmade.ckpt"), train_run_dir=None,
                      train_metrics=None, datamodule=dm, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def lines_dms(tmp_path_factory):
    """The tiny lines datamodule in both styles (set up), with their configs' root."""
    root = tmp_path_factory.mktemp("probe_lines")
    out = {}
    for style in ("course", "sheet"):
        # the sheet style with augmentation fails in draw_params (it has no centre distribution): off here
        extra = [f"data.style={style}"] + (["data.augment.enabled=false"] if style == "sheet" else [])
        dm = hydra.utils.instantiate(_cfg(root, "lines", data_extra=extra).data)
        dm.setup()
        out[style] = dm
    return root, out


def _job(cfg, ctx):
    """The probe job as visualize.py builds it: its config block, instantiated, called with the context."""
    return hydra.utils.instantiate(cfg.probe)(ctx, layers=None, seed=cfg.seed)


def _run(cfg, ctx, tmp_path: Path, name="v.h5"):
    job = _job(cfg, ctx)
    with H5RunWriter(tmp_path / name) as writer:
        section = execute(job, None, writer, tmp_path, tmp_path / "figures", 64)
    return section


def _sample(dm, n=2000, seed=0):
    idx = evaluation_sample(dm.test.labels, n, seed).numpy()
    return idx, dm.render_params("test").subset(idx)


# -- redrawing -----------------------------------------------------------------------------------
@pytest.mark.parametrize("style", ["course", "sheet"])
def test_redrawing_the_sample_unchanged_gives_the_stored_test_images(lines_dms, style):
    _, dms = lines_dms
    dm = dms[style]
    idx, params = _sample(dm)
    assert len(idx) == len(dm.test) and len(np.unique(dm.test.labels[idx].numpy())) == 96  # every class
    images, masks = render(params, dm.image_size)
    assert np.array_equal(images, dm.test.images[idx].numpy())
    assert np.array_equal(masks, dm.test.masks[idx].numpy())


def test_each_factor_changes_what_it_says(lines_dms):
    _, dms = lines_dms
    for style, dm in dms.items():
        idx, p = _sample(dm)
        s, margin = dm.image_size, dm.margin
        base, base_masks = render(p, s)
        # brightness scales the intensities before the JPEG round trip, nothing else
        q = changed_params(p, "brightness", 0.7, s, margin)
        np.testing.assert_allclose(q.brightness, 0.7 * p.brightness)
        pre = render(p.replace(jpeg_quality=np.zeros(len(p), dtype=np.int64)), s)[0].astype(float)
        pre07 = render(q.replace(jpeg_quality=np.zeros(len(q), dtype=np.int64)), s)[0].astype(float)
        assert np.abs(pre07 - 0.7 * pre).max() <= 1.0
        assert np.array_equal(render(q, s)[1], base_masks)
        # JPEG: the quality replaced, the subsampling kept; the sheet style gets 4:4:4
        q = changed_params(p, "jpeg", 50, s, margin)
        assert (q.jpeg_quality == 50).all() and np.array_equal(q.jpeg_420, p.jpeg_420)
        if style == "sheet":
            assert np.array_equal(render(q, s)[0], jpeg_roundtrip(base, 50, subsampling="4:4:4"))
        # blur replaces the style's sigma; a hard-edged line is drawn hard, then blurred
        q = changed_params(p, "blur", 1.0, s, margin)
        assert (q.blur == 1.0).all()
        if style == "sheet":
            hard = torch.from_numpy(base_masks).float()
            expected = np.rint(gaussian_blur(hard, np.ones(len(p))).numpy() * 255)
            chan = render(q, s)[0][np.arange(len(p)), p.channels]
            assert np.abs(chan - expected).max() <= 1
        # width / length +1 px: measured from the pixels, about 1 px wider / longer
        base_m = measure_lines(base)
        for factor in ("width", "length"):
            m = measure_lines(render(changed_params(p, factor, 1.0, s, margin), s)[0])
            gain = np.median(m[factor] - base_m[factor])
            assert 0.6 < gain < 1.4, (style, factor, gain)
            other = "length" if factor == "width" else "width"
            assert abs(np.median(m[other] - base_m[other])) < 0.3
        # centre -> a corner of the valid range, round robin; the line stays inside the image
        q = changed_params(p, "centre", 1.0, s, margin)
        lo, hi = centre_range(p, s, margin)   # lines: valid_centre_range; the course's blocks: whole-pixel moves
        for k, (right, down) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
            sel = np.arange(k, len(p), 4)
            np.testing.assert_allclose(q.centres[sel, 0], (hi if right else lo)[sel, 0])
            np.testing.assert_allclose(q.centres[sel, 1], (hi if down else lo)[sel, 1])
        images, masks = render(q, s)
        assert not masks[:, [0, -1], :].any() and not masks[:, :, [0, -1]].any()
        assert (masks.sum((1, 2)) > 0).all()
        m = measure_lines(images)
        err = np.abs(np.stack([m["centre_x"], m["centre_y"]], 1) - q.centres)  # hard edges: pixel-quantized
        assert err.mean() < 0.15 and err.max() < 0.6, (style, err.mean(), err.max())
        half = changed_params(p, "centre", 0.5, s, margin)
        np.testing.assert_allclose(half.centres, (p.centres + q.centres) / 2)
        # the identity levels leave the parameters as drawn
        for factor, level in (("brightness", 1.0), ("width", 0.0), ("length", 0.0), ("centre", 0.0)):
            r = changed_params(p, factor, level, s, margin)
            assert np.array_equal(render(r, s)[0], base)


# -- the job's numbers -----------------------------------------------------------------------------
def _my_accuracy(net, images_u8: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    with torch.no_grad():
        out = net(torch.from_numpy(images_u8).float() / 255)
    parts = decode_label(labels)
    right = {}
    for h, logits in out.items():
        pred = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
        right[h] = pred.numpy() == parts[h]
    acc = {h: float(v.mean()) for h, v in right.items()}
    acc["aggregate"] = float(np.logical_and.reduce(list(right.values())).mean())
    return acc


def _length_threshold(dm) -> float:
    total = dm.test.images.float().sum((1, 2, 3)).numpy() / 255
    parts = decode_label(dm.test.labels.numpy())
    thick = parts["width"] == 1
    return float((total[thick & (parts["length"] == 0)].mean() + total[thick & (parts["length"] == 1)].mean()) / 2)


def test_stored_accuracies_equal_an_independent_recomputation(lines_dms, tmp_path):
    root, dms = lines_dms
    dm = dms["course"]
    net = LineStats(_length_threshold(dm)).eval()
    cfg = _cfg(root, "lines", ["probe.num_images=150"])
    section = _run(cfg, _ctx(cfg, net, dm), tmp_path)
    s, margin = dm.image_size, dm.margin
    with H5Run(tmp_path / "v.h5") as h5:
        idx = h5.probe_indices()["indices"]
        assert len(idx) == 150 and h5.probe_indices()["attrs"]["differs_from_stored"] == 0
        assert h5.probe_factors() == ["baseline", "brightness", "blur", "jpeg", "width", "length", "centre"]
        labels = dm.test.labels[idx].numpy()
        p = dm.render_params("test").subset(idx)
        n = len(p)
        lo, hi = centre_range(p, s, margin)
        corner = np.stack([np.where(np.arange(n) % 2 == 1, hi[:, 0], lo[:, 0]),
                           np.where(np.arange(n) % 4 >= 2, hi[:, 1], lo[:, 1])], 1)
        redraw = {
            "baseline": lambda v: p,
            "brightness": lambda v: p.replace(brightness=p.brightness * v),
            "blur": lambda v: p.replace(blur=np.full(n, v)),
            "jpeg": lambda v: p.replace(jpeg_quality=np.full(n, int(v))),
            "width": lambda v: p.replace(widths=p.widths + v),
            "length": lambda v: p.replace(lengths=p.lengths + v),
            "centre": lambda v: p.replace(centres=p.centres + v * (corner - p.centres)),
        }
        varied = set()
        for factor, make in redraw.items():
            got = h5.probe(factor)
            assert got["attrs"]["images"] == 150
            for i, level in enumerate(got["levels"]):
                mine = _my_accuracy(net, render(make(level), s)[0], labels)
                for head, value in mine.items():
                    assert got["accuracy"][head][i] == pytest.approx(value, abs=1e-12), (factor, level, head)
                varied.add(round(mine["width"], 6))
        assert len(varied) > 3  # the hand-made heads do respond to the factors
        assert [float(v) for v in h5.probe("jpeg")["levels"]] == [95, 75, 50]
        assert h5.probe("centre")["level_names"] == ["as drawn", "corner"]
    with open(tmp_path / "probe.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 + 3 + 3 + 3 + 2 + 2 + 2
    assert list(rows[0]) == ["factor", "level", "level_name", "images",
                             "length", "width", "angle", "colour", "aggregate"]
    assert (tmp_path / "figures" / "probe" / "accuracy.png").stat().st_size > 10_000
    assert section.title == "Shortcut probe" and len(section.tables[0].rows) == len(rows)


def test_a_brightness_shortcut_is_caught_and_named(lines_dms, tmp_path):
    root, dms = lines_dms
    dm = dms["course"]
    net = LineStats(_length_threshold(dm), only_length=True)
    cfg = _cfg(root, "lines", ["probe.only=[brightness,blur]"])
    section = _run(cfg, _ctx(cfg, net, dm), tmp_path)
    with H5Run(tmp_path / "v.h5") as h5:
        assert h5.probe_factors() == ["baseline", "brightness", "blur"]
        base = h5.probe("baseline")["accuracy"]["length"][0]
        length = h5.probe("brightness")["accuracy"]["length"]
    assert length[0] == base > 0.7 and length[2] < base - 0.15
    text = " ".join(section.observations)
    assert re.search(r"length accuracy falls to [\d.]+ % when the image is dimmed to x0\.7 \(-[\d.]+ points", text)
    assert "the length head uses brightness" in text
    assert "the colour head" not in text  # a constant head loses nothing
    assert "reproduces the stored images exactly" in text


def test_observation_wording_from_numbers():
    from pipeline.evaluation.probe import FactorResult

    def res(factor, levels, names, acc):
        return FactorResult(factor, levels, names, {h: np.asarray(v) for h, v in acc.items()}, 100)

    course = get_style("soft")   # the anti-aliased style's 1.4 / 3.8 px widths
    base = res("baseline", [np.nan], ["as drawn"], {"length": [1.0], "width": [1.0], "aggregate": [1.0]})
    robust = [base, res("brightness", [1, 0.7], ["x1", "x0.7"], {"length": [1, 0.97], "width": [1, 0.99],
                                                                   "aggregate": [1, 0.96]})]
    obs = probe_observations(robust, {"images": 100, "redrawn": True}, style=course)
    assert any("Every head stays at or above 95.0 % at every level" in o and "length 97.0 % at brightness x0.7" in o
               for o in obs)
    widths = [base, res("width", [0, 1], ["+0 px", "+1 px"], {"length": [1, 0.99], "width": [1, 0.6],
                                                             "aggregate": [1, 0.6]})]
    obs = " ".join(probe_observations(widths, {"images": 100, "redrawn": True}, style=course))
    assert "width accuracy falls to 60.0 % when the line is drawn 1 px wider" in obs
    assert "1.4 to 2.4 px, 42% of the way to thick (3.8 px)" in obs and "not a shortcut" in obs
    assert "Apart from the class-boundary levels above, every head stays at or above 95.0 %" in obs
    lengths = [base, res("length", [0, 1], ["+0 px", "+1 px"], {"length": [1, 0.8], "width": [1, 1],
                                                               "aggregate": [1, 0.8]})]
    obs = " ".join(probe_observations(lengths, {"images": 100, "redrawn": True}, style=get_style("sheet")))
    assert "the length head is fragile: 7 -> 8 px is still clearly short" in obs and "boundary" not in obs


# -- the image-level path (MNIST) ---------------------------------------------------------------------
def test_mnist_probe_uses_image_level_factors(tmp_path):
    cfg = _cfg(tmp_path, "mnist", ["probe.num_images=120"])
    net = TinyDigits().eval()
    ctx = _ctx(cfg, net)
    section = _run(cfg, ctx, tmp_path)
    test = ctx.datamodule.test
    with H5Run(tmp_path / "v.h5") as h5:
        assert h5.probe_factors() == ["baseline", "brightness", "blur", "shift"]
        idx = h5.probe_indices()["indices"]
        assert not h5.probe_indices()["attrs"]["redrawn"]
        x, y = test.images[idx].float() / 255, test.labels[idx]

        def mine(images):
            with torch.no_grad():
                return float((net(images).argmax(1) == y).double().mean())

        def shifted(images, s):
            out = torch.zeros_like(images)
            for i in range(len(images)):
                dx, dy = [(-s, -s), (s, -s), (-s, s), (s, s)][i % 4]
                for r in range(28):
                    for c in range(28):
                        if 0 <= r - dy < 28 and 0 <= c - dx < 28:
                            out[i, :, r, c] = images[i, :, r - dy, c - dx]
            return out

        expected = {
            "baseline": lambda v: x,
            "brightness": lambda v: (x * v).clamp(0, 1),
            "blur": lambda v: gaussian_blur(x[:, 0], np.full(len(x), v))[:, None],
            "shift": lambda v: shifted(x, int(v)),
        }
        for factor, make in expected.items():
            got = h5.probe(factor)
            assert list(got["accuracy"]) == ["class"]
            for i, level in enumerate(got["levels"]):
                assert got["accuracy"]["class"][i] == pytest.approx(mine(make(level)), abs=1e-12), (factor, level)
        assert h5.probe("shift")["level_names"] == ["0 px", "2 px", "4 px"]
    assert torch.equal(transform_images(test.images[idx], "shift", 2), shifted(x, 2))
    assert any("Not applicable to mnist: jpeg, width, length, centre" in p for p in section.paragraphs)


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("override,needle", [
    ("+probe.factors.sharpness=[1,2]", "unknown factor sharpness; valid factors: brightness, blur, jpeg"),
    ("probe.factors.blur=[]", "probe.factors.blur=[] is invalid: give a non-empty list of levels"),
    ("probe.factors.brightness=[1,0]", "a brightness factor must be > 0"),
    ("probe.factors.brightness=[1,-0.5]", "a brightness factor must be > 0"),
    ("probe.factors.jpeg=[95,0]", "a JPEG quality must be an integer in 1..100"),
    ("probe.factors.jpeg=[101]", "a JPEG quality must be an integer in 1..100"),
    ("probe.factors.jpeg=[75.5]", "a JPEG quality must be an integer in 1..100"),
    ("probe.factors.centre=[0,2]", "share of the way to a corner"),
    ("probe.factors.width=[0,-2]", "would drop below"),
    ("probe.factors.blur=[a]", "levels must be numbers"),
    ("probe.only=[jpeg,shift]", "probe.only=['jpeg', 'shift'] is invalid"),
    ("probe.num_images=0", "probe.num_images=0 is invalid"),
    ("probe.min_drop=0", "probe.min_drop=0"),
])
def test_bad_input_is_a_clear_error_before_any_work(lines_dms, tmp_path, override, needle):
    root, dms = lines_dms
    cfg = _cfg(root, "lines", [override])
    with pytest.raises(CnnvisError, match=re.escape(needle)):
        _job(cfg, _ctx(cfg, LineStats(0.0), dms["course"]))


# -- storage round trip ------------------------------------------------------------------------------
def test_h5_probe_writer_and_reader(tmp_path):
    with H5RunWriter(tmp_path / "p.h5") as w:
        w.write_probe_indices([5, 3, 9], attrs={"images": 3, "style": None})
        w.write_probe("baseline", [np.nan], ["as drawn"], {"class": [0.5]})
        w.write_probe("blur", [0, 1.5], ["sigma 0", "sigma 1.5"], {"class": [0.5, 0.25]}, attrs={"images": 3})
        with pytest.raises(ValueError, match="2 accuracies for 3 levels"):
            w.write_probe("jpeg", [95, 75, 50], ["q95", "q75", "q50"], {"class": [1, 1]})
    with H5Run(tmp_path / "p.h5") as r:
        assert r.probe_factors() == ["baseline", "blur"]
        assert r.probe_indices()["indices"].tolist() == [5, 3, 9] and r.probe_indices()["attrs"]["style"] is None
        b = r.probe("blur")
        assert b["levels"].tolist() == [0, 1.5] and b["level_names"] == ["sigma 0", "sigma 1.5"]
        assert b["accuracy"]["class"].tolist() == [0.5, 0.25] and b["attrs"]["images"] == 3
        with pytest.raises(KeyError, match="no probe factor 'shift'"):
            r.probe("shift")


# -- end to end ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_lines(tmp_path_factory):
    from pipeline.training.train import run_training

    root = tmp_path_factory.mktemp("probe_cli")
    cfg = compose_cfg(root, [*TINY["lines"], "model=multihead", *QUIET_TRAINER])
    return root, run_training(cfg)["best_checkpoint"]


def test_cli_probe_writes_store_csv_figure_and_report(trained_lines):
    root, ckpt = trained_lines
    proc = run_cli("visualize.py", ["job=probe", f"ckpt={ckpt}", f"paths.root_dir={root}", *TINY["lines"],
                                    "probe.num_images=120"], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = next((root / "outputs" / "visualize" / "lines" / "probe").iterdir())
    with H5Run(run_dir / "visualization.h5") as h5:
        assert h5.probe_factors() == ["baseline", "brightness", "blur", "jpeg", "width", "length", "centre"]
        acc = h5.probe("brightness")["accuracy"]
        assert list(acc) == ["length", "width", "angle", "colour", "aggregate"]
        assert all(((a >= 0) & (a <= 1)).all() and a.shape == (3,) for a in acc.values())
    with open(run_dir / "probe.csv") as f:
        assert len(list(csv.DictReader(f))) == 16
    assert (run_dir / "figures" / "probe" / "accuracy.png").is_file()
    html = (run_dir / "index.html").read_text()
    assert "Shortcut probe" in html and "figures/probe/accuracy.png" in html
    assert "reproduces the stored images exactly" in html


def test_cli_unknown_factor_exits_with_a_clear_message(trained_lines):
    root, ckpt = trained_lines
    proc = run_cli("visualize.py", ["job=probe", f"ckpt={ckpt}", f"paths.root_dir={root}", *TINY["lines"],
                                    "+probe.factors.contrast=[1,2]", f"hydra.run.dir={root / 'bad_run'}"], cwd=root)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "unknown factor contrast" in proc.stderr and "Traceback" not in proc.stderr
    assert not (root / "bad_run" / "visualization.h5").exists()
