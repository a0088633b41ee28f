"""Every config file in conf/ composes and every ``_target_`` in it is instantiated (as
lightning-hydra-template's tests do), including each job block and each attribution method,
which are built and called the way visualize.py builds and calls them."""
from __future__ import annotations

import functools
import importlib.util
import tempfile
from pathlib import Path

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from pipeline.jobs.base import Job
from pipeline.models.cnn_basic import CNNBasic
from pipeline.models.multihead import MultiHead
from pipeline.models.summary import layer_table
from pipeline.visualization.context import VisContext
from pipeline.visualization.layers import last_conv_name
from tests.conftest import CONF_DIR, SHARED_DATASETS

PRIMARY = ["train", "visualize", "eval"]
def group_options() -> list[tuple[str, str]]:
    """(group, option) of every file below conf/ (the primary configs sit at the top)."""
    out = []
    for path in sorted(CONF_DIR.rglob("*.yaml")):
        rel = path.relative_to(CONF_DIR)
        if len(rel.parts) > 1:
            out.append(("/".join(rel.parts[:-1]), path.stem))
    return out


def _compose(primary: str, overrides: list[str], tmp_path: Path) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=primary, return_hydra_config=True, overrides=[
            f"paths.root_dir={tmp_path}", *overrides])
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path / "run")
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def _targets(node, path=""):
    """The path of every node with a ``_target_`` (interpolations are not followed)."""
    if isinstance(node, (DictConfig, ListConfig)) and (node._is_none() or node._is_missing()):
        return
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield path
        for k in node.keys():
            if not OmegaConf.is_interpolation(node, k):
                yield from _targets(node._get_node(k), f"{path}.{k}" if path else str(k))
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            if not OmegaConf.is_interpolation(node, i):
                yield from _targets(node._get_node(i), f"{path}[{i}]")


def _data_overrides(group: str, option: str, tmp_path: Path) -> list[str]:
    dataset = option if group == "dataset" else "lines"
    extra = {"lines": ["data.per_class=6", "data.progress=false"], "lines_folder": [f"data.root={tmp_path}"],
             "mnist": [f"data.data_dir={SHARED_DATASETS / 'mnist'}"],
             "fashion_mnist": [f"data.data_dir={SHARED_DATASETS / 'fashion-mnist'}"]}
    if dataset == "image_folder":  # a user's folder: three classes of coloured shapes
        from tests.custom_example.shapes import make_folder
        extra["image_folder"] = [f"data.root={make_folder(tmp_path / 'shapes', per_class=4, size=28)}",
                                 "data.channels=3", "data.num_classes=3", "data.image_size=28", "model=cnn_basic"]
    model = ["model.net._target_=tests.custom_example.tiny_resnet.TinyResNet",
             "+model.net.in_channels=${data.channels}", "+model.net.num_classes=${data.num_classes}"]
    return extra.get(dataset, []) + (model if (group, option) == ("model", "custom") else [])


def _tiny_context(cfg, datamodule) -> VisContext:
    torch.manual_seed(0)
    lines = getattr(datamodule, "heads", None)
    net = (MultiHead(channels=(4, 6, 8), head_hidden=(8,)) if lines else
           CNNBasic(in_channels=datamodule.channels, num_classes=datamodule.num_classes)).eval()
    ctx = VisContext(net=net, model_name="tiny", dataset_name=datamodule.name, class_names=list(datamodule.class_names),
                     head_classes=dict(net.head_classes), ckpt=Path("tiny.ckpt"), train_run_dir=None,
                     train_metrics=None, datamodule=datamodule, device=torch.device("cpu"))
    ctx.layer_rows = layer_table(net, ctx.input_shape)
    return ctx


def _instantiate_train(cfg, done: set) -> None:
    dm = hydra.utils.instantiate(cfg.data)
    done.add("data")
    module = hydra.utils.instantiate(cfg.model, class_names=dm.class_names, dataset=dm.name)
    done.update(p for p in _targets(cfg.model, "model") if p in ("model", "model.net"))
    callbacks = []
    for key, node in (cfg.get("callbacks") or {}).items():
        if node:
            callbacks.append(hydra.utils.instantiate(node))
            done.add(f"callbacks.{key}")
    loggers = []
    for key, node in (cfg.get("logger") or {}).items():
        if node:
            if "TensorBoard" in node._target_ and not any(map(importlib.util.find_spec, ("tensorboard", "tensorboardX"))):
                pytest.skip("logger=tensorboard needs `pip install tensorboard` (optional)")
            loggers.append(hydra.utils.instantiate(node))
            done.add(f"logger.{key}")
    if cfg.trainer.get("accelerator") == "gpu" and not torch.cuda.is_available():
        pytest.skip("trainer=gpu needs a GPU")
    from pipeline.training.train import lightning_trainer_config

    trainer = hydra.utils.instantiate(lightning_trainer_config(cfg), callbacks=callbacks, logger=loggers or False)
    done.add("trainer")
    module.trainer = trainer
    module.configure_optimizers()  # builds the optimizer and the scheduler from their nodes
    done.update(p for p in _targets(cfg.model, "model") if p in ("model.optimizer", "model.scheduler"))


def _instantiate_visualize(cfg, done: set, run_method: str | None) -> None:
    """Build every job block with a tiny context and every method node (a partial); the method
    ``run_method`` is also built for the tiny model and run on two images."""
    dm = hydra.utils.instantiate(cfg.data)
    done.add("data")
    ctx = _tiny_context(cfg, dm)
    for name, node in cfg.methods.items():
        factory = hydra.utils.instantiate(node)
        done.add(f"methods.{name}")
        if name == run_method:
            layer = last_conv_name(ctx.net) if factory.func.needs_layer else None
            x = torch.rand(2, ctx.input_shape[0], 28, 28, generator=torch.Generator().manual_seed(0))
            out = factory(ctx.net, layer, heads=None, batch_size=8)(x)
            first = next(iter(out.values())) if isinstance(out, dict) else out
            assert first.maps.shape == (2, 28, 28) and torch.isfinite(first.maps).all(), name
    if cfg.get("model"):
        done.update(_targets(cfg.model, "model"))  # visualize reads only model.name; train builds it
    for name in [k for k in cfg.keys() if k not in ("data", "model", "methods", "hydra")]:
        node = cfg[name]
        if isinstance(node, DictConfig) and "_target_" in node:
            job = hydra.utils.instantiate(node)(ctx, layers=None, seed=0)
            assert isinstance(job, Job), name
            done.add(name)


def _instantiate_hydra(cfg, done: set) -> None:
    for key, node in (cfg.hydra.get("callbacks") or {}).items():
        hydra.utils.instantiate(node)
        done.add(f"hydra.callbacks.{key}")
    for path in _targets(cfg.hydra, "hydra"):  # launcher, sweeper, their plugins' nodes: Hydra builds them
        if path not in done:
            hydra.utils.get_class(OmegaConf.select(cfg, path)._target_)
            done.add(path)


def test_every_file_in_conf_is_a_primary_config_or_a_group_option():
    files = {p.relative_to(CONF_DIR) for p in CONF_DIR.rglob("*.yaml")}
    assert {Path(f"{p}.yaml") for p in PRIMARY} <= files
    assert len(group_options()) == len(files) - len(PRIMARY)


@functools.cache
def _groups_of(primary: str) -> frozenset:
    """The config groups the primary config composes (its defaults tree)."""
    with tempfile.TemporaryDirectory() as d:
        return frozenset(_compose(primary, [], Path(d)).hydra.runtime.choices)


@pytest.mark.parametrize("group,option", group_options(), ids=lambda v: str(v))
def test_every_group_option_composes_and_instantiates(group, option, tmp_path):
    # a methods file is one entry of the methods list (job=gradcam needs gradcam there too)
    selector = f"methods=[{','.join(dict.fromkeys(['gradcam', option]))}]" if group == "methods" else f"{group}={option}"
    primaries = [p for p in PRIMARY if group in _groups_of(p)] or PRIMARY  # a group outside the defaults: try all
    composed, errors = 0, []
    for primary in primaries:
        try:
            cfg = _compose(primary, [selector, *_data_overrides(group, option, tmp_path)], tmp_path)
        except Exception as exc:  # the group is not part of this primary config, or a plugin is missing
            errors.append(f"{primary}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            continue
        composed += 1
        done: set[str] = set()
        if primary == "train":
            _instantiate_train(cfg, done)
        elif primary == "visualize":
            _instantiate_visualize(cfg, done, run_method=option if group == "methods" else None)
        else:
            hydra.utils.instantiate(cfg.data)
            done.add("data")
        _instantiate_hydra(cfg, done)
        missing = sorted(set(_targets(cfg)) - done)
        assert not missing, f"{primary} with {selector}: _target_ nodes never instantiated: {missing}"
    if not composed:
        plugin = [e for e in errors if "Could not find" in e or "plugin" in e.lower() or "No module named" in e]
        if plugin and len(plugin) == len(errors):
            pytest.skip(f"{selector} needs a Hydra plugin that is not installed: {plugin[0]}")
        pytest.fail(f"{selector} composes with no primary config: {errors}")
