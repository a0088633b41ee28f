"""The scoring copy (pipeline/evaluation/inference_copy.py): batch norms folded, the same outputs."""
from __future__ import annotations

import torch

from pipeline.evaluation.inference_copy import foldable_pairs, folded_copy


def _multihead(train_steps=3):
    from pipeline.models.multihead import MultiHead

    torch.manual_seed(0)
    net = MultiHead(channels=(4, 6, 8), head_hidden=(5,))
    net.train()
    with torch.no_grad():
        for _ in range(train_steps):  # running statistics that are not the defaults
            net(torch.rand(16, 3, 28, 28) * 2)
    return net.eval()


def test_folded_copy_gives_the_same_outputs_without_batch_norms():
    net = _multihead()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    f = folded_copy(net)
    assert foldable_pairs(net) == [("features.conv1", "features.bn1"), ("features.conv2", "features.bn2"),
                                   ("features.conv3", "features.bn3")]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in f.modules())
    assert isinstance(f.get_submodule("features.bn2"), torch.nn.Identity)  # names kept
    x = torch.rand(5, 3, 28, 28)
    with torch.no_grad():
        want, got = net(x), f(x)
    for h in want:
        torch.testing.assert_close(got[h], want[h], rtol=0, atol=1e-5)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # the model is unchanged


def test_train_mode_and_plain_models_are_not_copied():
    net = _multihead().train()
    assert folded_copy(net) is net
    plain = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU()).eval()
    assert folded_copy(plain) is plain
