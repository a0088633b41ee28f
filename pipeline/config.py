"""Checks on a composed config that Hydra's own type checks cannot express.

Each failure raises :class:`ConfigError` with the offending key, its value and what is valid,
before any data is loaded or any file is written.
"""
from __future__ import annotations

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


def _positive_number(cfg, key: str) -> None:
    value = _get(cfg, key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{key}={value!r} is invalid: it must be a positive number, e.g. {key}={_example(key)}")


def _example(key: str) -> str:
    return {"data.batch_size": "128", "trainer.max_epochs": "3", "model.optimizer.lr": "0.001"}.get(key, "1")


def validate_train_config(cfg: DictConfig) -> None:
    _positive_int(cfg, "data.batch_size")
    _positive_int(cfg, "data.eval_batch_size", required=False)
    _positive_int(cfg, "trainer.max_epochs", allow=(-1,))
    _positive_number(cfg, "model.optimizer.lr")
    if _get(cfg, "data.name") == "lines":
        _positive_int(cfg, "data.per_class")
    seed = _get(cfg, "seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r} is invalid: it must be an integer, e.g. seed=0")


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
