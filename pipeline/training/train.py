"""The train job: compose -> validate -> fit -> test the best checkpoint -> write artefacts.

Called by ``train.py`` with the config Hydra composed; see ``conf/train.yaml`` for the knobs
and the README for what a run directory holds.
"""
from __future__ import annotations

import datetime as dt
import json
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
from pipeline.leftovers import write_text_atomic
from pipeline.processes import this_process
from pipeline.run_dirs import check_run_dir_unused
from pipeline.training import artifacts
from pipeline.training.checkpoint_io import AtomicCheckpointIO
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
    the log says which run and checkpoint. A candidate that does not load (0 bytes, truncated,
    damaged) is skipped with a warning naming it, and the next one is tried."""
    resume = cfg.get("resume")
    if not resume:
        return None
    if resume == "latest":
        found = find_resumable_run(Path(cfg.paths.outputs_dir), cfg.data.name, cfg.model.name)
        candidates = [found.checkpoint, *found.others]
        skipped = []
        for path in candidates:
            try:
                read_checkpoint(path, f"resume=latest picked {path}, but that file")
            except CheckpointLoadError as exc:
                log.warning("resume=latest: skipping %s: it does not load (%s)", path, str(exc).splitlines()[0])
                skipped.append(path)
                continue
            first = path == found.checkpoint
            log.info("resume=latest: continuing the run %s from %s (%s%s)", path.parent.parent, path.name,
                     f"{found.state}, started {found.record.get('started', '?')}" if first else "an older candidate",
                     "" if not skipped else f"; {len(skipped)} newer checkpoint(s) skipped: they do not load")
            return str(path)
        raise NoCheckpointError(
            f"resume=latest: no checkpoint of the interrupted runs of dataset={cfg.data.name} model={cfg.model.name} "
            f"loads ({', '.join(str(p) for p in skipped)}: damaged or truncated). Train a new run (drop resume=), or "
            f"pass resume=PATH of another checkpoint.")
    path = Path(str(resume)).expanduser()
    if not path.is_file():
        raise NoCheckpointError(f"resume={resume}: no such checkpoint file. Use a path to a .ckpt file "
                                f"(e.g. outputs/train/.../checkpoints/last.ckpt) or resume=latest.")
    try:
        read_checkpoint(path, f"resume={resume}")
    except CheckpointLoadError as exc:
        raise type(exc)(f"{exc} Pass resume=PATH of another checkpoint, or resume=latest.") from exc
    return str(path)


class ResumeMismatchError(CnnvisError, ValueError):
    """``resume=`` names a checkpoint of another dataset, model or network shape than this run's."""


def check_resume_fits(resume: str, cfg: DictConfig, module, datamodule) -> None:
    """The checkpoint ``resume=`` names must be this run's model, trained on this dataset's classes
    (eval.py's check, :func:`pipeline.training.evaluate.check_checkpoint_fits`), with the same network
    (every weight's name and shape): checked before anything is written."""
    from pipeline.training.checkpoints import load_lit_module
    from pipeline.training.evaluate import CheckpointDataMismatch, check_checkpoint_fits

    what = f"resume={cfg.get('resume')}" + (f" ({resume})" if str(cfg.get("resume")) != resume else "")
    saved = load_lit_module(Path(resume), what)
    hp = saved.hparams
    ck_model, ck_data = hp.get("name", "model"), hp.get("dataset") or "another dataset"
    again = (f"To continue it, run it with its own dataset and model: python train.py dataset={ck_data} "
             f"model={ck_model} resume={resume}; to train dataset={cfg.data.name} model={cfg.model.name}, drop "
             f"resume= or pass a checkpoint of that pair (resume=latest finds one).")
    if ck_model != cfg.model.name:
        raise ResumeMismatchError(f"{what} holds a {ck_model} model (trained on dataset={ck_data}), not "
                                  f"model={cfg.model.name}. {again}")
    try:
        check_checkpoint_fits(saved, Path(resume), datamodule)
    except CheckpointDataMismatch:
        raise ResumeMismatchError(
            f"{what} was trained on dataset={ck_data} ({len(hp.get('class_names') or [])} classes: "
            f"{', '.join(list(hp.get('class_names') or [])[:3])}, ...), but this run is dataset={datamodule.name} "
            f"({len(datamodule.class_names)} classes: {', '.join(list(datamodule.class_names)[:3])}, ...). {again}") from None
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in saved.state_dict().items()}
    diff = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
    if diff:
        k = diff[0]
        raise ResumeMismatchError(
            f"{what} holds another {ck_model} network than this run's config builds ({len(diff)} weight(s) differ, "
            f"first {k}: {have.get(k, 'absent')} in the checkpoint, {want.get(k, 'absent')} here): the model.net "
            f"settings differ. Resume with the settings of the run that wrote it (its config.yaml), or drop resume=.")


def is_ctrl_c(exc: BaseException) -> bool:
    """Ctrl-C, also as Lightning reports it: a ``SystemExit(1)`` raised while handling a KeyboardInterrupt."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    return isinstance(exc, SystemExit) and isinstance(exc.__context__, KeyboardInterrupt)


def _write_failure(exc: BaseException, cfg: DictConfig) -> str | None:
    """The message for a file the run could not write (full disk, read-only folder), else None."""
    from pipeline.cli import user_error
    from pipeline.training.checkpoint_io import WriteError

    if isinstance(exc, WriteError):
        return str(exc)
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
        err = user_error(exc, cfg)
        return None if err is None else str(err)
    return None


def _record_stop(run_dir: Path, record: dict, exc: BaseException, trainer, cfg: DictConfig,
                 after_fit: bool = False) -> None:
    """run.json after the run stopped early: ``failed`` with the reason (bad input, a file it could not
    write, a diverged loss, a crash before the first step or after training) or ``interrupted``
    (Ctrl-C at any phase, a crash mid-training: resumable)."""
    now = dt.datetime.now().isoformat(timespec="microseconds")
    ctrl_c = is_ctrl_c(exc)
    write = None if ctrl_c else _write_failure(exc, cfg)
    if write is not None or isinstance(exc, CnnvisError) or (not ctrl_c and (trainer.global_step == 0 or after_fit)):
        first = write or (str(exc).splitlines() or [type(exc).__name__])[0]
        record.update(status="failed", finished=now, error=first if (write or isinstance(exc, CnnvisError))
                      else f"{type(exc).__name__}: {first}")
        _write_record_anyway(run_dir, record)
        ckpt = _newest_loadable_checkpoint(run_dir)
        if write is not None and ckpt is not None:
            log.error("The run's last whole checkpoint is %s: once there is space, continue it with:  python train.py "
                      "dataset=%s model=%s resume=%s", ckpt, cfg.data.name, cfg.model.name, ckpt)
        return
    record.update(status="interrupted", stopped=now, epoch=trainer.current_epoch, global_step=trainer.global_step,
                  reason="Ctrl-C" if ctrl_c else f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")
    _write_record_anyway(run_dir, record)
    ckpt = _newest_loadable_checkpoint(run_dir)
    if ckpt is not None:
        log.error("Training stopped early (%s). Continue it with:  python train.py dataset=%s model=%s resume=%s  "
                  "(resume=latest picks this run too)", record["reason"], cfg.data.name, cfg.model.name, ckpt)


def _write_record_anyway(run_dir: Path, record: dict) -> None:
    """run.json, even on a disk too full for a new file: then it is rewritten in place (a few hundred
    bytes, in the blocks the old one holds), so it never says "running" after the process ended."""
    try:
        write_run_record(run_dir, record)
    except OSError as exc:
        path = run_dir / "run.json"
        log.warning("could not replace %s (%s); rewriting it in place", path, exc.strerror or exc)
        try:
            with open(path, "r+b") as fh:
                data = json.dumps(record, indent=2, sort_keys=True).encode()
                fh.write(data)
                fh.truncate(len(data))
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as again:
            log.error("could not record the run's end in %s (%s): it will read as stale", path, again.strerror or again)


def _newest_loadable_checkpoint(run_dir: Path) -> Path | None:
    found = [p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.stem in ("interrupted", "last")]
    for path in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            read_checkpoint(path)
        except CheckpointLoadError:
            continue
        return path
    return None


class _CtrlC:
    """SIGINT raises KeyboardInterrupt as usual and is remembered: a Ctrl-C that some code swallows
    (an at-fork handler of the figure workers prints "Exception ignored in _releaseLock") still
    stops the run before it is recorded complete."""

    def __init__(self):
        self.pressed = False
        self._previous = None

    def _handler(self, signum, frame):
        self.pressed = True
        raise KeyboardInterrupt

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def check(self) -> None:
        if self.pressed:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)  # Lightning ignores Ctrl-C after an interrupt
        return False


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
        plugins=[AtomicCheckpointIO()],  # checkpoints written beside, flushed, renamed (pipeline/training/checkpoint_io.py)
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
    if resume:
        check_resume_fits(resume, cfg, module, datamodule)  # another dataset's or model's checkpoint: refused here
    datamodule.setup("fit")  # load (or generate) the data before anything is written: missing files fail here

    record = {"status": "running", "dataset": cfg.data.name, "model": cfg.model.name,
              "started": dt.datetime.now().isoformat(timespec="seconds"), "run_dir": str(run_dir.resolve()),
              "resumed_from": resume, **this_process()}
    previous_metrics = None
    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        previous_metrics = artifacts.set_aside_metrics(run_dir) if resume else None
        write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        write_run_record(run_dir, record)

    with _CtrlC() as ctrl_c:
        start = time.perf_counter()
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
            ctrl_c.check()
        except BaseException as exc:  # Ctrl-C (Lightning turns it into SystemExit(1)), a diverged loss, a crash
            if rank_zero_only.rank == 0:
                _record_stop(run_dir, record, exc, trainer, cfg)
            _raise_as_user_sees_it(exc, cfg)
        fit_seconds = time.perf_counter() - start
        try:
            summary = _after_fit(cfg, run_dir, record, datamodule, module, trainer, resume, previous_metrics,
                                 fit_seconds, ctrl_c)
        except BaseException as exc:  # Ctrl-C in the test/figure phase, a full disk, a crash: never "complete"
            if trainer.is_global_zero:
                _record_stop(run_dir, record, exc, trainer, cfg, after_fit=True)
            _raise_as_user_sees_it(exc, cfg)
    return summary


def _raise_as_user_sees_it(exc: BaseException, cfg: DictConfig):
    """Re-raise ``exc``: Ctrl-C as KeyboardInterrupt (exit 130, not Lightning's SystemExit(1)), a file
    it could not write as the message naming it (exit 2)."""
    from pipeline.training.checkpoint_io import WriteError

    if is_ctrl_c(exc) and not isinstance(exc, KeyboardInterrupt):
        raise KeyboardInterrupt from exc
    write = None if is_ctrl_c(exc) else _write_failure(exc, cfg)
    if write is not None and not isinstance(exc, WriteError):
        raise WriteError(write, getattr(exc, "filename", None), getattr(exc, "errno", None)) from exc
    raise exc


def _after_fit(cfg, run_dir, record, datamodule, module, trainer, resume, previous_metrics, fit_seconds,
               ctrl_c: _CtrlC) -> dict:
    """Test the best checkpoint, write the artefacts and record the run complete."""
    ckpt_cb = trainer.checkpoint_callback
    best = ckpt_cb.best_model_path if ckpt_cb is not None and ckpt_cb.best_model_path else None
    last = str(run_dir / "checkpoints" / "last.ckpt") if (run_dir / "checkpoints" / "last.ckpt").is_file() else None

    test = {}
    if cfg.get("test_after_fit", True):
        trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)
        ctrl_c.check()
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
        ctrl_c.check()  # a Ctrl-C swallowed while the figures were drawn: interrupted, not complete
        record.update(status="complete", finished=dt.datetime.now().isoformat(timespec="microseconds"),
                      best_checkpoint=best, last_checkpoint=last,
                      test_accuracy=test.get(module.main_head, {}).get("accuracy"), best_val_acc=best_val,
                      test_f1_macro=test.get(module.main_head, {}).get("f1_macro"),
                      cut_short=summary["cut_short"])
        write_run_record(run_dir, record)
        print(artifacts.summary_screen(cfg, summary, datamodule))
    return summary
