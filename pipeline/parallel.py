"""How a job shares the machine with the other jobs of its sweep.

Hydra's launcher plugins run a sweep's combinations in parallel: ``hydra/launcher=joblib`` as
``hydra.launcher.n_jobs`` processes on one machine, ``submitit_local`` / ``submitit_slurm`` as
separate processes or cluster jobs. Each torch process would otherwise start one thread per
core, so 2 jobs on 2 cores would run 4 threads that fight for them. ``torch_threads`` (a config
key of every entry script) sets the share:

- an integer: that many torch threads;
- ``null`` (default): under joblib, the usable cores divided by ``n_jobs`` (at least 1); under
  SLURM (``$SLURM_CPUS_PER_TASK``) or submitit with ``hydra.launcher.cpus_per_task``, that count;
  otherwise torch's own default (every core, for a single run).

:class:`WorkerEnvironment`, a Hydra callback, puts the project on ``PYTHONPATH`` before a sweep is
launched, so a launcher that starts fresh interpreters (submitit, locally or on cluster nodes)
can import ``pipeline`` whatever directory the sweep was started from.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

from hydra.experimental.callback import Callback

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _joblib_workers(n_jobs, cores: int) -> int:
    n = int(n_jobs if n_jobs is not None else -1)
    if n < 0:  # joblib's convention: -1 = every core, -2 = all but one, ...
        n = cores + 1 + n
    return max(1, n)


def thread_share(requested, launcher: Mapping | None, env: Mapping[str, str] = os.environ,
                 cores: int | None = None) -> int | None:
    """Torch threads for this job (None: leave torch's default). See the module doc."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ConfigError(f"torch_threads={requested!r} is invalid: it must be a positive integer, or null for "
                              f"this job's share of the cores")
        return requested
    cores = cores or usable_cores()
    launcher = launcher or {}
    target = str(launcher.get("_target_", ""))
    if target.endswith("JoblibLauncher"):
        return max(1, cores // _joblib_workers(launcher.get("n_jobs"), cores))
    slurm = env.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit():
        return max(1, int(slurm))
    if "submitit" in target and launcher.get("cpus_per_task"):
        return max(1, int(launcher["cpus_per_task"]))
    return None


def apply_thread_share(cfg) -> int | None:
    """Set torch's intra-op threads to this job's share; returns the count set (None: untouched)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        launcher = HydraConfig.get().launcher
    except ValueError:  # not started by Hydra (the Python API)
        launcher = None
    n = thread_share(cfg.get("torch_threads") if cfg is not None else None, launcher)
    if n is not None:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        log.info("torch threads: %d (of %d usable cores)", n, usable_cores())
    return n


class WorkerEnvironment(Callback):
    """Before a sweep is launched: the project's root on PYTHONPATH for worker processes."""

    def on_multirun_start(self, config, **kwargs) -> None:
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        if str(PROJECT_ROOT) not in paths:
            os.environ["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *paths])
