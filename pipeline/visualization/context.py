"""Everything a visualize run needs before it computes anything: the trained model (from an
explicit ``ckpt=`` or the newest complete training run), its training numbers, the dataset's
test split, and the device. All checks that can fail happen here, before any file is written.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from pipeline.errors import CnnvisError, NoCheckpointError
from pipeline.training.registry import RUN_RECORD, find_latest_run

log = logging.getLogger(__name__)


class CheckpointMismatchError(CnnvisError, ValueError):
    """The checkpoint does not match the requested model or dataset."""


@dataclass
class VisContext:
    net: nn.Module                 # the trained network, eval mode, on `device`
    model_name: str
    dataset_name: str
    class_names: list[str]
    head_classes: dict[str, int]
    ckpt: Path
    train_run_dir: Path | None
    train_metrics: dict | None
    datamodule: object
    device: torch.device
    layer_rows: list[dict] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        dm = self.datamodule
        return (dm.channels, dm.image_size, dm.image_size)

    @property
    def multihead(self) -> bool:
        return len(self.head_classes) > 1


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CnnvisError(f"device={name}: no CUDA GPU is available here; use device=cpu or device=auto")
    return torch.device(name)


def requested_model(cfg: DictConfig) -> str | None:
    """The model=... choice of a visualize run (the model config group), or None for any model."""
    model = cfg.get("model")
    return model.get("name") if model else None


def resolve_checkpoint(cfg: DictConfig) -> tuple[Path, Path | None]:
    if cfg.get("ckpt"):
        ckpt = Path(cfg.ckpt).resolve()
        if ckpt.is_dir():
            from pipeline.errors import checkpoint_directory_hint

            raise NoCheckpointError(f"ckpt={ckpt} is a directory, not a checkpoint file: {checkpoint_directory_hint(ckpt)}")
        if not ckpt.is_file():
            raise NoCheckpointError(f"ckpt={ckpt}: no such file. Leave ckpt unset to use the newest trained "
                                    f"checkpoint for dataset={cfg.data.name}, or train one: python train.py dataset={cfg.data.name}")
        run_dir = ckpt.parent.parent if (ckpt.parent.parent / RUN_RECORD).is_file() else None
        return ckpt, run_dir
    rec = find_latest_run(Path(cfg.paths.outputs_dir), cfg.data.name, requested_model(cfg),
                          include_cut_short=bool(cfg.get("search_cut_short", False)))
    log.info("using %s (newest %s run of %s)", rec.best_checkpoint, rec.model, rec.dataset)
    return rec.best_checkpoint, rec.run_dir


def load_module(ckpt: Path, device: torch.device, cfg: DictConfig | None = None, datamodule=None):
    """The checkpoint's LitClassifier, loaded with ``weights_only=True`` (a file that would run code is refused);
    a plain ``state_dict`` file goes into the network that ``model=`` configures (:mod:`pipeline.training.state_dicts`)."""
    from pipeline.training.checkpoints import load_lit_module
    from pipeline.training.state_dicts import is_plain_state_dict, load_state_dict_module, read_weights

    if cfg is not None and Path(ckpt).suffix != ".ckpt":
        content = read_weights(ckpt, f"ckpt={ckpt}")
        if is_plain_state_dict(content):
            return load_state_dict_module(content, cfg, datamodule, f"ckpt={ckpt}", device)
    return load_lit_module(ckpt, f"ckpt={ckpt}", map_location=device)


def _warn_other_style(run_dir: Path | None, datamodule) -> None:
    """A lines model looked at with test images of another drawing style than it was trained on
    still works, but the user should know which images they are seeing."""
    style = getattr(datamodule, "style", None)
    if style is None or run_dir is None or not (run_dir / "config.yaml").is_file():
        return
    from omegaconf import OmegaConf

    trained = OmegaConf.load(run_dir / "config.yaml").get("data", {}).get("style", "sheet")
    if trained != style:
        log.warning("this model was trained on data.style=%s; the test images here are data.style=%s "
                    "(pass data.style=%s to look at its own test set)", trained, style, trained)


def load_context(cfg: DictConfig) -> VisContext:
    from pipeline.models.summary import layer_table

    device = pick_device(str(cfg.get("device", "auto")))
    from pipeline.data.image_folder_datamodule import fill_inferred

    datamodule = hydra.utils.instantiate(cfg.data)  # checks the data arguments before anything heavy
    fill_inferred(cfg, datamodule)  # data.channels / num_classes a dataset inferred, for a model= config
    ckpt, run_dir = resolve_checkpoint(cfg)
    module = load_module(ckpt, device, cfg, datamodule)
    hp = module.hparams
    model_name = hp.get("name", "model")
    wanted = requested_model(cfg)
    if wanted and model_name != wanted:
        raise CheckpointMismatchError(
            f"ckpt={ckpt} holds a {model_name} model, not model={wanted}; drop model= or pick a {wanted} checkpoint")
    trained_on = hp.get("dataset")
    if (trained_on and trained_on != datamodule.name) or list(hp.get("class_names") or []) != list(datamodule.class_names):
        raise CheckpointMismatchError(
            f"ckpt={ckpt} was trained on dataset={trained_on} ({len(hp.get('class_names') or [])} classes), "
            f"but dataset={datamodule.name} ({datamodule.num_classes} classes) was asked for: "
            f"pass dataset={trained_on} or a checkpoint trained on {datamodule.name}")
    net = module.net.to(device).eval()
    _warn_other_style(run_dir, datamodule)
    datamodule.setup("test")
    train_metrics = None
    if run_dir is not None and (run_dir / "test_metrics.json").is_file():
        train_metrics = json.loads((run_dir / "test_metrics.json").read_text())
    ctx = VisContext(net=net, model_name=model_name, dataset_name=datamodule.name,
                     class_names=list(datamodule.class_names), head_classes=dict(module.head_classes),
                     ckpt=ckpt, train_run_dir=run_dir, train_metrics=train_metrics,
                     datamodule=datamodule, device=device)
    ctx.layer_rows = layer_table(net, ctx.input_shape)
    return ctx
