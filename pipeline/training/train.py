"""The train job: compose -> validate -> fit -> test the best checkpoint -> write artefacts.

Called by ``train.py`` with the config Hydra composed; see ``conf/train.yaml`` for the knobs
and the README for what a run directory holds.
"""
from __future__ import annotations

import datetime as dt
import logging
import signal
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar
from pytorch_lightning.utilities import rank_zero_only

from pipeline.config import check_model_fits_data, validate_train_config
from pipeline.errors import NoCheckpointError
from pipeline.training import artifacts
from pipeline.training.registry import find_resumable_checkpoint, write_run_record

log = logging.getLogger(__name__)


def _instantiate_all(group: DictConfig | None) -> list:
    if not group:
        return []
    return [hydra.utils.instantiate(node) for node in group.values() if node]


def resolve_resume(cfg: DictConfig) -> str | None:
    resume = cfg.get("resume")
    if not resume:
        return None
    if resume == "latest":
        return str(find_resumable_checkpoint(Path(cfg.paths.outputs_dir), cfg.data.name, cfg.model.name))
    path = Path(resume)
    if not path.is_file():
        raise NoCheckpointError(f"resume={resume}: no such checkpoint file. Use a path to a .ckpt file "
                                f"(e.g. outputs/train/.../checkpoints/last.ckpt) or resume=latest.")
    return str(path)


def build(cfg: DictConfig):
    """Datamodule, LightningModule and Trainer from the config (nothing is loaded or trained)."""
    datamodule = hydra.utils.instantiate(cfg.data)
    module = hydra.utils.instantiate(cfg.model, class_names=datamodule.class_names, dataset=datamodule.name)
    check_model_fits_data(cfg.model.name, module.head_classes, datamodule.name, datamodule.heads,
                          datamodule.num_classes)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    if not cfg.trainer.get("enable_progress_bar", True):  # trainer.enable_progress_bar=false wins over the callback
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks,
        logger=_instantiate_all(cfg.get("logger")) or False,
        default_root_dir=cfg.paths.output_dir)
    return datamodule, module, trainer


def run_training(cfg: DictConfig) -> dict:
    validate_train_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    resume = resolve_resume(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule, module, trainer = build(cfg)
    datamodule.setup("fit")  # load (or generate) the data before anything is written: missing files fail here

    record = {"status": "running", "dataset": cfg.data.name, "model": cfg.model.name,
              "started": dt.datetime.now().isoformat(timespec="seconds"), "run_dir": str(run_dir.resolve()),
              "resumed_from": resume}
    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        write_run_record(run_dir, record)

    start = time.perf_counter()
    sigint = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    except BaseException:  # Ctrl-C (Lightning turns it into SystemExit(1)) or a crash
        if rank_zero_only.rank == 0:
            record.update(status="interrupted")
            write_run_record(run_dir, record)
            log.error("Training stopped early. Resume it with:  python train.py dataset=%s model=%s resume=latest",
                      cfg.data.name, cfg.model.name)
        raise
    finally:
        signal.signal(signal.SIGINT, sigint)  # Lightning ignores Ctrl-C after an interrupt
    fit_seconds = time.perf_counter() - start

    ckpt_cb = trainer.checkpoint_callback
    best = ckpt_cb.best_model_path if ckpt_cb is not None and ckpt_cb.best_model_path else None
    last = str(run_dir / "checkpoints" / "last.ckpt") if (run_dir / "checkpoints" / "last.ckpt").is_file() else None

    test = {}
    if cfg.get("test_after_fit", True):
        trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)
        test = module.test_results
    summary = {"status": "complete", "run_dir": run_dir, "best_checkpoint": best, "last_checkpoint": last,
               "fit_seconds": fit_seconds, "epochs": trainer.current_epoch, "global_step": trainer.global_step,
               "test": test, "main_head": module.main_head}
    if trainer.is_global_zero:
        artifacts.write_all(run_dir, cfg, module, datamodule, trainer, summary)
        record.update(status="complete", finished=dt.datetime.now().isoformat(timespec="microseconds"),
                      best_checkpoint=best, last_checkpoint=last,
                      test_accuracy=test.get(module.main_head, {}).get("accuracy"),
                      test_f1_macro=test.get(module.main_head, {}).get("f1_macro"))
        write_run_record(run_dir, record)
        print(artifacts.summary_screen(cfg, summary, datamodule))
    return summary
