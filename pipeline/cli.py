"""What the thin entry scripts share: turn actionable errors into a clear message and exit
status 2 (no traceback), and clean up a run directory that the failed job left empty.

In a sweep (``-m``) a failing job does not stop the sweep: its error is logged, recorded in its
run directory (``error.json``, see pipeline/failures.py) and the next combination runs; the sweep
index lists it and the sweep exits non-zero at the end (pipeline/report/sweep.py). Ctrl-C stops
with exit status 130 and a one-line message. Before the job: this job's share of the CPU threads
(pipeline/parallel.py) and the removal of partial files that killed runs left (pipeline/leftovers.py).
"""
from __future__ import annotations

import errno
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


def exit_with_error(message: str, code: int = 2, to_log: bool = True) -> None:
    """Print ``error: <message>`` (stderr, and the job's log with ``to_log``) and exit with ``code``; no traceback."""
    msg = f"error: {message}"
    if to_log:
        log.error(msg)
    print(msg, file=sys.stderr)
    sys.exit(code)


def _is_multirun() -> bool:
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def _prepare(cfg) -> None:
    from pipeline.leftovers import remove_stale_partials
    from pipeline.parallel import apply_thread_share

    from pipeline.quiet import quiet_lightning

    from pipeline.rendering.output import configure_rendering

    quiet_lightning()  # Lightning's misleading console lines (pipeline/quiet.py)
    configure_rendering(cfg.get("render") if cfg is not None else None)  # render.format/dpi, checked before any work
    apply_thread_share(cfg)
    if cfg is None or cfg.get("keep_freed_memory", True):
        from pipeline.allocator import keep_freed_memory

        log.info(keep_freed_memory())
    paths = cfg.get("paths") if cfg is not None else None
    if paths is not None:
        remove_stale_partials(paths.get("outputs_dir"), paths.get("cache_dir"))


def run_job(fn, cfg, objective=None):
    run_dir = _fresh_output_dir()
    multirun = _is_multirun()
    try:
        _prepare(cfg)
        result = fn(cfg)
    except KeyboardInterrupt:
        removed = _remove_if_only_hydra(run_dir, cfg)
        kept = "" if removed or run_dir is None else f"; what it had finished stays in {run_dir}"
        exit_with_error(f"interrupted (Ctrl-C): stopped before finishing, partial files removed{kept}", 130)
    except Exception as exc:
        err = user_error(exc, cfg)
        if multirun:
            from pipeline.leftovers import remove_own_partials

            remove_own_partials(run_dir)
            return _record_failed_job(run_dir, cfg, exc, err)
        _remove_if_only_hydra(run_dir, cfg)
        if err is None:
            raise
        exit_with_error(str(err))
    return objective(result) if objective else None


def _remove_if_only_hydra(run_dir: Path | None, cfg=None) -> bool:
    """Remove this process's partial files from the run dir, then the dir itself if nothing else is left,
    and the folders above it that are left empty (``outputs/eval/<dataset>/``), up to ``paths.outputs_dir``."""
    from pipeline.leftovers import remove_own_partials

    remove_own_partials(run_dir)
    if run_dir is not None and run_dir.is_dir() and _only_hydra_files(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)
        _remove_empty_parents(run_dir, cfg)
        return True
    return False


def _remove_empty_parents(run_dir: Path, cfg) -> None:
    paths = cfg.get("paths") if cfg is not None else None
    try:
        top = Path(str(paths.get("outputs_dir"))).resolve() if paths is not None else None
    except Exception:  # noqa: BLE001 -- an unresolvable paths node: leave the folders
        return
    parent = Path(run_dir).resolve().parent
    while top is not None and parent != top and parent.is_relative_to(top):
        try:
            parent.rmdir()  # only when empty: another run's folder stays
        except OSError:
            return
        parent = parent.parent


def _record_failed_job(run_dir: Path | None, cfg, exc: Exception, err: Exception | None):
    """A failed job of a sweep: log it, leave error.json in its run dir, let the sweep go on."""
    from pipeline.failures import write_failure_record
    from pipeline.processes import distributed_rank

    if err is not None:
        message, code = str(err), 2
        log.error("error: %s", message)
        print(f"error: {message}", file=sys.stderr)
    else:
        message, code = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}", 1
        log.exception("job crashed: %s", message)
    if run_dir is not None and distributed_rank() == 0:
        try:
            overrides = list(HydraConfig.get().overrides.task)
        except ValueError:
            overrides = []
        write_failure_record(run_dir, message, code, cfg, overrides)
    return None


_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EFBIG,  # EFBIG: a file-size limit (ulimit -f)
                 getattr(errno, "EDQUOT", errno.ENOSPC)}


def _write_error(exc: OSError, cfg) -> Exception | None:
    """A PermissionError / read-only disk / full disk while writing: name the file and the key to change."""
    if exc.errno not in _NOT_WRITABLE:
        return None
    target = exc.filename or "a file"
    paths = cfg.get("paths") if cfg is not None else None
    where = "paths.root_dir=DIR (every output under DIR/outputs)"
    if paths is not None and exc.filename:
        cache = paths.get("cache_dir")
        if cache and Path(str(exc.filename)).resolve().is_relative_to(Path(str(cache)).resolve()):
            where = "paths.cache_dir=DIR (or $CNNVIS_CACHE_DIR) for the dataset cache"
        data = cfg.get("data")
        data_cache = data.get("cache_dir") if data is not None and hasattr(data, "get") else None
        if data_cache and Path(str(exc.filename)).resolve().is_relative_to(Path(str(data_cache)).resolve()) \
                and not (cache and Path(str(data_cache)).resolve().is_relative_to(Path(str(cache)).resolve())):
            where = "data.cache_dir=DIR for this dataset's cache (or paths.cache_dir=DIR / $CNNVIS_CACHE_DIR for every one)"
    reason = exc.strerror or str(exc)
    return CnnvisError(f"cannot write {target}: {reason}. Make that folder writable (or free space), or write "
                       f"elsewhere: {where}.")


def user_error(exc: Exception, cfg) -> Exception | None:
    """The actionable error to print for ``exc`` (maybe a clearer one), or None for a crash (a bug)."""
    if isinstance(exc, InstantiationException) and isinstance(exc.__cause__, (ValueError, FileNotFoundError)):
        exc = exc.__cause__  # a datamodule/model argument check: report its own message
    if isinstance(exc, MissingMandatoryValue):  # a required value (??? in the YAML) left unset
        exc = _missing_value_error(cfg, exc)
    if isinstance(exc, CnnvisError):
        return exc
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
        return _write_error(exc, cfg)
    if isinstance(exc, (ValueError, FileNotFoundError)) and _is_user_error(exc):
        return exc
    return None


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
