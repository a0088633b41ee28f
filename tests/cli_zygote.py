"""Start the entry scripts the tests run (train.py, visualize.py, eval.py) without paying for their
imports each time: a "zygote" process imports the heavy third-party libraries once (torch,
Lightning, Hydra, matplotlib, h5py: about 7-8 s on a 2-core machine, most of a bad-input test's
time), then forks a child per run. The child is a process of its own, as with
``subprocess.run``: its own working directory, environment, argv, stdin from /dev/null, stdout and
stderr captured, and a real exit status; it runs the script as ``__main__`` (``runpy``), then
exits as the interpreter would (non-daemon threads joined, atexit handlers, streams flushed).

Nothing of the project is imported before the fork, so every run imports ``pipeline`` (and its
import-time settings) afresh, in the script's own order. The zygote is used only when that is
faithful, and :func:`run` falls back to a plain subprocess otherwise:

* the preload printed nothing (a warning or message at import would be shown once, in the
  zygote, and missing from every run's stderr);
* the run's environment agrees with the zygote's on the variables read at import time
  (thread counts, matplotlib's backend, ...);
* ``CNNVIS_TESTS_FRESH_PROCESS=1`` is not set (set it to run every script in a new interpreter).

The zygote holds no threads of its own and has run no torch operation when it forks (OpenMP
thread pools do not survive a fork). One zygote per test process (each xdist worker has one).
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: imported once in the zygote: what the entry scripts spend their start-up on
PRELOAD = ["numpy", "torch", "pytorch_lightning", "torchmetrics", "hydra", "omegaconf", "h5py",
           "matplotlib", "matplotlib.pyplot", "PIL.Image", "tqdm"]
#: read once, at import or library load: a run whose value differs gets a fresh interpreter
IMPORT_TIME_ENV = ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MPLBACKEND", "MPLCONFIGDIR",
                   "PYTHONPATH", "PYTHONWARNINGS", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "CUDA_VISIBLE_DEVICES",
                   "KMP_AFFINITY", "OMP_PROC_BIND", "TORCH_HOME", "XDG_CACHE_HOME", "HOME"]


# --- the zygote process (runs this file as a script) -----------------------------------------------

def _exit_status(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message"): printed, status 1, as the interpreter does
    return 1


def _child(req: dict) -> None:
    """In the forked child: become ``python <script> <args>`` and exit with its status."""
    import atexit
    import runpy
    import threading
    import traceback

    code = 1
    try:
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(os.open(req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
        os.dup2(os.open(req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
        if req["env"].get("PYTHONUNBUFFERED"):
            sys.stdout.reconfigure(write_through=True)
            sys.stderr.reconfigure(write_through=True)
        sys.argv = [req["script"], *req["args"]]
        sys.path[0] = str(Path(req["script"]).parent)  # as `python script.py` puts the script's folder first
        try:
            runpy.run_path(req["script"], run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = _exit_status(exc)
        except BaseException as exc:  # noqa: BLE001 -- uncaught: the traceback from the script's frame on, status 1
            tb = exc.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename != req["script"]:
                tb = tb.tb_next  # drop this runner's and runpy's frames, which a fresh interpreter has not
            traceback.print_exception(type(exc), exc, tb or exc.__traceback__)
            code = -signal.SIGINT if isinstance(exc, KeyboardInterrupt) else 1
        threading._shutdown()  # the interpreter joins non-daemon threads before exiting
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        if code == -signal.SIGINT:  # an uncaught Ctrl-C: the interpreter ends by SIGINT (status -2)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        os._exit(code)


def _serve() -> None:
    """Preload, say whether that was silent, then fork one child per request line on stdin."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    requests = os.fdopen(os.dup(0), "r")
    with tempfile.TemporaryFile() as capture:  # anything the imports print lands here
        os.dup2(capture.fileno(), 1)
        os.dup2(capture.fileno(), 2)
        ok = True
        for name in PRELOAD:
            try:
                __import__(name)
            except Exception as exc:  # noqa: BLE001 -- reported, and the tests fall back
                print(f"import {name}: {exc!r}", file=sys.stderr)
                ok = False
        sys.stdout.flush()
        sys.stderr.flush()
        capture.seek(0)
        printed = capture.read().decode(errors="replace")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    reply.write(json.dumps({"ready": ok and not printed, "printed": printed[-2000:]}) + "\n")
    for line in requests:
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            reply.close()
            requests.close()
            _child(req)
        reply.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        reply.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")


# --- the test side ----------------------------------------------------------------------------------

class _Zygote:
    def __init__(self) -> None:
        self.env = dict(os.environ)
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1, env=self.env)
        # read raw (os.read): a buffered reader could hold the next line back from select()
        self._fd, self._buffer = self.proc.stdout.fileno(), b""
        try:
            hello = self._read(time.monotonic() + 300) or {"ready": False, "printed": "no answer in 300 s"}
        except RuntimeError as exc:
            hello = {"ready": False, "printed": str(exc)}
        self.ready = bool(hello["ready"])
        self.why_not = hello.get("printed", "")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def faithful_for(self, env: dict) -> bool:
        return all(env.get(k) == self.env.get(k) for k in IMPORT_TIME_ENV)

    def _read(self, deadline: float | None) -> dict | None:
        """The zygote's next JSON line, or None once ``deadline`` (time.monotonic) has passed."""
        while b"\n" not in self._buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._fd], [], [], wait)
            if not ready:
                return None
            chunk = os.read(self._fd, 65536)
            if not chunk:
                raise RuntimeError("the CLI zygote exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def run(self, script: str, args: list[str], cwd: Path, env: dict, timeout: float | None):
        cmd = [sys.executable, str(script), *(str(a) for a in args)]  # what subprocess.run would have run
        with tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp) / "out", Path(tmp) / "err"
            req = {"script": cmd[1], "args": cmd[2:], "cwd": str(cwd), "env": env, "out": str(out), "err": str(err)}
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            pid = self._read(None)["pid"]
            deadline = None if timeout is None else time.monotonic() + timeout
            done = self._read(deadline)
            if done is None:  # as subprocess.run(timeout=...): kill, then raise
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:  # it ended in the meantime
                    pass
                self._read(None)
                raise subprocess.TimeoutExpired(cmd, timeout, output=out.read_text(errors="replace"),
                                                stderr=err.read_text(errors="replace"))
            return subprocess.CompletedProcess(cmd, done["returncode"], out.read_text(errors="replace"),
                                               err.read_text(errors="replace"))

    def close(self) -> None:
        if self.alive():
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


_zygote: _Zygote | None = None


def zygote() -> _Zygote | None:
    """This test process's zygote (started on first use), or None where it cannot be used."""
    global _zygote
    if os.environ.get("CNNVIS_TESTS_FRESH_PROCESS") == "1" or not hasattr(os, "fork"):
        return None
    if _zygote is None or (_zygote.ready and not _zygote.alive()):  # one that never got ready is not retried
        import atexit

        _zygote = _Zygote()
        atexit.register(_zygote.close)
    return _zygote if _zygote.ready else None


def run(script: str | Path, args: list[str], cwd: Path, env: dict, timeout: float | None):
    """``subprocess.run([python, script, *args], cwd=cwd, env=env, capture_output=True, text=True,
    timeout=timeout)``, from the zygote where that is faithful."""
    z = zygote()
    if z is not None and z.faithful_for(env):
        return z.run(str(script), args, cwd, env, timeout)
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


if __name__ == "__main__":
    _serve()
