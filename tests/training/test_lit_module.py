"""The LightningModule's label handling and metrics, checked by hand on known batches."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.data.lines_labels import HEADS, decode_label, encode_label, join_label, split_label
from pipeline.errors import ConfigError
from pipeline.training.lit_module import LitClassifier

NET = {"_target_": "pipeline.models.multihead.MultiHead", "channels": [4, 4, 4]}
OPT = {"_target_": "torch.optim.Adam", "lr": 1e-3}


def test_label_split_matches_the_generator_encoding_for_all_96_classes():
    labels = torch.arange(96)
    parts = split_label(labels, HEADS)
    ref = decode_label(labels.numpy())
    for h in HEADS:
        assert parts[h].tolist() == list(ref[h])
    assert torch.equal(join_label(parts, HEADS), labels)
    assert int(encode_label(1, 1, 9, 0)) == int(join_label({"length": torch.tensor(1), "width": torch.tensor(1),
                                                                   "angle": torch.tensor(9), "colour": torch.tensor(0)}, HEADS))


class FixedLogits(nn.Module):
    """Stands in for the network: returns logits chosen by the test."""

    def __init__(self, logits: dict):
        super().__init__()
        self.logits = logits
        self.head_classes = dict(HEADS)

    def forward(self, x):
        return self.logits


def test_multihead_metrics_by_hand():
    module = LitClassifier(NET, OPT, name="multihead")
    # 4 images; true parts:
    true = {"length": [0, 1, 1, 0], "width": [1, 1, 0, 0], "angle": [3, 11, 0, 5], "colour": [0, 1, 1, 0]}
    labels = join_label({h: torch.tensor(v) for h, v in true.items()}, HEADS)
    angle_logits = torch.full((4, 12), -5.0)
    for i, a in enumerate([3, 11, 1, 5]):       # image 2: angle wrong
        angle_logits[i, a] = 5.0
    logits = {
        "length": torch.tensor([[-2.0], [3.0], [1.0], [2.0]]),   # image 3 wrong (predicts long)
        "width": torch.tensor([[4.0], [1.0], [-1.0], [-3.0]]),   # all right
        "angle": angle_logits,
        "colour": torch.tensor([[-1.0], [2.0], [2.0], [-2.0]]),  # all right
    }
    module.net = FixedLogits(logits)
    module._eval_step("val", module.val_metrics, (torch.zeros(4, 3, 28, 28), labels))
    got = {h: coll.compute()["acc"].item() for h, coll in module.val_metrics.items()}
    assert got["length"] == pytest.approx(0.75) and got["width"] == 1.0 and got["colour"] == 1.0
    assert got["angle"] == pytest.approx(0.75)
    assert got["aggregate"] == pytest.approx(0.5)   # images 0 and 1 have all four heads right
    # loss = sum of BCE on the binary heads + CE on angle
    loss, _, _ = module._step((torch.zeros(4, 3, 28, 28), labels))
    t = split_label(labels, HEADS)
    expected = sum(nn.functional.binary_cross_entropy_with_logits(logits[h][:, 0], t[h].float())
                   for h in ("length", "width", "colour")) + nn.functional.cross_entropy(angle_logits, t["angle"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_head_weights_scale_the_loss():
    a = LitClassifier(NET, OPT, name="multihead", head_weights={"angle": 0.0, "length": 1, "width": 1, "colour": 1})
    b = LitClassifier(NET, OPT, name="multihead")
    b.load_state_dict(a.state_dict())
    x, y = torch.rand(8, 3, 28, 28), torch.randint(0, 96, (8,))
    a.eval(); b.eval()
    la, _, _ = a._step((x, y))
    lb, _, _ = b._step((x, y))
    t = split_label(y, HEADS)
    ce = nn.functional.cross_entropy(b.net(x)["angle"], t["angle"])
    assert (lb - la).item() == pytest.approx(ce.item(), rel=1e-5)


def test_channels_last_trains_in_nhwc_with_the_same_arithmetic_and_hands_back_a_default_layout_net():
    torch.manual_seed(0)
    nhwc = LitClassifier({**NET, "channels": [8, 8, 8]}, OPT, name="multihead", channels_last=True)
    nchw = LitClassifier({**NET, "channels": [8, 8, 8]}, OPT, name="multihead", channels_last=False)
    nchw.load_state_dict(nhwc.state_dict())
    x, labels = torch.rand(16, 3, 28, 28), torch.randint(0, 96, (16,))
    nhwc.setup("fit")
    nchw.setup("fit")
    conv = nhwc.net.features.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert nchw.net.features.conv1.weight.is_contiguous()
    assert nhwc._layout(x).is_contiguous(memory_format=torch.channels_last) and torch.equal(nhwc._layout(x), x)
    assert nchw._layout(x).is_contiguous()
    batch = (x, labels)
    seen = []
    nhwc.net.register_forward_pre_hook(lambda mod, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    losses = []
    for m, b in ((nhwc, batch), (nchw, (x, labels))):
        loss = m._step(b)[0]
        loss.backward()
        losses.append(loss)
    assert seen == [True]   # the training step hands the net an NHWC batch
    assert torch.allclose(losses[0], losses[1], atol=1e-5)
    for (name, p), q in zip(nhwc.net.named_parameters(), nchw.net.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5, rtol=1e-4), name
    nhwc.teardown("fit")
    assert all(p.is_contiguous() for p in nhwc.net.parameters())


class _Run:
    """Stands in for the Trainer: just the run length the scheduler asks for."""

    def __init__(self, steps):
        self.estimated_stepping_batches, self.max_epochs = steps, 3


def test_one_cycle_spans_the_run_and_peaks_at_the_configured_lr():
    sched = {"_target_": "torch.optim.lr_scheduler.OneCycleLR", "max_lr": 0.005, "pct_start": 0.2,
             "total_steps": None, "interval": "step"}
    module = LitClassifier(NET, {**OPT, "lr": 0.005}, scheduler=sched, name="multihead")
    module._trainer = _Run(120)
    out = module.configure_optimizers()
    scheduler = out["lr_scheduler"]["scheduler"]
    assert out["lr_scheduler"]["interval"] == "step" and scheduler.total_steps == 120
    lrs = []
    for _ in range(120):
        lrs.append(out["optimizer"].param_groups[0]["lr"])
        out["optimizer"].step()
        scheduler.step()
    assert max(lrs) == pytest.approx(0.005) and lrs.index(max(lrs)) in (23, 24) and lrs[-1] < 1e-5
    module._trainer = _Run(float("inf"))
    with pytest.raises(ConfigError, match="trainer.max_steps or model.scheduler.total_steps"):
        module.configure_optimizers()


def test_trainer_compile_runs_the_step_through_torch_compile_and_keeps_checkpoints_plain(monkeypatch):
    compiled = []

    def fake_compile(net):  # torch.compile itself takes ~40 s on a 2-core CPU: the wiring is what is tested here
        def run(x):
            compiled.append(x.shape)
            return net(x)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    m = LitClassifier({**NET, "channels": [8, 8, 8]}, OPT, name="multihead")
    keys = set(m.state_dict())
    m.compile_net = True
    m.setup("fit")
    loss = m._step((torch.rand(4, 3, 28, 28), torch.randint(0, 96, (4,))))[0]
    assert compiled == [torch.Size([4, 3, 28, 28])] and torch.isfinite(loss)
    assert set(m.state_dict()) == keys   # no "_orig_mod." keys: checkpoints load into a plain net
    m.teardown("fit")
    m._step((torch.rand(2, 3, 28, 28), torch.randint(0, 96, (2,))))
    assert len(compiled) == 1            # after teardown the plain net runs


def test_trainer_compile_must_be_a_boolean():
    from omegaconf import OmegaConf

    from pipeline.training.train import _compile_setting

    cfg = OmegaConf.create({"trainer": {"compile": "yes"}, "paths": {"cache_dir": "/tmp"}})
    with pytest.raises(ConfigError, match="trainer.compile='yes' is invalid"):
        _compile_setting(cfg)
    assert _compile_setting(OmegaConf.create({"trainer": {}, "paths": {"cache_dir": "/tmp"}})) is False
