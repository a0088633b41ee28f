"""What a visualize report opens with: a card per job (its key figure, its key numbers, a link to
its section), and the run's main figure (``summary.json``'s ``main_figure``: the thumbnail a
sweep's index shows).

The key figure of a job is chosen from its section's figures by what they show, by file name as
the jobs write them (``pipeline/jobs/*.py``):

- Grad-CAM / attribution (``job=gradcam``, ``attribution``): the first image's figure with every head
  side by side (``attribution/<method>/all_heads/<layer>/``, a multi-head model), else the sheet of
  every image (``sheet.png``) of the first head;
- filters: the top-k grid (``<layer>_channel_top<k>.png``) of the deepest layer that has one, else
  the deepest layer's full grid;
- any other job: its first open figure (the activations of the first layer that is not folded).

:func:`compact` folds what a reader opens on demand: per-image figures beside a sheet that shows
every image already (else all but the first image), and a full grid beside its top-k grid.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Sequence

from pipeline.report.sections import Figure, Section, format_percent, format_value, is_percent_column

__all__ = ["compact", "deliverables_section", "fold_extra_jobs", "key_figure", "main_figure", "format_key_number"]

#: the order in which a job's key figure becomes the run's main figure (other jobs after these)
MAIN_FIGURE_ORDER = ("gradcam", "attribution", "filters", "activations")
#: the course's deliverables; in a report of several jobs the sections of the others are folded
#: (job=all's dataset examples per unit: its card and its explorer stay one click away)
DELIVERABLE_JOBS = ("activations", "filters", "gradcam", "attribution")


def _walk(sec: Section, open_only: bool = False) -> Iterable[Figure]:
    """A section's figures, depth first (``open_only``: not inside a folded section, not folded)."""
    if open_only and sec.folded:
        return
    for f in sec.figures:
        if not (open_only and f.folded):
            yield f
    for s in sec.subsections:
        yield from _walk(s, open_only)


def _name(fig: Figure) -> str:
    return Path(os.fspath(fig.path)).name


def key_figure(job: str, section: Section) -> Figure | None:
    """The figure that shows best what ``job`` delivered (see the module's docstring)."""
    figures = list(_walk(section))
    if not figures:
        return None
    if job in ("gradcam", "attribution"):
        found = ([f for f in figures if "all_heads" in Path(os.fspath(f.path)).parts]
                 or [f for f in figures if re.match(r"sheet\.", _name(f))])
        if found:
            return found[0]
    if job == "filters":
        opened = list(_walk(section, open_only=True))  # not a first layer's pictures folded beside its kernels
        for pattern in (r"_channel_top\d+\.", r"_top\d+\.", r"_channel_all\."):
            found = [f for f in opened if re.search(pattern, _name(f))]
            if found:
                return found[-1]
    opened = list(_walk(section, open_only=True))
    return (opened or figures)[0]


def _relative(path, run_dir: Path) -> str:
    p = Path(os.fspath(path))
    try:
        return p.relative_to(run_dir).as_posix()
    except ValueError:  # a figure outside the run directory: its own path
        return p.as_posix()


def main_figure(jobs: Sequence[tuple[str, Section]], run_dir: Path) -> str | None:
    """The run's main figure, relative to ``run_dir``: the key figure of the first job in
    :data:`MAIN_FIGURE_ORDER` that has one (Grad-CAM's sheet before the filters' top-k grid before the
    activations), else of the first job with a figure; None when no job drew one."""
    ranked = sorted(jobs, key=lambda js: MAIN_FIGURE_ORDER.index(js[0]) if js[0] in MAIN_FIGURE_ORDER
                    else len(MAIN_FIGURE_ORDER))
    for job, sec in ranked:
        fig = key_figure(job, sec)
        if fig is not None:
            return _relative(fig.path, Path(run_dir))
    return None


def format_key_number(name: str, value) -> str:
    """A key number as the report shows it: shares (sparsity, energy on the line, pointing game:
    :data:`~pipeline.report.sections.PERCENT_COLUMNS`) as percentages, the rest as table cells are."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= float(value) <= 1.0 \
            and is_percent_column(name):
        return format_percent(float(value))
    return format_value(value)


def _figure_count(sec: Section) -> int:
    return len(list(_walk(sec)))


def deliverables_section(jobs: Sequence[tuple[str, Section]], run_dir: Path, max_width: int = 420) -> Section:
    """The report's first section: per job a card with its key figure (a click goes to the job's
    section, ``#<anchor>``), the section's title and its key numbers. The job sections need their
    ``anchor`` set."""
    cards = []
    for job, sec in jobs:
        fig = key_figure(job, sec)
        if fig is None:
            continue
        n = _figure_count(sec)
        lines = [sec.title, f"{fig.caption or _name(fig)} ({n} figure{'s' if n != 1 else ''} in the section)"]
        lines += [f"{k}: {format_key_number(k, v)}" for k, v in list(sec.key_numbers.items())[:4]]
        cards.append(Figure(fig.path, "\n".join(lines), wide=False, href=f"#{sec.anchor}" if sec.anchor else None,
                            max_width=max_width))
    return Section("What this run delivers", anchor="deliverables", figures=cards,
                   paragraphs=["A card per job: its key figure (a click goes to the job's section, where every figure "
                               "opens at full size) and its key numbers. The contents on the left stay in view."])


def fold_extra_jobs(jobs: Sequence[tuple[str, Section]]) -> None:
    """With several jobs in one report, fold the sections of the jobs that are not the course's
    deliverables (:data:`DELIVERABLE_JOBS`) when at least one deliverable is there."""
    if any(job in DELIVERABLE_JOBS for job, _ in jobs):
        for job, sec in jobs:
            if job not in DELIVERABLE_JOBS:
                sec.folded = True


def compact(sections: Iterable[Section]) -> None:
    """Fold what is opened on demand, in every section (by the figures' file names):

    - per-image figures (``image<NN>*``): all of them beside a sheet that shows every image
      (``sheet.*``), else all but the first;
    - a layer's full grid (``<stem>_all.*``) beside its top-k grid (``<stem>_top<k>.*``);
    - the section of a layer's unit pictures (``<layer>_channel_*``, ``_neuron_*``) when a section
      shows the same layer's kernels (``<layer>_kernels.*``: a first convolution's best inputs)."""
    for sec in sections:
        names = [_name(f) for f in sec.figures]
        per_image = [f for f, n in zip(sec.figures, names) if re.match(r"image\d+", n)]
        if any(re.match(r"sheet\.", n) for n in names):
            for f in per_image:
                f.folded = True
        elif len(per_image) > 2:
            for f in per_image[1:]:
                f.folded = True
        for f, n in zip(sec.figures, names):
            m = re.match(r"(.+)_all\.", n)
            if m and any(re.match(re.escape(m.group(1)) + r"_top\d+\.", o) for o in names):
                f.folded = True
        kernels = {m.group(1) for sub in sec.subsections for f in sub.figures if (m := re.match(r"(.+)_kernels\.", _name(f)))}
        for sub in sec.subsections:  # a first layer's optimized pictures beside its kernels (its best inputs)
            if sub.figures and all(re.match(r"(.+?)_(channel|neuron)_", _name(f)) and
                                   re.match(r"(.+?)_(channel|neuron)_", _name(f)).group(1) in kernels for f in sub.figures):
                sub.folded = True
        compact(sec.subsections)
