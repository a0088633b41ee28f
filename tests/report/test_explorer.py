"""explorer.html in a real headless Chromium (tests/browser.py, the DevTools protocol over pipes): it opens from
file:// without a console error; a click on an image redraws every panel from that image's numbers (canvas pixels
compared with the HDF5 file's arrays, through matplotlib's colour maps); a click on a channel tile shows the unit's
optimized picture and dataset examples; the arrow keys step through the images. A screenshot per state is kept
(tests/browser.py: artifact_dir)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib import colormaps

from pipeline.report.explorer import write_explorer
from pipeline.storage.h5store import H5RunWriter
from tests.browser import Browser, BrowserMissing, artifact_dir, chromium_path

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="no chromium on PATH: .ci/run installs Debian's chromium package "
                                       "(apt-get install -y chromium); CNNVIS_CHROMIUM names another binary")

N, H, W, K = 4, 12, 12, 3
HEADS = {"angle": 12, "colour": 1}


def lut(name):
    return np.round(colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    """A hand-written run: 4 images, activations of two layers, Grad-CAM and saliency for two heads
    (saliency at "input"), masks, optimized pictures of conv1 and dataset examples of conv1."""
    d = tmp_path_factory.mktemp("explorer")
    g = np.random.default_rng(0)
    images = g.uniform(0, 1, (N, 3, H, W)).astype(np.float32)
    masks = np.zeros((N, H, W), bool)
    for i in range(N):
        masks[i, 3 + i, 2:9] = True
    data = {"images": images, "masks": masks,
            "conv1": g.normal(0, 1, (N, 4, H, W)).astype(np.float32),
            "pool": g.uniform(0, 3, (N, 4, 6, 6)).astype(np.float32)}
    with H5RunWriter(d / "visualization.h5", attrs={"dataset": "lines", "model": "handmade",
                                                    "jobs": ["activations", "gradcam", "units"],
                                                    "class_names": [f"c{i}" for i in range(96)]}) as w:
        w.write_inputs(images, np.arange(N) * 7, [f"test[{i}]" for i in range(N)],
                       predictions={"angle": np.arange(N) % 12, "colour": np.array([0, 1, 1, 0])},
                       probabilities={"angle": np.full((N, 12), 1 / 12, np.float32),
                                      "colour": np.array([[0.2], [0.9], [0.7], [0.1]], np.float32)})
        w.write_masks(masks)
        w.write_activations("features.conv1", data["conv1"])
        w.write_activations("features.pool", data["pool"])
        for method, layer in (("gradcam", "features.conv1"), ("saliency", "input")):
            for head in HEADS:
                m = g.uniform(0, 1, (N, H, W)).astype(np.float32)
                data[(method, head)] = m
                w.write_attribution(method, head, layer, m * 3, m, m[:, ::2, ::2], np.arange(N), np.full(N, 0.5))
        pats = g.uniform(0, 1, (4, 3, H, W)).astype(np.float32)
        data["patterns"] = pats
        w.write_filters("features.conv1", pats, np.arange(4.0), np.zeros(4), np.arange(4), np.arange(4),
                        objective="neuron")
        crops = g.integers(0, 256, (4, K, 3, 3, 3), dtype=np.uint8)
        data["crops"] = crops
        w.write_units("features.conv1", {"values": np.arange(4 * K, dtype=np.float32).reshape(4, K)[:, ::-1].copy(),
                                         "indices": np.arange(4 * K).reshape(4, K) * 5, "labels": np.zeros((4, K), int),
                                         "positions": np.ones((4, K, 2), int), "boxes": np.zeros((4, K, 4), int),
                                         "crops": crops},
                      {"kind": "channel", "k": K, "images": 100, "rf_size": 3})
    page = write_explorer(d / "visualization.h5")
    return page, data


@pytest.fixture(scope="module")
def page(run_file):
    try:
        with Browser() as b:
            p = b.new_page(width=1300, height=1000)
            p.open(run_file[0])
            p.wait_for("document.body.dataset.ready === '1'")
            yield p
    except BrowserMissing as e:  # pragma: no cover - the skipif above catches it first
        pytest.skip(str(e))


def pixels(page, selector: str) -> np.ndarray:
    """The RGB bytes of the first canvas matching ``selector``, [h, w, 3], as drawn (its own resolution)."""
    got = page.evaluate(f"""(() => {{ const c = document.querySelector({json.dumps(selector)});
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height);
        return {{w: c.width, h: c.height, data: Array.from(d.data)}}; }})()""")
    return np.array(got["data"], np.uint8).reshape(got["h"], got["w"], 4)[..., :3]


def expected_overlay(rgb: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The Grad-CAM figures' overlay (pipeline/rendering/figures.py: overlay_heatmap), from the stored bytes."""
    grey = rgb.max(axis=2) / 255.0
    grey = (grey - grey.min()) / (grey.max() - grey.min())
    q = np.clip(np.round(heat * 255), 0, 255).astype(int)
    a = 0.5 * q[..., None] / 255.0
    return np.round(((1 - a) * grey[..., None] + a * lut("jet")[q] / 255.0) * 255)


def test_opens_from_file_without_errors_and_shows_every_panel(page):
    shots = artifact_dir("explorer", None)
    page.screenshot(shots / "01_opened.png", full_page=True)
    assert page.errors() == []
    assert page.evaluate("location.protocol") == "file:"
    assert page.evaluate("document.querySelectorAll('.thumb').length") == N
    # no network: nothing but the page itself was requested
    assert page.evaluate("performance.getEntriesByType('resource').length") == 0


def test_clicking_an_image_redraws_every_panel_from_its_data(page, run_file):
    _, data = run_file
    page.click("#thumb-2")
    page.wait_for("document.body.dataset.image === '2'")
    page.screenshot(artifact_dir("explorer", None) / "02_image2.png", full_page=True)
    rgb = np.round(np.moveaxis(data["images"][2], 0, -1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(pixels(page, "#image-panel canvas"), rgb)
    # activation tiles: viridis over each layer's min..max across the run's images
    for layer, key in (("features.conv1", "conv1"), ("features.pool", "pool")):
        a = data[key]
        lo, hi = a.min(), a.max()
        for c in (0, 3):
            q = np.clip(np.round((a[2, c] - lo) / (hi - lo) * 255), 0, 255).astype(int)
            got = pixels(page, f'canvas.tile[data-layer="{layer}"][data-channel="{c}"]')
            assert np.abs(got.astype(int) - lut("viridis")[q]).max() <= 1, (layer, c)
    # attribution: every method x head, at the chosen layer (saliency has only "input"); sampled at the
    # centre of each 4x4 block of the enlarged canvas (the mask outline runs on the block edges)
    for method in ("gradcam", "saliency"):
        for head in HEADS:
            got = pixels(page, f'canvas.attr[data-method="{method}"][data-head="{head}"]')[2::4, 2::4]
            want = expected_overlay(rgb, data[(method, head)][2])
            assert np.abs(got.astype(int) - want).max() <= 2, (method, head)
    # the mask outline: magenta on the edge above the mask's first row (row 3 + 2 = 5)
    full = pixels(page, 'canvas.attr[data-method="gradcam"][data-head="angle"]')
    assert (full[5 * 4, 4 * 4 + 2] == [255, 0, 255]).all()
    assert not (full[9 * 4 + 2, 4 * 4 + 2] == [255, 0, 255]).all()
    text = page.evaluate("document.getElementById('image-panel').textContent")
    assert "colour" in text and "(0.70)" in text   # image 2's colour head: class 1 at p = 0.7
    assert page.errors() == []


def test_clicking_a_channel_shows_the_unit_picture_and_its_examples(page, run_file):
    _, data = run_file
    page.click('canvas.tile[data-layer="features.conv1"][data-channel="1"]')
    page.wait_for("document.querySelectorAll('#unit-examples .crop').length > 0")
    page.screenshot(artifact_dir("explorer", None) / "03_unit.png", full_page=True)
    assert page.evaluate("document.querySelectorAll('#unit-examples .crop').length") == K
    np.testing.assert_array_equal(pixels(page, "#unit-examples .picture canvas"),
                                  np.round(np.moveaxis(data["patterns"][1], 0, -1) * 255).astype(np.uint8))
    for j in range(K):
        np.testing.assert_array_equal(pixels(page, f"#unit-examples .crop:nth-of-type({j + 2}) canvas"),
                                      np.moveaxis(data["crops"][1, j], 0, -1))
    assert page.evaluate("document.querySelector('#unit-examples .crop canvas').dataset.index") == "15"
    # a tile of a layer without examples of its own: the pool's channel maps to conv1's unit (same count)
    page.click('canvas.tile[data-layer="features.pool"][data-channel="2"]')
    assert "features.conv1" in page.evaluate("document.querySelector('#unit-panel h2').textContent")
    assert page.evaluate("document.querySelectorAll('#unit-examples .crop').length") == K
    assert page.errors() == []


def test_arrow_keys_step_through_the_images(page, run_file):
    _, data = run_file
    page.click("#thumb-0")
    for key, want in (("ArrowRight", "1"), ("ArrowRight", "2"), ("ArrowLeft", "1"), ("ArrowLeft", "0"),
                      ("ArrowLeft", str(N - 1))):
        for kind in ("keyDown", "keyUp"):
            page.send("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": key,
                                                 "windowsVirtualKeyCode": {"ArrowRight": 39, "ArrowLeft": 37}[key]})
        page.wait_for(f"document.body.dataset.image === '{want}'")
    rgb = np.round(np.moveaxis(data["images"][N - 1], 0, -1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(pixels(page, "#image-panel canvas"), rgb)
    page.screenshot(artifact_dir("explorer", None) / "04_last_image.png", full_page=True)
    assert page.errors() == []
