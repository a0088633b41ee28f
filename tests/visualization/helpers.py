"""Plain helpers shared by the visualization tests: model builders, inputs, comparisons, checks.

Import with ``from tests.visualization.helpers import ...`` (the repository root is on sys.path).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import pytest
import torch
from torch import nn


# --- models -----------------------------------------------------------------------------------

def prepared(model, in_ch: int, seed: int = 0, *, batch: int = 8, passes: int = 2,
             bn_weight: tuple[float, float] | None = None, bn_bias: tuple[float, float] | None = None):
    """Seeded model in eval mode with non-trivial batch-norm running statistics.

    ``model`` is a zero-argument factory, called after seeding so that the initial weights depend
    on ``seed`` alone (a module built by the caller would depend on whichever tests ran before
    it in the same process, which differs between xdist workers). ``passes`` train-mode forwards
    of ``batch`` random images; then, if given, every BatchNorm2d's affine weight / bias is drawn
    uniformly from the range.
    """
    if isinstance(model, nn.Module):
        raise TypeError("prepared() takes a factory (lambda: Net(...)), not a built module: "
                        "the module's weights would not be seeded")
    torch.manual_seed(seed)
    model = model()
    model.train()
    with torch.no_grad():
        for _ in range(passes):
            model(torch.rand(batch, in_ch, 28, 28))
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                if bn_weight is not None:
                    mod.weight.uniform_(*bn_weight)
                if bn_bias is not None:
                    mod.bias.uniform_(*bn_bias)
    return model.eval()


class Tiny(nn.Module):
    """conv1 -> relu1 -> conv2 -> relu2 -> pool -> linear; 12x12 images, k outputs."""

    def __init__(self, k=5, in_ch=3, inplace=False):
        super().__init__()
        self.features = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(in_ch, 4, 3, padding=1), relu1=nn.ReLU(inplace=inplace),
            conv2=nn.Conv2d(4, 6, 3, padding=1), relu2=nn.ReLU(inplace=inplace), pool=nn.MaxPool2d(2)))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(6 * 6 * 6, k))
        self.head_classes = {"class": 2 if k == 1 else k}

    def forward(self, x):
        return self.classifier(self.features(x))


def tiny(k=5, seed=0, inplace=False):
    """A seeded ``Tiny`` in eval mode."""
    torch.manual_seed(seed)
    return Tiny(k, inplace=inplace).eval()


class Boom(Tiny):
    """A Tiny whose forward runs the features (and so any hooks on them), then raises."""

    def forward(self, x):
        self.features(x)
        raise RuntimeError("boom")


class OneHead(nn.Module):
    """One head of a multi-head model as a plain single-output model."""

    def __init__(self, model, head):
        super().__init__()
        self.m, self.head = model, head

    def forward(self, x):
        return self.m(x)[self.head]


# --- inputs and comparisons ---------------------------------------------------------------------

def rand_images(n: int, ch: int, side: int = 28, seed: int = 1):
    """``n`` seeded uniform images [n, ch, side, side] (own generator: the global RNG is untouched)."""
    return torch.rand(n, ch, side, side, generator=torch.Generator().manual_seed(seed))


def hook_count(model, backward: bool = True) -> int:
    """Forward and forward-pre hooks (and, with ``backward``, backward and backward-pre hooks)
    registered on ``model`` and its submodules."""
    n = 0
    for m in model.modules():
        n += len(m._forward_hooks) + len(m._forward_pre_hooks)
        if backward:
            n += len(m._backward_hooks) + len(m._backward_pre_hooks)
    return n


def no_hooks(model) -> bool:
    """No forward, forward-pre, backward or backward-pre hook left on any module."""
    return hook_count(model) == 0


def close(ours, ref, tol=1e-5, floor=0.0):
    """|ours - ref| <= tol * max|ref| + floor everywhere."""
    ref = ref.detach().to(torch.float32)
    scale = float(ref.abs().max())
    err = float((ours - ref).abs().max())
    assert err <= tol * scale + floor, f"max error {err:.3g} > {tol} x {scale:.3g}"


# --- shared checks of attribution methods -------------------------------------------------------

def check_all_zero(res, tensors, n: int) -> None:
    """Every tensor finite and zero, every image flagged all-zero with an "all zeros" note."""
    for t in tensors:
        assert torch.isfinite(t).all() and (t == 0).all()
    assert res.all_zero.all()
    notes = res.notes()
    assert len(notes) == n and all("all zeros" in note for note in notes)


def check_hooks_modes_grads(make: Callable, model, x, field: str, compare: Callable = close) -> None:
    """``make(model)`` builds the method. Inside inference mode it gives the same ``field`` as
    outside (``compare(ours, ref, 1e-6)``); hooks are removed, no parameter gets a gradient,
    grad mode and train / eval mode are left as they were (``model`` has no batch norm or
    dropout, so train mode is kept)."""
    ref = make(model)(x)
    with make(model) as method:
        with torch.inference_mode():
            res = method(x)
            assert torch.is_inference_mode_enabled()
        assert no_hooks(model)
    compare(getattr(res, field), getattr(ref, field), 1e-6)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert torch.is_grad_enabled()
    with torch.no_grad():
        make(model)(x)
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    model.train()
    make(model)(x)
    assert model.training and no_hooks(model)
    assert all(p.grad is None for p in model.parameters())


def check_hooks_removed_after_error(makers, x) -> None:
    """Each ``make(model)`` of ``makers`` run on a model whose forward raises: the error comes
    through and no hook is left behind."""
    torch.manual_seed(0)
    bad = Boom().eval()
    for make in makers:
        with pytest.raises(RuntimeError, match="boom"):
            make(bad)(x)
        assert no_hooks(bad)


class SumUnit(nn.Module):
    """One ``size`` x ``size`` convolution with every weight 1 and no bias over a ``size`` x ``size``
    image: its single unit is sum(x), so every pixel pulls the same way."""

    def __init__(self, size: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, size, bias=False)
        nn.init.ones_(self.conv.weight)

    def forward(self, x):
        return self.conv(x)
