"""Command-line overrides reach what they configure: each knob is set on the command line the way
a user types it and read back from what the run produced (the checkpoint's weights, optimizer
state and step count, the test split's size), not from the composed config."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from pipeline.training.train import run_training
from tests.conftest import QUIET_TRAINER, TINY, compose_cfg, run_cli

PER_CLASS, BATCH, EPOCHS, LR = 5, 32, 2, 0.0037


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("overrides")
    args = [f"paths.root_dir={root}", f"paths.cache_dir={root / 'cache'}", "dataset=lines", "model=multihead",
            f"data.per_class={PER_CLASS}", f"data.batch_size={BATCH}", "data.progress=false",
            "data.style=soft",  # the anti-aliased style: 2 tiny epochs give distinct validation scores
            f"trainer.max_epochs={EPOCHS}", f"model.optimizer.lr={LR}", "model.scheduler=null", "model.net.channels=[8,12,20]",
            "model.net.head_hidden=[16]", "data.test_fraction=0.25", "trainer=cpu",
            "trainer.enable_progress_bar=false"]
    proc = run_cli("train.py", args, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = [json.loads(p.read_text()) for p in (root / "outputs" / "train").rglob("run.json")]
    ckpt = torch.load(record["last_checkpoint"], map_location="cpu", weights_only=False)
    return root, record, ckpt


def test_architecture_overrides_shape_the_weights(cli_run):
    _, _, ckpt = cli_run
    w = ckpt["state_dict"]
    convs = [k for k in w if k.startswith("net.features.") and k.endswith(".weight") and w[k].ndim == 4]
    assert [w[k].shape[0] for k in convs] == [8, 12, 20]
    hidden = [w[k].shape[0] for k in w if k.startswith("net.heads.angle") and k.endswith(".weight")]
    assert hidden == [16, 12]


def test_optimizer_lr_reaches_the_optimizer(cli_run):
    _, _, ckpt = cli_run
    (group,) = ckpt["optimizer_states"][0]["param_groups"]
    assert "initial_lr" not in group   # model.scheduler=null: no scheduler touched the optimizer
    assert group["lr"] == pytest.approx(LR)


def test_data_and_trainer_overrides_set_split_size_steps_and_epochs(cli_run):
    root, record, ckpt = cli_run
    n_test = round(96 * PER_CLASS * 0.25)
    dm = hydra.utils.instantiate(OmegaConf.load(Path(record["run_dir"]) / "config.yaml").data)
    dm.setup()
    assert len(dm.test) == n_test and len(dm.train) + len(dm.val) + n_test == 96 * PER_CLASS
    metrics = json.loads((Path(record["run_dir"]) / "test_metrics.json").read_text())
    assert metrics["test_images"] == n_test
    assert ckpt["epoch"] == EPOCHS - 1 and ckpt["global_step"] == EPOCHS * math.ceil(len(dm.train) / BATCH)


def test_seed_changes_the_initial_weights_and_the_same_seed_repeats_them(tmp_path):
    def first_weights(seed: int) -> torch.Tensor:
        cfg = compose_cfg(tmp_path / f"s{seed}", [*TINY["lines"], "model=multihead", *QUIET_TRAINER, f"seed={seed}"])
        torch.manual_seed(12345)  # what the run does must not depend on the global state before it
        summary = run_training(cfg)
        return torch.load(summary["last_checkpoint"], weights_only=False)["state_dict"]["net.features.conv1.weight"]

    a, b = first_weights(1), first_weights(2)
    assert not torch.equal(a, b)
    torch.manual_seed(999)
    assert torch.equal(first_weights(1), a)


def test_best_checkpoint_is_the_epoch_with_the_highest_validation_accuracy(cli_run):
    """Read from metrics.csv (what the user sees) and the checkpoint's own epoch counter."""
    _, record, _ = cli_run
    run_dir = Path(record["run_dir"])
    with open(run_dir / "metrics.csv") as fh:
        val = {int(r["epoch"]): float(r["val/acc"]) for r in csv.DictReader(fh) if r.get("val/acc")}
    assert sorted(val) == list(range(EPOCHS)) and len(set(val.values())) == EPOCHS  # distinct: the choice matters
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert best["epoch"] == max(val, key=val.get)
