"""Whether a run (or sweep) may write into its directory: checked before anything is written.

Hydra writes ``.hydra/`` (and the job log) into the run directory *before* the job starts, so a
run pointed at an existing run directory (``hydra.run.dir=<a finished run>``) would overwrite
that run's record of its config, and training would then clobber its ``metrics.csv``, checkpoints
and ``run.json``. :class:`RunDirGuard`, a Hydra callback, refuses such a run before Hydra writes
anything, unless the config asks for it: ``resume=`` naming a checkpoint of that very run
(train.py) or ``overwrite=true`` (visualize.py). It also refuses, with the folder to change, an
output location that cannot be written (a read-only disk or folder). :func:`check_run_dir_unused`
is the same rule for a job started without Hydra's launcher (the Python API, the tests).
"""
from __future__ import annotations

import os
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from pipeline.errors import CnnvisError


class RunDirInUseError(CnnvisError, ValueError):
    """The run directory holds another run's results."""


class OutputNotWritableError(CnnvisError, PermissionError):
    """The place a run would write to cannot be written."""


HYDRA_FILES = (".hydra",)


def _entries(run_dir: Path, ignore_hydra: bool) -> list[str]:
    if not run_dir.is_dir():
        return []
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in run_dir.iterdir()
                   if not (ignore_hydra and (p.name in HYDRA_FILES or p.suffix == ".log")))
    return names


def _shown(names: list[str]) -> str:
    return ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")


def resume_points_into(cfg, run_dir: Path) -> bool:
    """True when ``resume=`` names a checkpoint inside ``run_dir`` (or resume=latest picks that run)."""
    resume = cfg.get("resume") if isinstance(cfg, DictConfig) else None
    if not resume:
        return False
    run_dir = Path(run_dir).resolve()
    if resume == "latest":
        from pipeline.training.registry import find_resumable_run

        try:
            target = find_resumable_run(Path(cfg.paths.outputs_dir), cfg.data.name, cfg.model.name).checkpoint
        except (CnnvisError, OSError):
            return False
    else:
        target = Path(str(resume)).expanduser()
    return run_dir in target.resolve().parents


def check_run_dir_unused(run_dir: Path, cfg, key: str = "hydra.run.dir", ignore_hydra: bool = True,
                         allow_resume: bool = True) -> None:
    """Raise :class:`RunDirInUseError` when ``run_dir`` already holds results that this run would
    overwrite, unless ``resume=`` names one of its checkpoints or ``overwrite=true``.

    ``ignore_hydra``: Hydra's own ``.hydra/`` and ``*.log`` do not count (inside a job they are
    this run's own, written just before it started)."""
    run_dir = Path(run_dir)
    names = _entries(run_dir, ignore_hydra)
    if not names or bool(cfg.get("overwrite", False)) or (allow_resume and resume_points_into(cfg, run_dir)):
        return
    task = cfg.get("task", "train")
    if task == "train" and allow_resume:
        how = (f"continue that run with resume={run_dir / 'checkpoints' / 'last.ckpt'} (it is then written into "
               f"the same directory)")
    elif "overwrite" in cfg:
        how = "pass overwrite=true to replace its results"
    else:
        how = "move its results away first"
    raise RunDirInUseError(
        f"{key}={run_dir} already holds a run ({_shown(names)}); writing this {task} run there would overwrite "
        f"its files. Leave {key} unset for a fresh timestamped directory, pick an empty one, or {how}.")


def first_unwritable(path: Path) -> Path | None:
    """The nearest existing folder at or above ``path`` when it cannot be written, else None."""
    p = Path(path).absolute()
    while not p.exists():
        if p.parent == p:
            return None
        p = p.parent
    return None if os.access(p, os.W_OK | os.X_OK) else p


def check_writable(path: Path, key: str) -> None:
    blocked = first_unwritable(path)
    if blocked is not None:
        raise OutputNotWritableError(
            f"cannot write {path}: {blocked} is read-only (or not writable by this user). Make it writable, or "
            f"write elsewhere: paths.root_dir=DIR (everything under DIR/outputs) or {key}=DIR.")


def _select(config: DictConfig, key: str):
    return OmegaConf.select(config, key, throw_on_missing=False)


def _resolved(config: DictConfig, key: str):
    """``key`` of the composed config as Hydra will resolve it. Callbacks run before Hydra installs
    the config for ``${hydra:...}`` (visualize.py's run directory is named after
    ``${hydra:runtime.choices.job}``), so install it first; Hydra installs it again for the job."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        HydraConfig.instance().set_config(config)
    return _select(config, key)


class RunDirGuard(Callback):
    """Refuse a run whose directory is in use or cannot be written, before Hydra writes into it."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, Path(str(_resolved(config, "hydra.run.dir"))), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, Path(str(_resolved(config, "hydra.sweep.dir"))), "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, run_dir: Path, key: str) -> None:
        from pipeline.cli import exit_with_error
        from pipeline.processes import distributed_rank

        if distributed_rank() != 0:  # a DDP process started by rank 0 into rank 0's run directory
            return
        try:
            check_writable(run_dir, key)
            check_run_dir_unused(run_dir, config, key=key, ignore_hydra=False, allow_resume=key == "hydra.run.dir")
        except CnnvisError as exc:
            exit_with_error(str(exc), to_log=False)  # before the job: no log file of its own yet
