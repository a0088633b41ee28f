"""Tests of pipeline.storage.h5store: exact round trips, chunking, atomic writes."""
from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
import torch

from pipeline.storage.h5store import H5Run, H5RunWriter

RNG = np.random.default_rng(0)
N, C, H, W = 4, 3, 8, 8


def _payload():
    return {
        "images": RNG.random((N, C, H, W), dtype=np.float32),
        "labels": np.array([3, -1, 0, 95], np.int64),
        "sources": ["test[42]", "/home/u/my digit.png", "tést[ü]", ""],
        "predictions": {"class": np.array([3, 1, 0, 95], np.int64),
                        "angle": np.array([0, 11, 2, 5], np.int64)},
        "probabilities": {"class": RNG.random((N, 96), dtype=np.float32),
                          "angle": RNG.random((N, 12), dtype=np.float32)},
        "acts1": np.maximum(RNG.normal(size=(N, 16, 6, 6)), 0).astype(np.float32),
        "acts_fc": RNG.normal(size=(N, 32)).astype(np.float32),
        "patterns": RNG.random((16, 3, H, W), dtype=np.float32),
        "scores": RNG.normal(size=16).astype(np.float32),
        "start": RNG.normal(size=16).astype(np.float32),
        "gc_maps": RNG.random((N, H, W), dtype=np.float32) * 7,
        "gc_layer": RNG.random((N, 2, 2), dtype=np.float32) * 7,
    }


def _write_full(path, p, overwrite=False):
    with H5RunWriter(path, attrs={"dataset": "lines", "model": "multihead"}, overwrite=overwrite) as w:
        w.write_inputs(torch.from_numpy(p["images"]), p["labels"], p["sources"],
                       p["predictions"], p["probabilities"])
        w.write_activations("features.conv1", torch.from_numpy(p["acts1"]))
        w.write_activations("fc.0", p["acts_fc"], stats={"note": "linear"})
        ranking = np.argsort(-p["scores"])
        w.write_filters("features.conv1", p["patterns"], p["scores"], p["start"],
                        np.arange(16), ranking, attrs={"steps": 64, "step_size": 0.05,
                                                       "blur_every": None})
        w.write_masks(p["images"][:, 0] > 0.5)
        for head in ("length", "angle"):
            w.write_attribution("gradcam", head, "features.conv1", p["gc_maps"], p["gc_maps"] / 7, p["gc_layer"],
                                np.array([0, 1, 1, 0]), np.array([0.5, 0.9, 0.99, 0.1]))
        w.write_attribution("saliency", "angle", "input", p["gc_maps"], p["gc_maps"] / 7, p["gc_maps"],
                            np.array([0, 1, 1, 0]), np.array([0.5, 0.9, 0.99, 0.1]), attrs={"notes": ["a note"]})
        w.write_evaluation_indices(np.array([7, 3, 5]))
        w.write_evaluation("gradcam", "angle", {"maps": p["gc_maps"][:3], "pointing_game": np.array([1.0, 0.0, 1.0]),
                                                "deletion_curves": np.ones((3, 5))},
                           attrs={"sanity_layers": ["a", "b"]})
        w.set_attrs(checkpoint="/x/last.ckpt", config="a: 1\nb: [1, 2]\n",
                    layer_shapes={"features.conv1": [16, 6, 6]}, extra={"k": [1, 2]})
    return path


def test_round_trip_every_group_exactly(tmp_path):
    p = _payload()
    path = _write_full(tmp_path / "run.h5", p)
    with H5Run(path) as run:
        inp = run.inputs()
        np.testing.assert_array_equal(inp["images"], p["images"])
        assert inp["images"].dtype == np.float32
        np.testing.assert_array_equal(inp["labels"], p["labels"])
        assert inp["labels"].dtype == np.int64
        assert inp["sources"] == p["sources"]
        for head in ("class", "angle"):
            np.testing.assert_array_equal(inp["predictions"][head], p["predictions"][head])
            np.testing.assert_array_equal(inp["probabilities"][head], p["probabilities"][head])

        assert run.activation_layers() == ["features.conv1", "fc.0"]  # written (model) order
        np.testing.assert_array_equal(run.activations("features.conv1"), p["acts1"])
        np.testing.assert_array_equal(run.activations("fc.0"), p["acts_fc"])
        np.testing.assert_array_equal(run.activations("features.conv1", index=2), p["acts1"][2])
        stats = run.activation_stats("features.conv1")
        assert stats["layer"] == "features.conv1"
        assert list(stats["shape"]) == [16, 6, 6]
        assert stats["sparsity"] == pytest.approx(float(np.mean(p["acts1"] == 0)))
        assert stats["mean"] == pytest.approx(float(p["acts1"].mean()), rel=1e-6)
        assert run.activation_stats("fc.0")["note"] == "linear"

        f = run.filters("features.conv1")
        np.testing.assert_array_equal(f["patterns"], p["patterns"])
        np.testing.assert_array_equal(f["scores"], p["scores"])
        np.testing.assert_array_equal(f["start_scores"], p["start"])
        np.testing.assert_array_equal(f["filter_indices"], np.arange(16))
        np.testing.assert_array_equal(f["ranking"], np.argsort(-p["scores"]))
        assert f["attrs"]["steps"] == 64 and f["attrs"]["step_size"] == 0.05
        assert f["attrs"]["blur_every"] is None

        np.testing.assert_array_equal(inp["masks"], p["images"][:, 0] > 0.5)
        assert run.attribution_methods() == ["gradcam", "saliency"]
        assert run.attribution_heads("gradcam") == ["length", "angle"]
        assert run.attribution_layers("gradcam", "angle") == ["features.conv1"]
        assert run.attribution("saliency", "angle", "input")["attrs"]["notes"] == ["a note"]
        np.testing.assert_array_equal(run.evaluation_indices(), [7, 3, 5])
        assert run.evaluation_methods() == ["gradcam"]
        ev = run.evaluation("gradcam", "angle")
        np.testing.assert_array_equal(ev["maps"], p["gc_maps"][:3])
        np.testing.assert_array_equal(ev["pointing_game"], [1.0, 0.0, 1.0])
        assert ev["deletion_curves"].shape == (3, 5) and ev["attrs"]["sanity_layers"] == ["a", "b"]
        g = run.attribution("gradcam", "angle", "features.conv1")
        np.testing.assert_array_equal(g["maps"], p["gc_maps"])
        np.testing.assert_array_equal(g["maps_normalized"], p["gc_maps"] / 7)
        np.testing.assert_array_equal(g["layer_maps"], p["gc_layer"])
        np.testing.assert_array_equal(g["targets"], [0, 1, 1, 0])
        np.testing.assert_array_equal(g["probs"], np.array([0.5, 0.9, 0.99, 0.1], np.float32))

        a = run.attrs
        assert a["dataset"] == "lines" and a["model"] == "multihead"
        assert a["checkpoint"] == "/x/last.ckpt"
        assert a["config"] == "a: 1\nb: [1, 2]\n"  # YAML stays a plain string
        assert a["layer_shapes"] == {"features.conv1": [16, 6, 6]}
        assert a["extra"] == {"k": [1, 2]}
        assert "T" in a["created"] and a["cnnvis_version"]
    # the raw file follows the documented layout (other tools read it without H5Run)
    with h5py.File(path, "r") as raw:
        assert set(raw.keys()) >= {"inputs", "labels", "sources", "predictions", "probabilities",
                                   "activations", "filters", "attribution", "evaluation", "masks"}
        assert isinstance(raw["filters/features.conv1"], h5py.Group)
        assert raw["attribution/gradcam/length/features.conv1/maps"].shape == (N, H, W)
        assert json.loads(raw.attrs["layer_shapes"]) == {"features.conv1": [16, 6, 6]}


def test_activation_chunks_one_image_and_compressed(tmp_path):
    p = _payload()
    path = _write_full(tmp_path / "run.h5", p)
    with h5py.File(path, "r") as raw:
        ds = raw["activations"]["features.conv1"]
        assert ds.chunks == (1, 16, 6, 6)
        assert ds.compression in ("gzip", "lzf")
        assert ds.dtype == np.float32
        assert raw["activations"]["fc.0"].chunks == (1, 32)


def test_layer_names_with_dots_are_verbatim(tmp_path):
    path = tmp_path / "dots.h5"
    with H5RunWriter(path) as w:
        w.write_activations("features.block2.conv.0", np.ones((1, 2, 3, 3)))
    with h5py.File(path, "r") as raw:
        assert list(raw["activations"].keys()) == ["features.block2.conv.0"]
    with H5Run(path) as run:
        assert run.activation_layers() == ["features.block2.conv.0"]
        np.testing.assert_array_equal(run.activations("features.block2.conv.0"), np.ones((1, 2, 3, 3)))
        # layer_shapes is filled from the activations when the caller did not set it
        assert run.attrs["layer_shapes"] == {"features.block2.conv.0": [2, 3, 3]}


def test_slash_in_layer_name_refused(tmp_path):
    with pytest.raises(ValueError, match="/"):
        with H5RunWriter(tmp_path / "x.h5") as w:
            w.write_activations("a/b", np.ones((1, 1, 1, 1)))
    assert list(tmp_path.iterdir()) == []


def test_existing_file_refused_and_untouched(tmp_path):
    path = tmp_path / "run.h5"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        H5RunWriter(path)
    assert path.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["run.h5"]


def test_overwrite_replaces_only_on_success(tmp_path):
    path = tmp_path / "run.h5"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with H5RunWriter(path, overwrite=True) as w:
            w.write_activations("c1", np.ones((1, 1, 2, 2)))
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    with H5RunWriter(path, overwrite=True) as w:
        w.write_activations("c1", np.ones((1, 1, 2, 2)))
    with H5Run(path) as run:
        assert run.activation_layers() == ["c1"]
    assert sorted(os.listdir(tmp_path)) == ["run.h5"]


def test_exception_leaves_no_file_and_no_temp(tmp_path):
    path = tmp_path / "sub" / "run.h5"
    with pytest.raises(KeyError):
        with H5RunWriter(path, attrs={"dataset": "mnist"}) as w:
            w.write_inputs(np.zeros((2, 1, 4, 4)), [1, 2], ["a", "b"], {"class": [1, 2]},
                           {"class": np.zeros((2, 10))})
            partial = list(path.parent.iterdir())
            assert [q.name for q in partial] == [f"run.h5.partial-{os.getpid()}@{__import__('socket').gethostname()}"]
            assert not path.exists()  # nothing under the real name while writing
            raise KeyError("fail")
    assert not path.exists()
    assert list(path.parent.iterdir()) == []


def test_reader_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError):
        H5Run(tmp_path / "missing.h5")
    path = tmp_path / "r.h5"
    with H5RunWriter(path) as w:
        w.write_activations("conv1", np.ones((1, 1, 1, 1)))
    with H5Run(path) as run:
        with pytest.raises(KeyError, match="conv1"):
            run.activations("conv2")
        assert run.attribution_methods() == [] and run.filter_layers() == [] and run.evaluation_methods() == []
        with pytest.raises(KeyError, match="job=evaluate"):
            run.evaluation_indices()
        with pytest.raises(KeyError, match="stored methods"):
            run.attribution("gradcam", "angle", "conv1")
