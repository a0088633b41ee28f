"""Which process wrote something, and whether it is still running.

A run record or a temporary file names its writer by host and pid (plus the process's start
time where ``/proc`` has it, so a pid the kernel handed to another process is not mistaken for
the writer). :func:`writer_alive` answers True (still running), False (gone: the run was killed,
``kill -9`` included) or None (written on another host: cannot tell from here).
"""
from __future__ import annotations

import os
import socket


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after the last ')'
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def hostname() -> str:
    return socket.gethostname()


def this_process() -> dict:
    """``{"pid", "host", "pid_start"}`` of the calling process (``pid_start`` None without /proc)."""
    pid = os.getpid()
    return {"pid": pid, "host": hostname(), "pid_start": _start_ticks(pid)}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OverflowError, ValueError):
        return False
    return True


def writer_alive(pid, host: str | None = None, pid_start: int | None = None) -> bool | None:
    """Whether the process ``pid`` on ``host`` (None: this host) is still running.

    None when ``host`` is another machine or ``pid`` is missing (nothing can be said)."""
    if pid is None:
        return None
    if host is not None and host != hostname():
        return None
    if not pid_alive(pid):
        return False
    if pid_start is not None:
        now = _start_ticks(int(pid))
        if now is not None and now != int(pid_start):
            return False  # the pid was reused by a newer process
    return True


def distributed_rank(env=None) -> int:
    """This process's rank in a distributed (DDP) run, from the environment Lightning and SLURM set:
    0 for a single process and for the first process of a DDP run."""
    env = os.environ if env is None else env
    for key in ("RANK", "SLURM_PROCID"):
        if str(env.get(key, "")).isdigit():
            return int(env[key])
    local, node = env.get("LOCAL_RANK", "0"), env.get("NODE_RANK", "0")
    return int(local) + int(node) if local.isdigit() and node.isdigit() else 0
