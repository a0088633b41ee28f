"""The job interface of ``python visualize.py`` and how jobs are built and run.

A job is a class with four steps (:class:`Job`): ``compute`` the numbers, ``store`` them (the
run's HDF5 file, plus any CSV next to it), ``render`` the figures and build the report
``section``. Its settings are one config block with ``_target_`` (the class) and
``_partial_: true``, in the job's own file ``conf/job/<name>.yaml``; :func:`build_jobs` builds
every job of ``job.run`` with ``hydra.utils.instantiate`` and calls the result with the run's
context, ``Job(ctx, layers, seed, **settings)``. The settings are the constructor's keyword-only
arguments, which also type the block (:mod:`pipeline.jobs.settings`). A job checks everything
else it can in its constructor, so bad input fails before any work and before any file is written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline.errors import ConfigError
from pipeline.jobs.settings import check_settings
from pipeline.report.sections import Section
from pipeline.visualization.context import VisContext
from pipeline.visualization.inputs import Selection
from pipeline.visualization.layers import resolve_layers

__all__ = ["Job", "job_blocks", "build_jobs", "execute", "requested_layers", "safe_name"]


@runtime_checkable
class Job(Protocol):
    """What ``python visualize.py`` runs, step by step (see the module docstring)."""

    def compute(self, images: Selection, batch_size: int) -> Any:
        """The job's numbers for the run's ``images`` (some jobs draw their own test images)."""

    def store(self, result: Any, writer, run_dir: Path) -> None:
        """Write ``result`` to the run's HDF5 file (:class:`~pipeline.storage.h5store.H5RunWriter`)
        and any table files into ``run_dir``."""

    def render(self, result: Any, fig_dir: Path) -> Any:
        """Draw the figures under ``fig_dir``; returns what :meth:`section` shows."""

    def section(self, result: Any, figures: Any) -> Section:
        """The report section: numbers, observations and figures."""


def execute(job: Job, images: Selection, writer, run_dir: Path, fig_dir: Path, batch_size: int) -> Section:
    """Run the four steps of one job."""
    result = job.compute(images, batch_size)
    job.store(result, writer, run_dir)
    return job.section(result, job.render(result, fig_dir))


def requested_layers(ctx: VisContext, spec) -> list[str] | None:
    """The run's ``layer=`` as a list of names, checked against the model (an unknown name
    raises UnknownLayerError listing the valid ones); None when the user chose no layer."""
    if spec is None:
        return None
    names = [spec] if isinstance(spec, str) else [str(s) for s in OmegaConf.to_container(spec) if s is not None]
    resolve_layers(ctx.net, names)
    return names or None


def safe_name(name: str) -> str:
    """A layer, head or method name as a file or folder name."""
    return name.replace("/", "_")


def job_blocks(cfg: DictConfig) -> dict[str, DictConfig]:
    """The config blocks of the jobs in ``job.run``, each checked against its job's settings
    (cheap: nothing is loaded, so a typo fails at once)."""
    names = list(cfg.job.run)
    if not names:
        raise ConfigError("job.run is empty: name the jobs to run, e.g. job=gradcam (conf/job/)")
    blocks = {}
    for name in names:
        node = cfg.get(name)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(f"job.run names {name!r}, but the config has no `{name}:` block with a _target_ "
                              f"(a job's block lives in its file conf/job/{name}.yaml)")
        check_settings(name, node, hydra.utils.get_class(node._target_))
        blocks[name] = node
    return blocks


def build_jobs(cfg: DictConfig, ctx: VisContext) -> list[Job]:
    """The jobs of ``job.run``: each block instantiated and called with the run's context (the
    job's own checks run in its constructor)."""
    layers = requested_layers(ctx, cfg.get("layer"))
    jobs = []
    for name, node in job_blocks(cfg).items():
        job = hydra.utils.instantiate(node)(ctx, layers=layers, seed=int(cfg.get("seed", 0)))
        if not isinstance(job, Job):
            raise ConfigError(f"{name}: {node._target_} is not a job (it needs compute, store, render and section)")
        jobs.append(job)
    return jobs
