"""Shared fixtures: compose the project's real Hydra configs with tiny, fast overrides."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from pipeline.config import register_configs

register_configs()


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist (``-n auto`` in pytest.ini) each worker gets its share of the cores, as a
    sweep's jobs do (pipeline/parallel.py): torch threads in the worker, and OMP_NUM_THREADS for the
    entry scripts it starts (a single run keeps torch's default, which reads it). Without this, 2
    workers on 2 cores run 4+ threads that fight for them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1 or "OMP_NUM_THREADS" in os.environ:
        return
    from pipeline.parallel import usable_cores

    share = max(1, usable_cores() // workers)
    os.environ["OMP_NUM_THREADS"] = str(share)
    import torch

    torch.set_num_threads(share)


_share_the_cores_between_workers()

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"

# Small but real: every model/dataset pair trains a few steps in seconds.
TINY = {
    "lines": ["dataset=lines", "data.per_class=6", "data.batch_size=64", "data.progress=false"],
    "mnist": ["dataset=mnist", "data.max_train_samples=600", "data.max_test_samples=200", "data.val_size=100",
              "data.batch_size=64", f"data.data_dir={SHARED_DATASETS / 'mnist'}"],
    "fashion_mnist": ["dataset=fashion_mnist", "data.max_train_samples=600", "data.max_test_samples=200",
                      "data.val_size=100", "data.batch_size=64", f"data.data_dir={SHARED_DATASETS / 'fashion-mnist'}"],
}
QUIET_TRAINER = ["trainer=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
                 "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def compose_cfg(tmp_path: Path, overrides: list[str], config_name: str = "train"):
    """The composed config as `python <config_name>.py <overrides>` would see it, writing under tmp_path."""
    overrides = [f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}", *overrides]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    n = len(list((tmp_path / "outputs").rglob("*/run*"))) if (tmp_path / "outputs").exists() else 0
    run_dir = tmp_path / "outputs" / cfg.task / cfg.data.name / f"run{n}"
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def tiny_cfg(tmp_path):
    def make(dataset: str = "lines", model: str = "multihead", extra: list[str] | None = None, config_name="train"):
        return compose_cfg(tmp_path, [*TINY[dataset], f"model={model}", *QUIET_TRAINER, *(extra or [])], config_name)
    return make


def run_cli(script: str, args: list[str], cwd: Path, timeout: int = 300, env: dict | None = None):
    """Run an entry script the way a user does, in a process of its own; returns the CompletedProcess.

    The process is forked from one that imported torch, Lightning and Hydra already (tests/cli_zygote.py,
    7-8 s saved per run), or a new interpreter where that would not be faithful or
    ``CNNVIS_TESTS_FRESH_PROCESS=1``."""
    from tests import cli_zygote

    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return cli_zygote.run(ROOT / script, args, cwd, full_env, timeout)


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory):
    """Trained once per test session and shared by the visualize-side tests: a tiny multihead
    (lines) and a tiny cnn_basic (mnist) run under one root, as ``(root, {(dataset, model):
    run_training's summary})``. Read-only for its users: they may add visualize runs under
    ``root/outputs/visualize`` but never change or add training runs (use a fixture of your own)."""
    from pipeline.training.train import run_training

    root = tmp_path_factory.mktemp("tiny_trained")
    runs = {}
    for dataset, model in [("lines", "multihead"), ("mnist", "cnn_basic")]:
        runs[(dataset, model)] = run_training(compose_cfg(root, [*TINY[dataset], f"model={model}", *QUIET_TRAINER]))
    return root, runs


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Every test, and the fixtures its setup builds, starts from the same random state, whatever
    ran before it in this process: under pytest-xdist that differs between runs, and a model built
    from torch's global generator would differ with it (one CI run drew a random net on which a
    tolerance test failed)."""
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
