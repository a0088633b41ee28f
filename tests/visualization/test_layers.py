"""Layer addressing by module name."""
from __future__ import annotations

import pytest
from torch import nn

from pipeline.models.cnn_basic import CNNBasic
from pipeline.models.cnn_deep import CNNDeep
from pipeline.models.multihead import MultiHead
from pipeline.visualization.layers import (UnknownLayerError, conv_layer_names, last_conv_name, layer_names,
                                           resolve_layer, resolve_layers)


def test_layer_names_in_order_without_root_and_containers():
    names = layer_names(CNNBasic())
    assert names == ["features.conv1", "features.relu1", "features.bn1", "features.pool1",
                     "classifier.flatten", "classifier.fc1", "classifier.relu_fc1", "classifier.out"]


def test_layer_names_multihead_skips_moduledict_and_sequentials():
    names = layer_names(MultiHead())
    for container in ("", "features", "heads", "heads.angle", "heads.length"):
        assert container not in names
    assert names[:3] == ["features.conv1", "features.bn1", "features.relu1"]
    assert "heads.angle.fc1" in names and "heads.colour.out" in names
    assert names.index("features.relu3") < names.index("heads.length.fc1") < names.index("heads.angle.fc1")


def test_layer_names_excludes_modulelist():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Conv2d(1, 2, 3), nn.ReLU()])
    assert layer_names(M()) == ["blocks.0", "blocks.1"]


def test_conv_layer_names_and_last_conv():
    assert conv_layer_names(MultiHead()) == ["features.conv1", "features.conv2", "features.conv3"]
    assert conv_layer_names(CNNBasic()) == ["features.conv1"]
    assert last_conv_name(CNNDeep()) == "features.conv4"
    assert last_conv_name(MultiHead()) == "features.conv3"
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        last_conv_name(nn.Sequential(nn.Linear(2, 2)))


def test_resolve_layers_returns_the_modules_in_the_given_order():
    m = CNNDeep()
    got = resolve_layers(m, ["features.conv2", "classifier.out", "features.conv1"])
    assert list(got) == ["features.conv2", "classifier.out", "features.conv1"]
    assert got["features.conv2"] is m.features.conv2
    assert got["classifier.out"] is m.classifier.out
    single = resolve_layers(m, "features.bn1")
    assert list(single) == ["features.bn1"] and single["features.bn1"] is m.features.bn1
    assert resolve_layers(m, "features")["features"] is m.features  # containers are accepted
    assert resolve_layer(m, m.features.conv3) == ("features.conv3", m.features.conv3)


def test_unknown_layer_error_is_readable_and_lists_valid_names():
    m = CNNBasic()
    with pytest.raises(UnknownLayerError) as info:
        resolve_layers(m, ["features.conv1", "features.conv9"])
    err = info.value
    assert isinstance(err, KeyError)
    msg = str(err)
    assert "features.conv9" in msg
    for name in layer_names(m):
        assert name in msg
    assert not msg.startswith(("'", '"', "(")), msg  # not KeyError's repr of the key
    assert err.names == ["features.conv9"]


def test_unknown_layer_error_lists_every_wrong_name():
    with pytest.raises(UnknownLayerError) as info:
        resolve_layers(MultiHead(), ["conv1", "heads.size.fc1"])
    msg = str(info.value)
    assert "'conv1'" in msg and "'heads.size.fc1'" in msg and "heads.angle.fc1" in msg


def test_resolve_layer_rejects_foreign_module():
    with pytest.raises(ValueError):
        resolve_layer(CNNBasic(), nn.Conv2d(1, 1, 1))
