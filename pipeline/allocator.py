"""Keep freed memory in the process: glibc's malloc set so a forward pass does not page-fault.

A CNN forward on a batch allocates and frees the same large activations over and over (a
``[256, 24, 28, 28]`` float tensor is 19 MB). glibc's malloc, at its defaults, hands the top of
its heap back to the kernel whenever more than twice its (dynamic) mmap threshold is free there
(``M_TRIM_THRESHOLD``), so the next batch gets fresh pages and pays a page fault per 4 KiB on
first touch: measured on the project's multihead at batch 256, one thread, a no-grad forward took
62-74 ms at glibc's defaults and 52-68 ms with freed memory kept, and Grad-CAM (which holds more
tensors at once, so more of them are fresh) 119-135 ms against 63-82 ms (docs/gradcam.md).

:func:`keep_freed_memory` sets two glibc parameters with ``mallopt`` (no environment variable, no
restart): ``M_MMAP_THRESHOLD`` = 32 MiB (the largest glibc accepts; blocks up to that size come
from the heap, so they can be reused) and ``M_TRIM_THRESHOLD`` = 1 GiB (the heap keeps up to that
much free memory instead of returning it). The price is a resident size that stays near the
job's peak until the process exits, which is what a batch job wants. Elsewhere than glibc (macOS,
musl, Windows) nothing is changed and the reason is returned. The entry scripts call it when
``keep_freed_memory`` is true (the default; conf/train.yaml, visualize.yaml, eval.yaml).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # <malloc.h>
MMAP_THRESHOLD = 32 * 1024 * 1024   # glibc refuses more than HEAP_MAX_SIZE / 2 (32 MiB on 64-bit)
TRIM_THRESHOLD = 1024 * 1024 * 1024

_done: str | None = None


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def keep_freed_memory() -> str:
    """Set glibc's malloc to keep freed memory (see the module doc); returns what was done, for the
    log. Safe to call more than once (the settings are process-wide and set once)."""
    global _done
    if _done is not None:
        return _done
    libc = _glibc()
    if libc is None:
        _done = f"allocator unchanged: not glibc ({platform.system()} {platform.libc_ver()[0] or 'unknown libc'})"
        return _done
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # the mmap threshold first: a trim threshold set alone would also fix the mmap threshold at its
    # 128 KiB default (no more dynamic threshold), mapping every activation afresh: slower than before
    if libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:
        _done = "allocator unchanged: glibc refused the mmap threshold"
    elif libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        _done = "allocator: glibc refused the trim threshold (mmap threshold set)"
    else:
        _done = (f"allocator: glibc keeps freed memory (mmap threshold {MMAP_THRESHOLD >> 20} MiB, "
                 f"trim threshold {TRIM_THRESHOLD >> 20} MiB)")
    return _done
