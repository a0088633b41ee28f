"""The visualize job end to end on tiny trained models: HDF5 content, figures, report, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.attribution.gradcam import GradCAM
from pipeline.attribution.gradcam_plus_plus import GradCAMPlusPlus
from pipeline.attribution.guided import GuidedGradCAM
from pipeline.attribution.hirescam import HiResCAM
from pipeline.attribution.integrated_gradients import IntegratedGradients
from pipeline.attribution.layercam import LayerCAM
from pipeline.attribution.saliency import Saliency
from pipeline.attribution.scorecam import ScoreCAM
from pipeline.attribution.smoothgrad import SmoothGrad
from pipeline.errors import CnnvisError, NoCheckpointError
from pipeline.storage.h5store import H5Run
from pipeline.training.lit_module import LitClassifier
from pipeline.visualization.layers import UnknownLayerError
from pipeline.visualize_run import run_visualize
from tests.conftest import TINY, compose_cfg

FAST_FILTERS = ["filters.steps=8", "filters.max_filters=6", "filters.top=4"]


@pytest.fixture(scope="module")
def trained(tiny_trained):
    """The session's tiny multihead (lines) and cnn_basic (mnist) runs (tests/conftest.py)."""
    return tiny_trained


def vis_cfg(root: Path, dataset: str, extra: list[str]):
    return compose_cfg(root, [*TINY[dataset], "search_cut_short=true", *extra], config_name="visualize")  # tiny runs are cut short


def test_all_jobs_write_store_figures_and_report(trained):
    root, runs = trained
    cfg = vis_cfg(root, "lines", ["job=all", *FAST_FILTERS])
    summary = run_visualize(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert summary["model"] == "multihead" and summary["images"] == 6
    net = LitClassifier.load_from_checkpoint(runs[("lines", "multihead")]["best_checkpoint"]).net.eval()
    with H5Run(run_dir / "visualization.h5") as h5:
        inputs = h5.inputs()
        x = torch.from_numpy(inputs["images"])
        assert x.shape == (6, 3, 28, 28)
        # six test images from six different classes
        assert len(set(inputs["labels"].tolist())) == 6
        # activations in HDF5 equal a direct forward pass; layer names round-trip
        layers = h5.activation_layers()
        assert layers == ["features.conv1", "features.relu1", "features.conv2", "features.relu2",
                          "features.pool2", "features.conv3", "features.relu3"]
        with torch.no_grad():
            direct = net.features[:1](x)
            np.testing.assert_allclose(h5.activations("features.conv1"), direct.numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(h5.activations("features.relu3"), net.features[:-1](x).numpy(), rtol=1e-5, atol=1e-6)
        assert h5.attribution_methods() == ["gradcam"]
        assert set(h5.attribution_heads("gradcam")) == {"length", "width", "angle", "colour"}
        cam = h5.attribution("gradcam", "angle", "features.conv3")
        assert cam["maps"].shape == (6, 28, 28) and np.isfinite(cam["maps"]).all()
        assert cam["layer_maps"].shape == (6, 14, 14)
        # oracle: every head's stored maps and targets equal a direct call of GradCAM on the stored inputs
        direct = GradCAM(net, "features.conv3")(x)
        for head in ["length", "width", "angle", "colour"]:
            stored = h5.attribution("gradcam", head, "features.conv3")
            np.testing.assert_allclose(stored["maps"], direct[head].maps.numpy(), rtol=1e-5, atol=1e-7)
            assert stored["targets"].tolist() == direct[head].targets.tolist()
        filt = h5.filters("features.conv1", "neuron")  # conv1 reads the image: its kernels in closed form
        assert filt["patterns"].shape == (6, 3, 28, 28)
        # the sweep index's key numbers are the stored numbers' means
        keys = summary["key_numbers"]
        assert keys["features.conv1: mean neuron score"] == pytest.approx(float(filt["scores"].mean()), rel=1e-6)
        with h5py.File(run_dir / "visualization.h5") as f:
            assert keys["heads.angle: mean p of own class"] == pytest.approx(
                float(f["filters/heads.angle/class/probs"][()].mean()), rel=1e-6)
            probs = [f[f"attribution/gradcam/{h}/features.conv3/probs"][()] for h in ("length", "width", "angle", "colour")]
        assert keys["mean probability of the explained class"] == pytest.approx(float(np.mean(probs)), rel=1e-6)
        assert 0 < keys["mean energy on the line"] < 1 and "mean pointing game" in keys
        assert h5.attrs["model"] == "multihead" and "features.conv3" in h5.attrs["layer_names"]
    with h5py.File(run_dir / "visualization.h5") as f:
        assert f["activations/features.conv1"].chunks == (1, 16, 28, 28)
        assert f["masks"].shape == (6, 28, 28)
        np.testing.assert_array_equal(f["masks"][()], H5Run(run_dir / "visualization.h5").inputs()["masks"])
    # one activation figure per (image, layer), gradcam per head, filters all + top
    assert len(list((run_dir / "figures" / "activations").rglob("*.png"))) == 6 * len(layers)
    assert len(list((run_dir / "figures" / "attribution" / "gradcam" / "angle").rglob("image*.png"))) == 6
    assert (run_dir / "figures" / "filters" / "features.conv1_neuron_top4.png").is_file()
    assert not (run_dir / "figures.partial").exists() and not list(run_dir.glob("*.partial*"))
    html = (run_dir / "index.html").read_text()
    for src in __import__("re").findall(r'<img[^>]+src="([^"]+)"', html):
        assert (run_dir / src).resolve().is_file(), src
    assert "heatmap mass lies on the line" in html
    assert json.loads((run_dir / "summary.json").read_text())["dataset"] == "lines"


def test_chosen_images_layers_and_files(trained, tmp_path):
    root, _ = trained
    rgb = (np.random.default_rng(0).random((40, 36, 3)) * 255).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    cfg = vis_cfg(root, "mnist", ["job=activations", "layer=features.conv1", f"image=[3,{path}]"])
    run_visualize(cfg)
    with H5Run(Path(cfg.paths.output_dir) / "visualization.h5") as h5:
        inputs = h5.inputs()
        assert inputs["images"].shape == (2, 1, 28, 28)  # RGB file -> greyscale, resized
        assert list(inputs["labels"])[1] == -1 and list(inputs["sources"]) == ["test[3]", str(path)]
        assert h5.activation_layers() == ["features.conv1"]
        expected = np.asarray(Image.fromarray(rgb).convert("L").resize((28, 28), Image.Resampling.BILINEAR),
                              np.float32) / 255
        np.testing.assert_allclose(inputs["images"][1, 0], expected, atol=1e-6)


def test_gradcam_target_and_head(trained):
    root, runs = trained
    cfg = vis_cfg(root, "lines", ["job=gradcam", "gradcam.head=angle", "gradcam.target=3", "image=[0,1]"])
    run_visualize(cfg)
    net = LitClassifier.load_from_checkpoint(runs[("lines", "multihead")]["best_checkpoint"]).net.eval()
    with H5Run(Path(cfg.paths.output_dir) / "visualization.h5") as h5:
        assert h5.attribution_heads("gradcam") == ["angle"]
        stored = h5.attribution("gradcam", "angle", "features.conv3")
        assert stored["targets"].tolist() == [3, 3]
        # the maps are those of class 3, not of the predicted class
        x = torch.from_numpy(h5.inputs()["images"])
        direct = GradCAM(net, "features.conv3", heads="angle")(x, {"angle": 3})["angle"]
        np.testing.assert_allclose(stored["maps"], direct.maps.numpy(), rtol=1e-5, atol=1e-7)


def _nothing_written(cfg) -> bool:
    run_dir = Path(cfg.paths.output_dir)
    return not run_dir.exists() or not any(p.name in ("visualization.h5", "figures", "figures.partial", "index.html")
                                           or ".partial" in p.name for p in run_dir.iterdir())


@pytest.mark.parametrize("overrides,error,needle", [
    (["job=activations", "layer=features.nope"], UnknownLayerError, "Valid layer names: features.conv1"),
    (["job=filters", "layer=heads.angle.fc1"], CnnvisError, "not a convolution layer"),
    (["job=activations", "image=[99999]"], CnnvisError, "out of range"),
    (["job=activations", "image=/no/such/file.png"], CnnvisError, "no such file"),
    (["job=gradcam", "gradcam.target=12", "gradcam.head=angle"], CnnvisError, "valid classes are 0..11"),
    (["job=gradcam", "gradcam.head=size"], CnnvisError, "valid heads of multihead: length, width, angle, colour"),
    (["job=gradcam", "model=cnn_basic"], NoCheckpointError, "python train.py dataset=lines model=cnn_basic"),
])
def test_bad_input_fails_clearly_and_writes_nothing(trained, overrides, error, needle):
    root, _ = trained
    cfg = vis_cfg(root, "lines", overrides)
    with pytest.raises(error, match=__import__("re").escape(needle)):
        run_visualize(cfg)
    assert _nothing_written(cfg)


def test_bad_image_files(trained, tmp_path):
    root, _ = trained
    rgba = tmp_path / "alpha.png"
    Image.new("RGBA", (28, 28)).save(rgba)
    text = tmp_path / "text.png"
    text.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    # a PNG whose header says 0 x 0 pixels (Pillow cannot even write one)
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", 0, 0, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    zero = tmp_path / "zero.png"
    zero.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    for path, needle in [(rgba, "4 channels"), (text, "cannot read it as an image"), (empty, "zero size"),
                         (zero, "zero size|cannot read it as an image")]:
        cfg = vis_cfg(root, "lines", ["job=activations", f"image={path}"])
        with pytest.raises(CnnvisError, match=needle):
            run_visualize(cfg)
        assert _nothing_written(cfg)


def test_checkpoint_of_another_model_or_dataset(trained):
    root, runs = trained
    ckpt = runs[("lines", "multihead")]["best_checkpoint"]
    cfg = vis_cfg(root, "lines", ["job=activations", f"ckpt={ckpt}", "model=cnn_basic"])
    with pytest.raises(CnnvisError, match="holds a multihead model, not model=cnn_basic"):
        run_visualize(cfg)
    cfg = vis_cfg(root, "mnist", ["job=activations", f"ckpt={ckpt}"])
    with pytest.raises(CnnvisError, match="was trained on dataset=lines"):
        run_visualize(cfg)
    assert _nothing_written(cfg)


def test_no_checkpoint_yet_names_the_train_command(tmp_path):
    cfg = compose_cfg(tmp_path, [*TINY["fashion_mnist"], "job=gradcam"], config_name="visualize")
    with pytest.raises(NoCheckpointError, match="python train.py dataset=fashion_mnist"):
        run_visualize(cfg)


def test_attribution_job_runs_every_method(trained):
    root, runs = trained
    cfg = vis_cfg(root, "mnist", ["job=attribution", "image=[0,1]", "methods.smoothgrad.n_samples=4",
                                  "methods.integrated_gradients.n_steps=4"])
    run_visualize(cfg)
    run_dir = Path(cfg.paths.output_dir)
    with h5py.File(run_dir / "visualization.h5") as f:
        assert list(f["attribution"].keys()) == list(cfg.methods)  # every method of the catalog, in its order
        assert f["attribution/saliency/class/input/maps"].shape == (2, 28, 28)
        assert f["attribution/scorecam/class/features.conv1/maps"].shape == (2, 28, 28)
    assert (run_dir / "figures" / "attribution" / "integrated_gradients" / "class" / "input" / "sheet.png").is_file()
    # oracle: each method's stored maps equal a direct call with the settings the job was given
    net = LitClassifier.load_from_checkpoint(runs[("mnist", "cnn_basic")]["best_checkpoint"]).net.eval()
    direct = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "layercam": LayerCAM, "hirescam": HiResCAM,
              "scorecam": lambda n, layer: ScoreCAM(n, layer, subtract_baseline=False),
              "guided_gradcam": lambda n, layer: GuidedGradCAM(n, layer, interpolate_mode="bilinear"),
              "saliency": lambda n, _: Saliency(n, abs=True),
              "smoothgrad": lambda n, _: SmoothGrad(n, n_samples=4, stdev_spread=0.15, seed=0, abs=True),
              "integrated_gradients": lambda n, _: IntegratedGradients(n, n_steps=4, method="gausslegendre",
                                                                       baseline=0.0)}
    with H5Run(run_dir / "visualization.h5") as h5, h5py.File(run_dir / "visualization.h5") as f:
        x = torch.from_numpy(h5.inputs()["images"])
        assert sorted(direct) == sorted(f["attribution"].keys())
        for method, make in direct.items():
            (layer,) = list(f[f"attribution/{method}/class"].keys())
            assert layer == ("input" if method in ("saliency", "smoothgrad", "integrated_gradients") else "features.conv1")
            expected = make(net, None if layer == "input" else layer)(x)  # one head: one result
            np.testing.assert_allclose(f[f"attribution/{method}/class/{layer}/maps"][()], expected.maps.numpy(),
                                       rtol=1e-4, atol=1e-6, err_msg=method)
            assert f[f"attribution/{method}/class/{layer}/targets"][()].tolist() == expected.targets.tolist(), method


@pytest.mark.parametrize("dataset", ["lines", "mnist"])
def test_evaluate_job_scores_methods(trained, dataset):
    root, _ = trained
    cfg = vis_cfg(root, dataset, ["job=evaluate", "evaluate.methods=[gradcam,saliency]", "evaluate.num_images=24",
                                  "evaluate.faithfulness_images=6", "evaluate.sanity_images=3", "evaluate.deletion_steps=4"])
    run_visualize(cfg)
    run_dir = Path(cfg.paths.output_dir)
    rows = json.loads((run_dir / "evaluation.json").read_text())
    heads = ["length", "width", "angle", "colour"] if dataset == "lines" else ["class"]
    assert sorted((r["method"], r["head"]) for r in rows) == sorted((m, h) for m in ("gradcam", "saliency") for h in heads)
    for r in rows:
        assert r["deletion_auc"] is not None and 0 <= r["deletion_auc"] <= 1
        assert r["deletion_auc_random"] is not None and r["sanity_top_layer"] is not None
        assert 0 <= r["blank_maps"] <= 1
        if dataset == "lines":
            assert 0 <= r["pointing_game"] <= 1 and 0 < r["mask_share"] < 0.2
        else:
            assert r.get("pointing_game") is None  # mnist has no ground-truth masks
    assert (run_dir / "evaluation.csv").read_text().startswith("method,head,layer,pointing_game")
    with h5py.File(run_dir / "visualization.h5") as f:
        assert f["evaluation/indices"].shape == (24,)
        assert f[f"evaluation/gradcam/{heads[0]}/deletion_curves"].shape == (6, 5)
    assert "Measured explanations" in (run_dir / "index.html").read_text()


@pytest.mark.parametrize("overrides,needle", [
    (["job=gradcam", "gradcam.method=gradcam+++"], "gradcam.method: unknown attribution method gradcam+++; valid: gradcam"),
    (["job=attribution", "+methods.smoothgrad.n_sample=3"], "methods.smoothgrad: SmoothGrad takes no setting n_sample"),
    (["job=evaluate", "evaluate.methods=[gradcam,nope]"], "evaluate.methods: unknown attribution method nope"),
    (["job=filters", "filters.steps=0"], "filters.steps=0 is invalid"),
])
def test_bad_method_or_job_settings_fail_before_any_work(trained, overrides, needle):
    root, _ = trained
    cfg = vis_cfg(root, "lines", overrides)
    with pytest.raises(CnnvisError, match=__import__("re").escape(needle)):
        run_visualize(cfg)
    assert _nothing_written(cfg)
