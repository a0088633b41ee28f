"""The README's "How to add a method / a dataset / a job", followed to the letter by a newcomer's toy code.

tests/extension_example/ holds what the newcomer wrote: one class per addition
(positive_gradcam.py, stripes.py, brightness_job.py) and one config file each (conf/methods/,
conf/dataset/, conf/job/).
They reach the pipeline only through configuration -- the config search path and the overrides
the README gives -- never through an import or a registry in pipeline/.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.storage.h5store import H5Run
from pipeline.training.lit_module import LitClassifier
from pipeline.jobs.base import build_jobs
from pipeline.training.train import run_training
from pipeline.visualization.context import load_context
from pipeline.visualize_run import run_visualize
from tests.conftest import QUIET_TRAINER, TINY, compose_cfg, run_cli
from tests.extension_example.positive_gradcam import PositiveGradCAM

EXAMPLE_CONF = Path(__file__).parent / "extension_example" / "conf"
SEARCHPATH = f"hydra.searchpath=[file://{EXAMPLE_CONF}]"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("extend")
    result = run_training(compose_cfg(root, [*TINY["lines"], "model=multihead", *QUIET_TRAINER]))
    net = LitClassifier.load_from_checkpoint(result["best_checkpoint"], weights_only=False).net.eval()
    return root, net


def vis(root, *overrides):
    return compose_cfg(root, [*TINY["lines"], SEARCHPATH, "search_cut_short=true", *overrides], config_name="visualize")


def naive_positive_gradcam(net, x, head):
    """w_c = mean_hw(relu(dScore/dA_c)), map relu(sum_c w_c A_c), bilinear to 28x28 -- written out
    with plain autograd on the full forward, sharing no code with pipeline/attribution."""
    feats = {}
    h = net.features.conv3.register_forward_hook(lambda m, i, o: feats.setdefault("a", o))
    try:
        out = net(x)[head]
    finally:
        h.remove()
    a = feats["a"]
    t = out.argmax(1) if out.shape[1] > 1 else (out[:, 0] > 0).long()
    score = out.gather(1, t[:, None])[:, 0] if out.shape[1] > 1 else torch.where(t == 1, out[:, 0], -out[:, 0])
    g, = torch.autograd.grad(score.sum(), a)
    cam = (g.clamp_min(0).mean((2, 3))[:, :, None, None] * a).sum(1).clamp_min(0)
    return torch.nn.functional.interpolate(cam[:, None], size=(28, 28), mode="bilinear", align_corners=False)[:, 0]


def test_a_method_and_a_job_added_by_config_only(trained):
    root, net = trained
    cfg = vis(root, "+methods=positive_gradcam", "job=brightness", "job.run=[brightness,gradcam]",
              "gradcam.method=positive_gradcam", "image=[0,1]")
    run_visualize(cfg)
    run_dir = Path(cfg.paths.output_dir)
    with H5Run(run_dir / "visualization.h5") as h5:
        assert h5.attribution_methods() == ["positive_gradcam"]
        x = torch.from_numpy(h5.inputs()["images"])
        stored = {head: h5.attribution("positive_gradcam", head, "features.conv3")["maps"]
                  for head in h5.attribution_heads("positive_gradcam")}
    assert set(stored) == {"length", "width", "angle", "colour"}
    direct = PositiveGradCAM(net, "features.conv3")(x)
    for head, maps in stored.items():
        torch.testing.assert_close(torch.from_numpy(maps), direct[head].maps, rtol=0, atol=0)
        torch.testing.assert_close(direct[head].maps, naive_positive_gradcam(net, x, head).detach(),
                                   rtol=0, atol=1e-5 * float(direct[head].maps.max()) + 1e-7)
    with open(run_dir / "brightness.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["source"] for r in rows] == ["test[0]", "test[1]"]
    assert float(rows[0]["channel_0"]) == pytest.approx(float(x[0, 0].mean()), abs=1e-3)
    html = (run_dir / "index.html").read_text()
    assert "Mean brightness and confidence per image" in html and "positive_gradcam" in html


def test_an_added_method_joins_the_all_methods_jobs(trained):
    root, _ = trained
    cfg = vis(root, "+methods=positive_gradcam", "job=evaluate", "job.run=[attribution,evaluate]")
    assert list(cfg.methods)[-1] == "positive_gradcam"
    attribution, evaluate = build_jobs(cfg, load_context(cfg))
    assert list(attribution.methods) == list(evaluate.methods) == list(cfg.methods)


def test_a_bad_setting_of_an_added_job_fails_before_any_work(trained):
    root, _ = trained
    cfg = vis(root, "job=brightness", "brightness.precision=abc")
    with pytest.raises(ConfigError, match="brightness.precision: .*BrightnessJob"):
        run_visualize(cfg)
    assert not (Path(cfg.paths.output_dir) / "visualization.h5").exists()
    cfg = vis(root, "job=brightness", "+brightness.precisoin=2")
    with pytest.raises(ConfigError, match="precisoin"):
        run_visualize(cfg)


def test_the_readme_command_line(tmp_path):
    """The overrides the README gives, composed by visualize.py as a user runs it."""
    proc = run_cli("visualize.py", ["--cfg", "job", SEARCHPATH, "+methods=positive_gradcam", "job=brightness",
                                    "gradcam.method=positive_gradcam"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tests.extension_example.positive_gradcam.PositiveGradCAM" in proc.stdout
    assert "tests.extension_example.brightness_job.BrightnessJob" in proc.stdout


def test_a_dataset_added_by_config_only(tmp_path):
    """Train on the toy dataset and look at the model with the toy method: only config names them."""
    result = run_training(compose_cfg(tmp_path, [SEARCHPATH, "dataset=stripes", "model=cnn_basic", *QUIET_TRAINER]))
    assert result["status"] == "complete" and 0 <= result["test"]["class"]["accuracy"] <= 1
    cfg = compose_cfg(tmp_path, [SEARCHPATH, "dataset=stripes", "+methods=positive_gradcam", "job=gradcam",
                                 "gradcam.method=positive_gradcam", "num_images=2", "search_cut_short=true"], config_name="visualize")
    summary = run_visualize(cfg)
    assert summary["dataset"] == "stripes" and summary["model"] == "cnn_basic"
    with H5Run(Path(cfg.paths.output_dir) / "visualization.h5") as h5:
        assert h5.inputs()["images"].shape == (2, 1, 28, 28)
        assert h5.attribution("positive_gradcam", "class", "features.conv1")["maps"].shape == (2, 28, 28)
