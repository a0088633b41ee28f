"""The HDF5 layout a visualize run writes, read with plain h5py (not the project's reader) and
checked against outside oracles: the test split the sources name, the network called directly,
its raw weights and the README's table. A writer and reader changed together (a swapped head,
a transposed array, a renamed group) passes a round-trip test but fails these."""
from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pipeline.training.lit_module import LitClassifier
from pipeline.visualize_run import run_visualize
from tests.conftest import ROOT, TINY, compose_cfg

HEADS = {"length": 2, "width": 2, "angle": 12, "colour": 2}
IMAGES = [5, 0, 17]  # not in order: the stored rows follow the order asked for


def layer_output(net, name: str, x: torch.Tensor) -> torch.Tensor:
    """The output of the module called ``name`` (a plain forward hook, none of the project's code)."""
    seen = {}
    handle = dict(net.named_modules())[name].register_forward_hook(lambda m, i, o: seen.setdefault("out", o.clone()))
    try:
        with torch.no_grad():
            net(x)
    finally:
        handle.remove()
    return seen["out"]


@pytest.fixture(scope="module")
def written(tiny_trained):
    root, runs = tiny_trained
    cfg = compose_cfg(root, [*TINY["lines"], "search_cut_short=true", "job=all", f"image=[{','.join(map(str, IMAGES))}]",
                             "layer=[features.conv1,features.conv3]", "filters.steps=4", "filters.max_filters=4",
                             "filters.top=2"], config_name="visualize")
    run_visualize(cfg)
    ckpt = runs[("lines", "multihead")]["best_checkpoint"]
    module = LitClassifier.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False)
    import hydra
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("test")
    f = h5py.File(Path(cfg.paths.output_dir) / "visualization.h5", "r")
    yield f, module.net.eval(), dm.test, ckpt
    f.close()


def test_inputs_labels_sources_and_masks_are_the_named_test_images(written):
    f, _, test, _ = written
    assert [s.decode() if isinstance(s, bytes) else s for s in f["sources"][()]] == [f"test[{i}]" for i in IMAGES]
    assert f["inputs"].dtype == np.float32 and f["inputs"].shape == (3, 3, 28, 28)
    np.testing.assert_array_equal(f["inputs"][()], test.images[IMAGES].numpy().astype(np.float32) / 255)
    assert f["labels"].dtype == np.int64 and f["labels"][()].tolist() == test.labels[IMAGES].tolist()
    assert f["masks"].dtype == bool and np.array_equal(f["masks"][()], test.masks[IMAGES].numpy().astype(bool))


def test_predictions_and_probabilities_per_head_equal_the_network(written):
    f, net, _, _ = written
    with torch.no_grad():
        out = net(torch.from_numpy(f["inputs"][()]))
    assert sorted(f["predictions"].keys()) == sorted(HEADS) and sorted(f["probabilities"].keys()) == sorted(HEADS)
    for head, k in HEADS.items():
        logits = out[head]
        probs = torch.cat([1 - logits.sigmoid(), logits.sigmoid()], 1) if logits.shape[1] == 1 else logits.softmax(1)
        assert f[f"probabilities/{head}"].dtype == np.float32 and f[f"probabilities/{head}"].shape == (3, k)
        np.testing.assert_allclose(f[f"probabilities/{head}"][()], probs.numpy(), rtol=1e-5, atol=1e-7)
        assert f[f"predictions/{head}"].dtype == np.int64
        assert f[f"predictions/{head}"][()].tolist() == probs.argmax(1).tolist(), head


def test_activations_are_chunked_per_image_compressed_and_equal_the_layer_output(written):
    f, net, _, _ = written
    assert list(f["activations"].keys()) == ["features.conv1", "features.conv3"]
    x = torch.from_numpy(f["inputs"][()])
    expected = {layer: layer_output(net, layer, x) for layer in ("features.conv1", "features.conv3")}
    for layer, ref in expected.items():
        d = f[f"activations/{layer}"]
        assert d.dtype == np.float32 and d.chunks == (1, *ref.shape[1:]) and d.compression == "gzip"
        np.testing.assert_allclose(d[()], ref.numpy(), rtol=1e-5, atol=1e-6)
        assert d.attrs["mean"] == pytest.approx(float(ref.mean()), rel=1e-4, abs=1e-6)


def test_kernels_are_the_raw_first_layer_weights(written):
    f, net, _, _ = written
    np.testing.assert_array_equal(f["kernels/features.conv1"][()], net.features.conv1.weight.detach().numpy())


def test_filters_group_per_layer_and_objective(written):
    f, net, _, _ = written
    g = f["filters/features.conv3/channel"]
    t = g["patterns"].shape[0]
    assert g["patterns"].shape == (t, 3, 28, 28) and 0 <= g["patterns"][()].min() and g["patterns"][()].max() <= 1
    assert g["scores"].shape == (t,) and g["ranking"].shape == (t,)
    # the ranking orders the stored scores, best first, and the scores are the objective on the stored pictures
    np.testing.assert_array_equal(np.argsort(-g["scores"][()], kind="stable"), g["ranking"][()])
    acts = layer_output(net, "features.conv3", torch.from_numpy(g["patterns"][()]))
    units = g["targets"][()]
    measured = acts[torch.arange(t), torch.from_numpy(units).long()].mean((1, 2))
    np.testing.assert_allclose(g["scores"][()], measured.numpy(), rtol=1e-3, atol=1e-4)
    assert g.attrs["objective"] == "channel"


def test_gradcam_maps_under_method_head_layer(written):
    f, _, _, _ = written
    assert sorted(f["attribution/gradcam"].keys()) == sorted(HEADS)
    for head in HEADS:
        g = f[f"attribution/gradcam/{head}/features.conv3"]
        assert g["maps"].shape == (3, 28, 28) and g["layer_maps"].shape == (3, 14, 14)
        assert g["targets"][()].tolist() == f[f"predictions/{head}"][()].tolist()  # default target: the prediction


def test_root_attributes(written):
    f, _, _, ckpt = written
    assert f.attrs["dataset"] == "lines" and f.attrs["model"] == "multihead"
    assert Path(f.attrs["checkpoint"]).resolve() == Path(ckpt).resolve()
    names = f.attrs["class_names"]
    names = json.loads(names) if isinstance(names, str) else list(names)
    assert len(names) == 96
    assert "features.conv3" in (json.loads(f.attrs["layer_names"]) if isinstance(f.attrs["layer_names"], str)
                                else list(f.attrs["layer_names"]))


def test_every_group_written_is_documented_in_the_readme(written):
    f, _, _, _ = written
    table = (ROOT / "docs" / "hdf5.md").read_text().split("# HDF5 layout")[1].split("\n\n", 2)[1]
    documented = {m.group(1) for m in re.finditer(r"^\s+/([a-z_]+)", table, re.M)}
    assert set(f.keys()) <= documented, sorted(set(f.keys()) - documented)
