"""The train job: compose -> validate -> fit -> test the best checkpoint -> write artefacts.

Called by ``train.py`` with the config Hydra composed; see ``conf/train.yaml`` for the knobs
and the README for what a run directory holds.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelSummary, ProgressBar
from pytorch_lightning.utilities import rank_zero_only

from pipeline.config import check_model_fits_data, validate_train_config
from pipeline.training.tensorboard_figures import log_training_figures
from pipeline.errors import CnnvisError, ConfigError, NoCheckpointError
from pipeline.processes import this_process
from pipeline.run_dirs import check_run_dir_unused
from pipeline.training import artifacts
from pipeline.training.checkpoints import CheckpointLoadError, read_checkpoint
from pipeline.training.registry import find_resumable_run, write_run_record

log = logging.getLogger(__name__)


def _instantiate_all(group: DictConfig | None) -> list:
    if not group:
        return []
    return [hydra.utils.instantiate(node) for node in group.values() if node]


def resolve_resume(cfg: DictConfig) -> str | None:
    """The checkpoint ``resume=`` continues from, checked to load with ``weights_only=True``.

    ``resume=latest``: the newest interrupted run of this dataset+model (never a complete one);
    the log says which run and checkpoint."""
    resume = cfg.get("resume")
    if not resume:
        return None
    if resume == "latest":
        found = find_resumable_run(Path(cfg.paths.outputs_dir), cfg.data.name, cfg.model.name)
        path, what = found.checkpoint, f"resume=latest picked {found.checkpoint}, but that file"
        log.info("resume=latest: continuing the %s run %s (started %s) from %s", found.state, found.run_dir,
                 found.record.get("started", "?"), found.checkpoint.name)
        others = found.others
    else:
        path, what, others = Path(str(resume)).expanduser(), f"resume={resume}", ()
        if not path.is_file():
            raise NoCheckpointError(f"resume={resume}: no such checkpoint file. Use a path to a .ckpt file "
                                    f"(e.g. outputs/train/.../checkpoints/last.ckpt) or resume=latest.")
    try:
        read_checkpoint(path, what)
    except CheckpointLoadError as exc:
        skip = (f" To skip it, move or delete it (resume=latest then takes the next candidate"
                f"{': ' + str(others[0]) if others else ''}), or pass resume=PATH of another checkpoint."
                if resume == "latest" else " Pass resume=PATH of another checkpoint, or resume=latest.")
        raise type(exc)(f"{exc}{skip}") from exc
    return str(path)


def _newest_checkpoint(run_dir: Path) -> Path | None:
    found = [p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.stem in ("interrupted", "last")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _record_stop(run_dir: Path, record: dict, exc: BaseException, trainer, cfg: DictConfig) -> None:
    """run.json after fit stopped early: ``failed`` with the reason (bad input, diverged loss, a crash
    before the first step) or ``interrupted`` (Ctrl-C, a crash mid-training: resumable)."""
    now = dt.datetime.now().isoformat(timespec="microseconds")
    ctrl_c = isinstance(exc, (KeyboardInterrupt, SystemExit))
    if isinstance(exc, CnnvisError) or (not ctrl_c and trainer.global_step == 0):
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        record.update(status="failed", finished=now, error=first if isinstance(exc, CnnvisError)
                      else f"{type(exc).__name__}: {first}")
        write_run_record(run_dir, record)
        return
    record.update(status="interrupted", stopped=now, epoch=trainer.current_epoch, global_step=trainer.global_step,
                  reason="Ctrl-C" if ctrl_c else f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")
    write_run_record(run_dir, record)
    ckpt = _newest_checkpoint(run_dir)
    if ckpt is not None:
        log.error("Training stopped early (%s). Continue it with:  python train.py dataset=%s model=%s resume=%s  "
                  "(resume=latest picks this run too)", record["reason"], cfg.data.name, cfg.model.name, ckpt)


def _compile_setting(cfg: DictConfig) -> bool:
    """``trainer.compile``: torch.compile the network (Inductor's cache kept under ``paths.cache_dir``)."""
    value = cfg.trainer.get("compile", False)
    if not isinstance(value, bool):
        raise ConfigError(f"trainer.compile={value!r} is invalid: true (torch.compile the network) or false")
    if value:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(cfg.paths.cache_dir) / "torchinductor"))
    return value


def lightning_trainer_config(cfg: DictConfig) -> DictConfig:
    """``cfg.trainer`` without the keys that are ours, not Lightning Trainer arguments (``compile``)."""
    return OmegaConf.create({k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items()
                             if k != "compile"})


def build(cfg: DictConfig):
    """Datamodule, LightningModule and Trainer from the config (nothing is loaded or trained)."""
    from pipeline.data.image_folder_datamodule import fill_inferred

    datamodule = hydra.utils.instantiate(cfg.data)
    fill_inferred(cfg, datamodule)  # data.channels / num_classes a dataset inferred (image_folder)
    module = hydra.utils.instantiate(cfg.model, class_names=datamodule.class_names, dataset=datamodule.name)
    check_model_fits_data(cfg.model.name, module.head_classes, datamodule.name, datamodule.heads,
                          datamodule.num_classes)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    if not cfg.trainer.get("enable_progress_bar", True):  # trainer.enable_progress_bar=false wins over the callback
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if not cfg.trainer.get("enable_model_summary", True):  # likewise trainer.enable_model_summary=false
        callbacks = [c for c in callbacks if not isinstance(c, ModelSummary)]
    module.compile_net = _compile_setting(cfg)
    trainer: pl.Trainer = hydra.utils.instantiate(
        lightning_trainer_config(cfg), callbacks=callbacks,
        logger=_instantiate_all(cfg.get("logger")) or False,
        default_root_dir=cfg.paths.output_dir)
    return datamodule, module, trainer


def run_training(cfg: DictConfig) -> dict:
    validate_train_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    if rank_zero_only.rank == 0:  # other DDP processes share rank 0's directory
        check_run_dir_unused(run_dir, cfg)  # another run's results are never overwritten (resume= into it excepted)
    resume = resolve_resume(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule, module, trainer = build(cfg)
    datamodule.setup("fit")  # load (or generate) the data before anything is written: missing files fail here

    record = {"status": "running", "dataset": cfg.data.name, "model": cfg.model.name,
              "started": dt.datetime.now().isoformat(timespec="seconds"), "run_dir": str(run_dir.resolve()),
              "resumed_from": resume, **this_process()}
    previous_metrics = None
    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        previous_metrics = artifacts.set_aside_metrics(run_dir) if resume else None
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        write_run_record(run_dir, record)

    start = time.perf_counter()
    sigint = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    except BaseException as exc:  # Ctrl-C (Lightning turns it into SystemExit(1)), a diverged loss, a crash
        if rank_zero_only.rank == 0:
            _record_stop(run_dir, record, exc, trainer, cfg)
        raise
    finally:
        signal.signal(signal.SIGINT, sigint)  # Lightning ignores Ctrl-C after an interrupt
    fit_seconds = time.perf_counter() - start

    ckpt_cb = trainer.checkpoint_callback
    best = ckpt_cb.best_model_path if ckpt_cb is not None and ckpt_cb.best_model_path else None
    last = str(run_dir / "checkpoints" / "last.ckpt") if (run_dir / "checkpoints" / "last.ckpt").is_file() else None

    test = {}
    if cfg.get("test_after_fit", True):
        trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)
        test = module.test_results
    best_val = ckpt_cb.best_model_score if ckpt_cb is not None else None
    best_val = float(best_val) if best_val is not None else None
    test_acc = test.get(module.main_head, {}).get("accuracy")
    summary = {"status": "complete", "run_dir": run_dir, "best_checkpoint": best, "last_checkpoint": last,
               "fit_seconds": fit_seconds, "epochs": trainer.current_epoch, "global_step": trainer.global_step,
               "test": test, "main_head": module.main_head, "best_val_acc": best_val,
               "objective": test_acc if cfg.get("optimized_metric") == "test/acc" else best_val}
    summary["cut_short"] = artifacts.cut_short_reasons(trainer, datamodule)  # never picked by visualize's search
    if trainer.is_global_zero:
        if previous_metrics is not None:
            artifacts.join_metrics(previous_metrics, run_dir / "metrics.csv")
        artifacts.write_all(run_dir, cfg, module, datamodule, trainer, summary)
        log_training_figures(trainer, run_dir)  # logger=tensorboard: curves and confusion matrices there too
        record.update(status="complete", finished=dt.datetime.now().isoformat(timespec="microseconds"),
                      best_checkpoint=best, last_checkpoint=last,
                      test_accuracy=test.get(module.main_head, {}).get("accuracy"), best_val_acc=best_val,
                      test_f1_macro=test.get(module.main_head, {}).get("f1_macro"),
                      cut_short=summary["cut_short"])
        write_run_record(run_dir, record)
        print(artifacts.summary_screen(cfg, summary, datamodule))
    return summary
