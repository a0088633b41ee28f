"""Draw many figures at once: one worker process per core the job may use.

Matplotlib draws on one core, and a visualize run draws dozens of independent figures (an
activation mosaic per image and layer, a Grad-CAM panel per image). :func:`render_all` draws a
list of such calls in a pool of forked worker processes and returns their results in order;
each worker saves with the parent's render settings (``render.format``, ``render.dpi``).

Workers: ``render.workers`` (conf/render/default.yaml); null = the job's core share, which is
torch's thread count (every core for a single run, ``cores // n_jobs`` in a joblib sweep, see
:mod:`pipeline.parallel`). One worker, a single call, or a platform without ``fork`` (Windows):
the calls run one after another in this process, as does a call that cannot be pickled (a lambda,
a local function). A call that raises raises here, with the worker's exception; the remaining calls
are cancelled. Workers ignore Ctrl-C, so the interrupt
reaches the parent alone, which stops the pool and cleans up as for any interrupted run.

Workers die with their parent, ``kill -9`` included (a killed parent never shuts its pool down, and
its workers would otherwise wait on the pipe for ever): on Linux the kernel sends them SIGKILL when
the parent exits (``prctl(PR_SET_PDEATHSIG)``, set as each worker starts), and everywhere a watchdog
thread in each worker ends it within :data:`WATCHDOG_SECONDS` once its parent pid has changed.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterable, Sequence

from tqdm.auto import tqdm

from . import output

__all__ = ["Call", "render_all", "worker_count"]

#: One figure to draw: (function, positional arguments, keyword arguments).
Call = tuple[Callable[..., Any], Sequence[Any], dict]


def worker_count(requested: int | None, calls: int) -> int:
    """How many worker processes draw ``calls`` figures (1: in this process)."""
    if requested is None:
        import torch

        requested = torch.get_num_threads()
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(int(requested), calls))


def _plain(value):
    """Tensors become numpy arrays before they cross to a worker (no torch in the workers)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)) and any(hasattr(v, "detach") for v in value):
        return type(value)(_plain(v) for v in value)
    return value


#: how often a worker's watchdog checks that its parent is alive (seconds)
WATCHDOG_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Make this (worker) process end when ``parent`` does: the kernel's parent-death signal where
    there is one (Linux), and a watchdog thread that exits once the parent pid has changed."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the watchdog alone
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            threading.Event().wait(WATCHDOG_SECONDS)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _start_worker(settings: output.RenderSettings, parent: int | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    output._current = settings
    _die_with_parent(os.getppid() if parent is None else parent)


def _run(payload: bytes):
    fn, args, kwargs = pickle.loads(payload)
    return fn(*args, **kwargs)


def _payload(call: Call) -> bytes | None:
    """The call pickled here, in the parent (an error in a pool's feeder thread would hang the pool);
    None when it cannot cross to a worker (a lambda, a local function): it then runs in this process."""
    fn, args, kwargs = call
    try:
        return pickle.dumps((fn, [_plain(a) for a in args], {k: _plain(v) for k, v in kwargs.items()}))
    except (pickle.PicklingError, AttributeError, TypeError):
        return None


def render_all(calls: Iterable[Call], desc: str | None = None) -> list:
    """Run every ``(fn, args, kwargs)`` of ``calls``; their return values, in order.

    ``desc``: a progress bar with this label (tqdm, one step per finished figure); None: no bar.
    """
    calls = list(calls)
    with tqdm(total=len(calls), desc=desc, unit="fig", disable=desc is None) as progress:
        return _render_all(calls, progress)


def _render_all(calls: list[Call], progress) -> list:
    n = worker_count(output.rendering().workers, len(calls))
    payloads = [_payload(c) for c in calls] if n > 1 else [None] * len(calls)
    remote = [i for i, p in enumerate(payloads) if p is not None]
    results: list = [None] * len(calls)
    pool = None
    if len(remote) > 1:
        pool = ProcessPoolExecutor(min(n, len(remote)), mp_context=multiprocessing.get_context("fork"),
                                   initializer=_start_worker, initargs=(output.rendering(), os.getpid()))
    try:
        futures = {i: pool.submit(_run, payloads[i]) for i in remote} if pool is not None else {}
        for i, (fn, args, kwargs) in enumerate(calls):
            results[i] = futures[i].result() if i in futures else fn(*args, **kwargs)
            progress.update(1)
        return results
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
