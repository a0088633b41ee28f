"""Checks on a composed config that Hydra's own type checks cannot express.

Each failure raises :class:`ConfigError` with the offending key, its value and what is valid,
before any data is loaded or any file is written.
"""
from __future__ import annotations

import math

from omegaconf import DictConfig

from pipeline.errors import ConfigError


def _get(cfg: DictConfig, key: str):
    node = cfg
    for part in key.split("."):
        if node is None or part not in node:
            return None
        node = node[part]
    return node


def _positive_int(cfg, key: str, required: bool = True, allow: tuple = ()) -> None:
    value = _get(cfg, key)
    if value is None and not required:
        return
    if value in allow:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        extra = f" (or {', '.join(map(str, allow))})" if allow else ""
        raise ConfigError(f"{key}={value!r} is invalid: it must be a positive integer{extra}, "
                          f"e.g. {key}={_example(key)}")


def _positive_number(cfg, key: str, allow_zero: bool = False) -> None:
    """A finite number > 0 (``allow_zero``: >= 0); inf and nan are refused."""
    value = _get(cfg, key)
    if value is None:
        return
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value < 0 or (value == 0 and not allow_zero)):
        what = "a finite number >= 0" if allow_zero else "a finite positive number"
        raise ConfigError(f"{key}={value!r} is invalid: it must be {what}, e.g. {key}={_example(key)}")


def _example(key: str) -> str:
    return {"data.batch_size": "128", "trainer.max_epochs": "3", "model.optimizer.lr": "0.001",
            "model.optimizer.weight_decay": "0.0005"}.get(key, "1")


#: What to pass for a required (``???``) config value, by key.
REQUIRED_HINTS = {
    "data.root": "data.root=DIR (dataset=image_folder: a folder of class folders of images; dataset=lines_folder: "
                 "the folder of class folders L_W_A_C/, e.g. the course's classes/, or of L_W_A_C_<id>.jpg files)",
    "model.net._target_": "model.net._target_=my_package.MyNet (model=custom: your nn.Module class)",
    "ckpt": "ckpt=PATH (a checkpoint written by train.py, e.g. outputs/train/lines/multihead/<time>/checkpoints/best.ckpt)",
}


def check_required(cfg: DictConfig) -> None:
    """Required values (``???`` in the YAML) that were not given: one message naming what to pass."""
    from omegaconf import OmegaConf

    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not str(k).startswith("hydra"))
    if missing:
        hints = "; ".join(f"pass {REQUIRED_HINTS.get(k, f'{k}=...')}" for k in missing)
        raise ConfigError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: {hints}")


#: what train.py returns to a sweeper (Optuna): best validation accuracy or test accuracy of the best checkpoint
OPTIMIZED_METRICS = ("val/acc", "test/acc")


def validate_train_config(cfg: DictConfig) -> None:
    check_required(cfg)
    _positive_int(cfg, "data.batch_size")
    _positive_int(cfg, "data.eval_batch_size", required=False)
    _positive_int(cfg, "trainer.max_epochs", allow=(-1,))
    _positive_number(cfg, "model.optimizer.lr")
    _positive_number(cfg, "model.optimizer.weight_decay", allow_zero=True)
    if _get(cfg, "data.name") == "lines":
        _positive_int(cfg, "data.per_class")
    metric = _get(cfg, "optimized_metric")
    if metric is not None and metric not in OPTIMIZED_METRICS:
        raise ConfigError(f"optimized_metric={metric!r} is invalid: use one of {', '.join(OPTIMIZED_METRICS)}")
    seed = _get(cfg, "seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r} is invalid: it must be an integer, e.g. seed=0")
    test_fraction = _get(cfg, "data.test_fraction")
    if isinstance(test_fraction, (int, float)) and not isinstance(test_fraction, bool) and test_fraction >= 1.0:
        raise ConfigError(
            f"data.test_fraction={test_fraction} leaves no images to train on: it is for testing a trained "
            f"checkpoint on every image, with eval.py: python eval.py ckpt=PATH dataset={_get(cfg, 'data.name')} "
            f"data.test_fraction=1.0 [data.root=DIR]. To train, keep it below 1 (default 0.4).")


def check_model_fits_data(model_name: str, head_classes: dict, data_name: str, data_heads, num_classes: int) -> None:
    """A multi-head model needs a dataset whose label splits into the same heads (lines);
    a single-head model's class count must match the dataset's."""
    if len(head_classes) > 1:
        if data_heads is None or dict(data_heads) != dict(head_classes):
            raise ConfigError(
                f"model={model_name} has one head per line variation ({', '.join(head_classes)}) and only "
                f"trains on dataset=lines; dataset={data_name} has {num_classes} plain classes. "
                f"Use model=cnn_basic or model=cnn_deep with dataset={data_name}, or dataset=lines with model={model_name}.")
    else:
        k = next(iter(head_classes.values()))
        if k != num_classes:
            raise ConfigError(f"model={model_name} outputs {k} classes but dataset={data_name} has {num_classes}; "
                              f"leave model.net.num_classes at its default (${{data.num_classes}})")


# -- structured config schemas ---------------------------------------------------------------
# Hydra validates every composed config against these dataclasses (types, unknown keys), so
# `data.batch_size=abc` or `data.per_clas=5` fail at composition with Hydra's own message.
# The YAML files extend them (`defaults: [base_lines, _self_]`); range checks stay above.
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Dict, List, Optional  # noqa: E402

from hydra.core.config_store import ConfigStore  # noqa: E402
from omegaconf import MISSING  # noqa: E402

from pipeline.data.line_styles import Augment  # noqa: E402
from pipeline.jobs.activations import ActivationsJob  # noqa: E402
from pipeline.jobs.attribution_maps import AttributionMapsJob  # noqa: E402
from pipeline.jobs.evaluate import EvaluateJob  # noqa: E402
from pipeline.jobs.filters import FiltersJob  # noqa: E402
from pipeline.jobs.probe import ProbeJob  # noqa: E402
from pipeline.jobs.settings import settings_schema  # noqa: E402


@dataclass
class DataSchema:
    _target_: str = MISSING
    name: str = MISSING
    channels: int = MISSING
    image_size: int = 28
    num_classes: int = MISSING
    batch_size: int = 128
    eval_batch_size: Optional[int] = None
    split_seed: int = 0


_AUG = Augment()  # the defaults live in one place: pipeline/data/line_styles.py


@dataclass
class AugmentSchema:
    """data.augment: domain randomization of the training images (pipeline/data/line_styles.py)."""
    enabled: Optional[bool] = _AUG.enabled
    share: float = _AUG.share
    blocks: float = _AUG.blocks
    brightness: List[float] = field(default_factory=lambda: list(_AUG.brightness))
    blur: List[float] = field(default_factory=lambda: list(_AUG.blur))
    hard_edges: float = _AUG.hard_edges
    jpeg_quality: List[int] = field(default_factory=lambda: list(_AUG.jpeg_quality))
    jpeg_420: float = _AUG.jpeg_420
    no_jpeg: float = _AUG.no_jpeg
    width_jitter: List[float] = field(default_factory=lambda: list(_AUG.width_jitter))
    length_jitter: List[float] = field(default_factory=lambda: list(_AUG.length_jitter))
    angle_jitter: float = _AUG.angle_jitter
    uniform_position: float = _AUG.uniform_position
    pillow: float = _AUG.pillow
    whole_pixel_ends: float = _AUG.whole_pixel_ends


@dataclass
class LinesDataSchema(DataSchema):
    per_class: int = 1000
    generator_seed: int = 0
    margin: float = 1.0
    style: str = "course"
    augment: AugmentSchema = field(default_factory=AugmentSchema)
    test_fraction: float = 0.4
    val_fraction: float = 0.1
    cache_dir: Optional[str] = None
    progress: bool = True


@dataclass
class IdxDataSchema(DataSchema):
    data_dir: Optional[str] = None
    download: bool = True
    mirrors: Optional[List[str]] = None
    cache_dir: Optional[str] = None
    split: str = "standard"
    val_size: int = 5000
    test_fraction: float = 0.4
    max_train_samples: Optional[int] = None
    max_test_samples: Optional[int] = None


@dataclass
class LinesFolderDataSchema(DataSchema):
    """dataset=lines_folder: the lines classes read from image files (pipeline/data/lines_folder.py)."""
    root: str = MISSING
    test_fraction: float = 0.4
    split_by: str = "distinct"
    val_fraction: float = 0.1
    cache_dir: Optional[str] = None
    progress: bool = True


@dataclass
class ImageFolderDataSchema(DataSchema):
    """dataset=image_folder (typed, no unknown keys); channels, num_classes: null = inferred
    (pipeline/data/image_folder_datamodule.py)."""
    root: str = MISSING
    channels: Optional[int] = None
    num_classes: Optional[int] = None
    image_size: int = 64
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    cache_dir: Optional[str] = None
    progress: bool = True


@dataclass
class RenderSchema:
    """render: every saved figure's format and resolution (conf/render/default.yaml, pipeline/rendering/output.py)."""
    format: str = "png"
    dpi: Optional[int] = None
    workers: Optional[int] = None


@dataclass
class TrainSchema:
    task: str = "train"
    seed: int = 0
    resume: Optional[str] = None
    test_after_fit: bool = True
    optimized_metric: str = "val/acc"
    torch_threads: Optional[int] = None   # pipeline/parallel.py
    keep_freed_memory: bool = True        # pipeline/allocator.py
    data: Any = MISSING
    model: Any = MISSING
    trainer: Any = MISSING
    callbacks: Any = field(default_factory=dict)
    logger: Any = field(default_factory=dict)
    paths: Any = MISSING
    render: RenderSchema = field(default_factory=RenderSchema)


# the typed blocks of the built-in jobs, read from their constructors (pipeline/jobs/settings.py)
ActivationsSettings = settings_schema(ActivationsJob)
FiltersSettings = settings_schema(FiltersJob)
AttributionMapsSettings = settings_schema(AttributionMapsJob)
EvaluateSettings = settings_schema(EvaluateJob)
ProbeSettings = settings_schema(ProbeJob)


@dataclass
class JobSelection:
    """job: what ``python visualize.py`` runs (conf/job/<name>.yaml; job=all runs several)."""
    name: str = MISSING
    run: List[str] = MISSING


@dataclass
class VisualizeSchema:
    task: str = "visualize"
    ckpt: Optional[str] = None
    search_cut_short: bool = False   # ckpt=null also picks runs cut short (fast_dev_run, limit_*_batches, max_steps)
    image: Any = None
    num_images: int = 6
    layer: Any = None
    device: str = "auto"
    batch_size: int = 256
    seed: int = 0
    overwrite: bool = False
    torch_threads: Optional[int] = None   # pipeline/parallel.py
    keep_freed_memory: bool = True        # pipeline/allocator.py
    data: Any = MISSING
    model: Any = None
    job: JobSelection = field(default_factory=JobSelection)
    paths: Any = MISSING
    render: RenderSchema = field(default_factory=RenderSchema)
    methods: Dict[str, Any] = field(default_factory=dict)   # conf/methods/: name -> _target_ + settings
    # each built-in job's block (conf/job/<name>.yaml), typed by its constructor's keyword arguments;
    # a new job's block needs no entry here: the root accepts it and build_jobs checks it the same way
    activations: ActivationsSettings = field(default_factory=ActivationsSettings)
    filters: FiltersSettings = field(default_factory=FiltersSettings)
    gradcam: AttributionMapsSettings = field(default_factory=AttributionMapsSettings)
    attribution: AttributionMapsSettings = field(default_factory=AttributionMapsSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    probe: ProbeSettings = field(default_factory=ProbeSettings)


@dataclass
class EvalSchema:
    task: str = "eval"
    ckpt: str = MISSING
    accelerator: str = "cpu"
    progress_bar: bool = False
    torch_threads: Optional[int] = None   # pipeline/parallel.py
    keep_freed_memory: bool = True        # pipeline/allocator.py
    data: Any = MISSING
    paths: Any = MISSING
    render: RenderSchema = field(default_factory=RenderSchema)


def _open_root(schema):
    """The schema with new top-level keys allowed while the config files are merged (a new job's
    block, conf/job/<name>.yaml); Hydra closes the composed config again, so an override of an
    unknown key still fails. The typed keys keep their types."""
    from omegaconf import OmegaConf

    node = OmegaConf.structured(schema)
    OmegaConf.set_struct(node, False)
    return node


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore (called by the entry scripts and the tests)."""
    from pipeline.help_groups import register_help_resolver, use_lazy_help

    register_help_resolver()   # ${help_groups:} in conf/hydra/*.yaml's help template
    use_lazy_help()            # --help: Hydra lists every config group only where the template asks
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainSchema)
    cs.store(name="visualize_schema", node=_open_root(VisualizeSchema))
    cs.store(group="dataset", name="base_lines", node=LinesDataSchema, package="data")
    cs.store(group="dataset", name="base_idx", node=IdxDataSchema, package="data")
    cs.store(group="dataset", name="base_lines_folder", node=LinesFolderDataSchema, package="data")
    cs.store(group="dataset", name="base_image_folder", node=ImageFolderDataSchema, package="data")
    cs.store(name="eval_schema", node=EvalSchema)
