"""Interleaved timing shared by the benchmark scripts.

Contenders run one after the other inside each repetition (the order alternates between
repetitions), so machine-load drift hits every contender alike; the speed-up is reported as the
ratio of medians plus the range of the per-repetition (paired) ratios.

Also the set-up the model benchmarks share: the repository root on ``sys.path`` (importing this
module puts it there, so ``pipeline`` imports work when a script is run by path),
:func:`make_model` and the common command-line options (:func:`add_timing_args`).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Mapping

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def make_model(seed: int):
    """A ``MultiHead`` with random weights (``torch.manual_seed(seed)``) and batch-norm
    statistics from three random batches, returned in eval mode."""
    import torch

    from pipeline.models.multihead import MultiHead

    torch.manual_seed(seed)
    m = MultiHead()
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.rand(64, 3, 28, 28))
    return m.eval()


def cpu_model() -> str:
    """The CPU's model name (printed beside every absolute time: machines of one class differ 2-3x)."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def add_timing_args(ap: argparse.ArgumentParser, warmup: int) -> None:
    """Add ``--reps`` (default 7), ``--warmup`` (default ``warmup``) and ``--threads`` (default 1)."""
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=warmup)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads; default 1: steady on a shared CPU (with 2 threads on a busy "
                         "2-core machine, OpenMP waits swamp small ops); 0 keeps torch's default")
    ap.add_argument("--glibc-default", action="store_true",
                    help="leave glibc's malloc at its defaults (freed memory handed back to the kernel, page "
                         "faults on every batch); default: keep freed memory, as the entry scripts do "
                         "(keep_freed_memory: true, pipeline/allocator.py)")


def apply_allocator(args) -> str:
    """The allocator the entry scripts use (:func:`pipeline.allocator.keep_freed_memory`), unless
    ``--glibc-default``; returns the line to print."""
    if getattr(args, "glibc_default", False):
        return "allocator: glibc defaults (--glibc-default)"
    from pipeline.allocator import keep_freed_memory

    return keep_freed_memory()


def interleaved(contenders: Mapping[str, Callable[[], object]], reps: int = 7,
                warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call, ``{name: [t_rep0, t_rep1, ...]}``, after ``warmup`` untimed rounds."""
    items = list(contenders.items())
    for _ in range(warmup):
        for _, fn in items:
            fn()
    times: dict[str, list[float]] = {name: [] for name, _ in items}
    for r in range(reps):
        order = items if r % 2 == 0 else items[::-1]
        for name, fn in order:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def describe(times: Mapping[str, list[float]], per_call: int | None = None, unit: str = "images") -> str:
    lines = []
    width = max(len(k) for k in times)
    for name, ts in times.items():
        med = statistics.median(ts)
        line = f"  {name:<{width}}  median {med * 1e3:9.1f} ms  (min {min(ts) * 1e3:.1f}, max {max(ts) * 1e3:.1f})"
        if per_call:
            line += f"  {per_call / med:10.1f} {unit}/s"
        lines.append(line)
    return "\n".join(lines)


def speedup(times: Mapping[str, list[float]], baseline: str, contender: str, target: float | None = None) -> str:
    """``baseline time / contender time``: median ratio and the range of the paired ratios."""
    b, c = times[baseline], times[contender]
    ratio = statistics.median(b) / statistics.median(c)
    paired = [x / y for x, y in zip(b, c)]
    msg = (f"  speed-up {contender} vs {baseline}: {ratio:.2f}x (median ratio; paired ratios "
           f"{min(paired):.2f}x .. {max(paired):.2f}x, median {statistics.median(paired):.2f}x)")
    if target is not None:
        msg += f"  target >= {target:g}x: {'MET' if ratio >= target else 'MISSED'}"
    return msg
