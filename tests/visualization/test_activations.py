"""Recorded activations: equal to direct sub-network forwards, clone-safe, hooks removed."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.models.cnn_deep import CNNDeep
from pipeline.models.multihead import MultiHead
from pipeline.visualization.activations import ActivationRecorder, activation_stats, record_activations
from pipeline.visualization.layers import UnknownLayerError
from tests.visualization.helpers import hook_count, no_hooks, prepared


def test_recorded_activations_equal_subnetwork_forward_and_outputs():
    m = prepared(lambda: CNNDeep(), 1)
    x = torch.rand(7, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    names = ["features.conv1", "features.relu2", "features.pool2", "features.conv4"]
    acts, out = record_activations(m, x, names, batch_size=3)  # 3 chunks
    feats = list(m.features._modules)
    with torch.no_grad():
        for name in names:
            k = feats.index(name.split(".")[1]) + 1
            torch.testing.assert_close(acts[name], m.features[:k](x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out, m(x), rtol=1e-5, atol=1e-6)
    assert list(acts) == names
    assert no_hooks(m)


def test_multihead_outputs_are_concatenated_dicts():
    m = prepared(lambda: MultiHead(), 3)
    x = torch.rand(5, 3, 28, 28)
    acts, out = record_activations(m, x, "heads.angle.fc1", batch_size=2)
    assert set(out) == {"length", "width", "angle", "colour"}
    assert out["angle"].shape == (5, 12) and out["colour"].shape == (5, 1)
    assert acts["heads.angle.fc1"].shape == (5, 128)
    with torch.no_grad():
        torch.testing.assert_close(out["angle"], m(x)["angle"], rtol=1e-5, atol=1e-6)


def test_inplace_relu_after_layer_does_not_corrupt_recording():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 3)
    m = nn.Sequential(conv, nn.ReLU(inplace=True), nn.Conv2d(4, 2, 3)).eval()
    x = torch.randn(3, 1, 10, 10)
    with ActivationRecorder(m, ["0", "1"]) as rec, torch.no_grad():
        m(x)
        expected = conv(x)
    got = rec.activations["0"][0]
    assert (got < 0).any()  # negatives survived the in-place ReLU
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(rec.activations["1"][0], expected.clamp_min(0))


def test_recorder_keeps_per_batch_lists_and_removes_hooks_even_on_error():
    m = prepared(lambda: CNNDeep(), 1)
    rec = ActivationRecorder(m, ["features.conv1"])
    with pytest.raises(RuntimeError, match="boom"):
        with rec, torch.no_grad():
            m(torch.rand(2, 1, 28, 28))
            m(torch.rand(3, 1, 28, 28))
            assert hook_count(m, backward=False) > 0  # the recorder's forward hooks are in place
            raise RuntimeError("boom")
    assert no_hooks(m)
    assert [t.shape[0] for t in rec.activations["features.conv1"]] == [2, 3]
    assert rec.concatenated()["features.conv1"].shape == (5, 32, 28, 28)
    with torch.no_grad():
        m(torch.rand(1, 1, 28, 28))  # nothing recorded after exit
    assert len(rec.activations["features.conv1"]) == 2


def test_unknown_layer_fails_before_any_hook():
    m = CNNDeep()
    with pytest.raises(UnknownLayerError, match="features.conv4"):
        ActivationRecorder(m, ["features.conv1", "features.conv7"])
    assert no_hooks(m)


def test_activation_stats_on_known_tensor():
    act = torch.tensor([[[0.0, 2.0], [0.0, 0.0], [1.0, 0.0]],
                        [[0.0, 4.0], [0.0, 0.0], [3.0, 0.0]]])  # [N=2, C=3, L=2], channel 1 dead
    s = activation_stats(act)
    assert s["sparsity"] == pytest.approx(8 / 12)
    assert s["dead_channels"] == pytest.approx(1 / 3)
    assert s["mean"] == pytest.approx(10 / 12)
    assert s["max"] == 4.0 and s["min"] == 0.0
    assert s["std"] == pytest.approx(act.std(unbiased=False).item())
    conv = torch.zeros(2, 4, 3, 3)
    conv[:, 0] = 1.0
    assert activation_stats(conv)["dead_channels"] == pytest.approx(0.75)
