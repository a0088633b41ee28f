"""What the thin entry scripts share: turn actionable errors into a clear message and exit
status 2 (no traceback), and clean up a run directory that the failed job left empty."""
from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue

from pipeline.errors import CnnvisError

log = logging.getLogger("cnnvis")


def _fresh_output_dir() -> Path | None:
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return None


def _only_hydra_files(run_dir: Path) -> bool:
    """True when the run dir holds nothing but Hydra's own bookkeeping (.hydra/, the job log)."""
    return all(p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir())


def run_job(fn, cfg, objective=None):
    run_dir = _fresh_output_dir()
    try:
        result = fn(cfg)
    except (CnnvisError, ValueError, FileNotFoundError, InstantiationException, MissingMandatoryValue) as exc:
        if isinstance(exc, InstantiationException) and isinstance(exc.__cause__, (ValueError, FileNotFoundError)):
            exc = exc.__cause__  # a datamodule/model argument check: report its own message
        if isinstance(exc, MissingMandatoryValue):  # a required value (??? in the YAML) left unset
            exc = _missing_value_error(cfg, exc)
        if run_dir is not None and run_dir.is_dir() and _only_hydra_files(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        if not isinstance(exc, CnnvisError) and not _is_user_error(exc):
            raise
        msg = f"error: {exc}"
        log.error(msg)
        print(msg, file=sys.stderr)
        sys.exit(2)
    return objective(result) if objective else None


def _missing_value_error(cfg, exc: Exception) -> Exception:
    from pipeline.config import check_required

    try:
        check_required(cfg)
    except CnnvisError as err:
        return err
    return exc


def _is_user_error(exc: Exception) -> bool:
    """ValueErrors/FileNotFoundErrors raised by the project's own input checks (datasets, configs)."""
    mod = getattr(type(exc), "__module__", "")
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    origin = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
    return mod.startswith("pipeline") or origin.startswith("pipeline")
