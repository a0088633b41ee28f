"""The eval job: test a trained checkpoint on a dataset's test split (``python eval.py``).

compose -> check the config -> build the datamodule -> load the checkpoint (``weights_only``)
-> check that its classes and heads are the dataset's -> load the data -> ``trainer.test`` ->
``test_metrics.json`` and ``confusion/`` in the same format as train.py -> one-screen summary.
Every check that can fail runs before anything is written to the run directory.
"""
from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from pipeline.config import _positive_int, check_required
from pipeline.errors import CnnvisError, ConfigError, NoCheckpointError
from pipeline.training import artifacts

log = logging.getLogger(__name__)


class CheckpointDataMismatch(CnnvisError, ValueError):
    """The checkpoint's classes or heads are not the dataset's."""


def resolve_ckpt(cfg: DictConfig) -> Path:
    if OmegaConf.is_missing(cfg, "ckpt") or not cfg.get("ckpt"):
        check_required(cfg)  # names ckpt (and any other missing value) with what to pass
        raise ConfigError("ckpt is required: pass ckpt=PATH, a checkpoint written by train.py")
    path = Path(str(cfg.ckpt)).expanduser()
    if path.is_dir():
        from pipeline.errors import checkpoint_directory_hint

        raise NoCheckpointError(f"ckpt={cfg.ckpt} is a directory, not a checkpoint file: {checkpoint_directory_hint(path)}")
    if not path.is_file():
        raise NoCheckpointError(f"ckpt={cfg.ckpt}: no such file. Pass the path of a checkpoint written by train.py, "
                                f"e.g. outputs/train/<dataset>/<model>/<time>/checkpoints/best.ckpt")
    return path.resolve()


def load_checkpoint(path: Path):
    """The LitClassifier of a train.py checkpoint, on the CPU, loaded with ``weights_only=True``
    (a file that would run code is refused, naming what it holds)."""
    from pipeline.training.checkpoints import load_lit_module

    return load_lit_module(path, f"ckpt={path}", map_location="cpu")


def _describe(names: list[str], heads: dict | None) -> str:
    shown = ", ".join(names[:3]) + (f", ..., {names[-1]}" if len(names) > 3 else "")
    text = f"{len(names)} classes ({shown})"
    if heads and len(heads) > 1:
        text += f" in heads {', '.join(f'{h} ({k})' for h, k in heads.items())}"
    return text


def check_checkpoint_fits(module, ckpt: Path, datamodule) -> None:
    """The checkpoint must predict the dataset's classes, with the same heads (multihead: the
    four line variations). A lines checkpoint fits lines_folder and back: same classes."""
    hp = module.hparams
    ck_names = list(hp.get("class_names") or [])
    ck_heads = dict(module.head_classes)
    dm_names = list(datamodule.class_names)
    dm_heads = dict(datamodule.heads or {})
    if len(ck_heads) > 1:  # multihead: the dataset must split its labels into the same heads
        fits = ck_names == dm_names and dm_heads == ck_heads
    else:
        fits = ck_names == dm_names and next(iter(ck_heads.values())) == len(dm_names)
    if not fits:
        trained_on = hp.get("dataset") or "another dataset"
        raise CheckpointDataMismatch(
            f"ckpt={ckpt} ({hp.get('name', 'model')}, trained on {trained_on}) predicts {_describe(ck_names, ck_heads)}; "
            f"dataset={datamodule.name} has {_describe(dm_names, dm_heads)}. Evaluate it on a dataset with the "
            f"same classes (dataset={trained_on}), or pass a checkpoint trained on {datamodule.name}.")


def validate_eval_config(cfg: DictConfig) -> None:
    check_required(cfg)
    _positive_int(cfg, "data.batch_size")
    _positive_int(cfg, "data.eval_batch_size", required=False)
    if str(cfg.get("accelerator", "cpu")) not in ("cpu", "auto", "gpu", "cuda"):
        raise ConfigError(f"accelerator={cfg.accelerator!r} is invalid: use cpu, auto or gpu")


def run_evaluation(cfg: DictConfig) -> dict:
    ckpt = resolve_ckpt(cfg)
    validate_eval_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    datamodule = hydra.utils.instantiate(cfg.data)  # checks the data arguments
    module = load_checkpoint(ckpt)
    check_checkpoint_fits(module, ckpt, datamodule)
    datamodule.setup("test")  # reads/generates the data: every problem with the files is raised here
    n_test = len(datamodule.test)
    if n_test == 0:
        raise ConfigError(f"dataset={datamodule.name} has no test images with data.test_fraction="
                          f"{cfg.data.get('test_fraction')}; use data.test_fraction=1.0 to test on every image")

    trainer = pl.Trainer(accelerator=str(cfg.get("accelerator", "cpu")), devices=1, logger=False,
                         enable_checkpointing=False, enable_model_summary=False,
                         enable_progress_bar=bool(cfg.get("progress_bar", False)), default_root_dir=str(run_dir))
    trainer.test(module, datamodule=datamodule, verbose=False)

    hp = module.hparams
    run_dir.mkdir(parents=True, exist_ok=True)
    root = getattr(datamodule, "root", None)
    extra = {"trained_on": hp.get("dataset"), "split": "test", "test_fraction": cfg.data.get("test_fraction"),
             "data_root": None if root is None else str(Path(root).resolve())}
    distinct = getattr(datamodule, "distinct_images", None) or {}
    if "test" in distinct:  # lines_folder: files that are exact copies count once here
        extra["distinct_test_images"] = distinct["test"]
    from pipeline.training.leak_check import leak_metrics

    leak = leak_metrics(module, datamodule)
    if leak is not None:
        extra["leak"] = leak
    metrics = artifacts.write_test_results(run_dir, module, dataset=datamodule.name, model_name=hp.get("name", "model"),
                                           checkpoint=ckpt, test_images=n_test, class_names=datamodule.class_names,
                                           extra=extra)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    from pipeline.report.train_report import write_eval_report

    write_eval_report(run_dir, model=hp.get("name", "model"), dataset=datamodule.name, checkpoint=ckpt,
                      trained_on=hp.get("dataset"), test_images=n_test, test=module.test_results,
                      main_head=module.main_head)
    summary = {"run_dir": run_dir, "checkpoint": ckpt, "model": hp.get("name", "model"), "trained_on": hp.get("dataset"),
               "dataset": datamodule.name, "test_images": n_test, "test": module.test_results,
               "main_head": module.main_head, "metrics": metrics, "leak": leak}
    print(summary_screen(cfg, summary, datamodule))
    return summary


def summary_screen(cfg: DictConfig, summary: dict, datamodule) -> str:
    n_all = sum(len(s) for s in (datamodule.train, datamodule.val, datamodule.test) if s is not None)
    share = "every image" if summary["test_images"] == n_all else f"test split of {n_all} images"
    where = f"  root={cfg.data.root}" if "root" in cfg.data else ""
    lines = ["", "=" * 72, f" {summary['model']} checkpoint tested on {summary['dataset']}", "=" * 72,
             f" checkpoint: {summary['checkpoint']}",
             f"             ({summary['model']}, trained on {summary['trained_on']})",
             f" dataset:    {summary['dataset']}{where}",
             f" images:     {summary['test_images']} ({share})"]
    distinct = (getattr(datamodule, "distinct_images", None) or {}).get("test")
    if distinct is not None:
        lines.append(f"             {distinct} distinct: {summary['test_images'] - distinct} files are exact copies"
                     if distinct < summary["test_images"] else f"             all distinct")
    for head, m in summary["test"].items():
        mark = " <- main" if head == summary["main_head"] else ""
        lines.append(f" {head:<10}  accuracy {m['accuracy']:.4f}   macro F1 {m['f1_macro']:.4f}{mark}")
    from pipeline.training.leak_check import describe

    lines += describe(summary.get("leak"))
    run_dir = Path(summary["run_dir"])
    lines += [f" output dir: {run_dir}  (test_metrics.json, confusion/)", "=" * 72]
    return "\n".join(lines)
