"""The first convolution's unit pictures in closed form (pipeline/visualization/first_layer.py): grey + the
kernel on the centre unit's receptive field, checked against the convolution arithmetic written out by hand,
and optimal within its L2 ball around grey."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.visualization.first_layer import kernel_pictures, reads_the_input

pytestmark = pytest.mark.usefixtures("one_thread")


def _net(c=1, k=3, **conv):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(c, 3, k, **conv), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2)).double().eval()


@pytest.mark.parametrize("conv, size", [(dict(), 8), (dict(stride=2, padding=1, dilation=2), 11),
                                        (dict(padding=1), 9)])
def test_picture_is_grey_plus_the_kernel_where_the_centre_unit_looks(conv, size):
    net = _net(**conv)
    net(torch.zeros(1, 1, size, size, dtype=torch.float64))  # materialize the lazy layer
    c = net[0]
    res = kernel_pictures(net, "0", (1, size, size))
    s, p, d, k = c.stride[0], c.padding[0], c.dilation[0], c.kernel_size[0]
    out = (size + 2 * p - d * (k - 1) - 1) // s + 1
    ctr = out // 2
    for f in range(3):
        want = torch.full((size, size), 0.5, dtype=torch.float64)
        w = c.weight[f, 0].detach()
        peak = max(float(w[i, j].abs()) for i in range(k) for j in range(k)
                   if 0 <= ctr * s - p + i * d < size and 0 <= ctr * s - p + j * d < size)
        unit = float(c.bias[f].detach())
        for i in range(k):
            for j in range(k):
                r, q = ctr * s - p + i * d, ctr * s - p + j * d
                if 0 <= r < size and 0 <= q < size:
                    want[r, q] = 0.5 + 0.5 * float(w[i, j]) / peak
                    unit += float(w[i, j]) * float(want[r, q])
        torch.testing.assert_close(res.patterns[f, 0].double(), want, rtol=0, atol=1e-6)
        assert float(res.scores[f]) == pytest.approx(unit, abs=1e-5)  # the centre unit, by hand
    assert res.objective == "neuron" and res.settings["param"] == "kernel" and res.targets.tolist() == [0, 1, 2]
    lit = (res.patterns[:, 0] != 0.5).any(0)
    rows, cols = lit.any(1).nonzero().flatten(), lit.any(0).nonzero().flatten()
    r0, r1, c0, c1 = res.settings["window"]
    assert r0 <= int(rows.min()) and int(rows.max()) < r1 and c0 <= int(cols.min()) and int(cols.max()) < c1


def test_no_picture_in_the_same_l2_ball_scores_higher():
    net = _net(c=3)
    net(torch.zeros(1, 3, 8, 8, dtype=torch.float64))
    res = kernel_pictures(net, "0", (3, 8, 8))
    w = net[0].weight.detach()
    gen = torch.Generator().manual_seed(0)
    for f in range(3):
        r = float((res.patterns[f].double() - 0.5).norm())
        assert r == pytest.approx(0.5 * float(w[f].norm()) / float(w[f].abs().max()), rel=1e-5)
        d = torch.randn(500, 3, 8, 8, generator=gen, dtype=torch.float64)
        x = (0.5 + r * d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
        with torch.no_grad():
            others = net[0](x)[:, f, 3, 3]
        assert float(others.max()) < float(res.scores[f]) - 1e-6
    assert (res.scores > res.start_scores).all()  # higher than the blank grey start


def test_channels_keep_the_others_at_zero():
    net = _net(c=3)
    net(torch.zeros(1, 3, 8, 8, dtype=torch.float64))
    res = kernel_pictures(net, "0", (3, 8, 8), channels=[0, 2])
    assert float(res.patterns[:, 1].abs().max()) == 0.0 and float((res.patterns[:, [0, 2]] != 0.5).sum()) > 0


def test_only_a_convolution_on_the_input_itself_has_the_closed_form():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3)).eval()
    assert reads_the_input(net, "0", (1, 8, 8)) and not reads_the_input(net, "2", (1, 8, 8))
    assert not reads_the_input(net, "1", (1, 8, 8))  # not a convolution

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return self.conv(x * 2 - 1)

    assert not reads_the_input(Scaled().eval(), "conv", (1, 8, 8))
    with pytest.raises(ValueError, match="not a convolution applied to the input"):
        kernel_pictures(net, "2", (1, 8, 8))
