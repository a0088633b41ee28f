"""The tests' script runner (tests/cli_zygote.py): a run forked from the zygote looks, to the script
and to the test, like ``python script.py args`` in a new interpreter."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests import cli_zygote

SCRIPT = textwrap.dedent("""
    import json, os, sys, threading, time, atexit
    what = sys.argv[1]
    atexit.register(lambda: print("atexit ran"))
    print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "path0": sys.path[0], "name": __name__,
                      "var": os.environ.get("ZYGOTE_TEST_VAR"), "preloaded": sorted(m for m in ("pytest", "pipeline", "tests") if m in sys.modules),
                      "stdin": sys.stdin.read()}))
    print("to stderr", file=sys.stderr)
    if what == "exit3":
        sys.exit(3)
    if what == "message":
        sys.exit("a message")
    if what == "raise":
        raise ValueError("boom")
    if what == "interrupt":
        raise KeyboardInterrupt
    if what == "thread":
        threading.Thread(target=lambda: (time.sleep(0.3), print("thread done"))).start()
    if what == "sleep":
        time.sleep(60)
""")


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("zygote_script") / "probe_script.py"
    path.write_text(SCRIPT)
    return path


def _both(script, args, cwd, timeout=60):
    env = {**os.environ, "ZYGOTE_TEST_VAR": "x y", "PYTHONUNBUFFERED": "1"}
    z = cli_zygote.zygote()
    assert z is not None, f"the zygote is not usable here: {z and z.why_not}"
    forked = z.run(str(script), args, cwd, env, timeout)
    fresh = subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
    return forked, fresh


@pytest.mark.parametrize("what,code", [("ok", 0), ("exit3", 3), ("message", 1), ("raise", 1), ("thread", 0),
                                       ("interrupt", -2)])
def test_a_forked_run_is_a_fresh_interpreter_run(script, tmp_path, what, code):
    forked, fresh = _both(script, [what, "a b"], tmp_path)
    assert forked.returncode == fresh.returncode == code
    first = json.loads(forked.stdout.splitlines()[0])
    assert first == json.loads(fresh.stdout.splitlines()[0])
    assert first["argv"] == [what, "a b"] and first["cwd"] == str(tmp_path) and first["name"] == "__main__"
    assert first["path0"] == str(script.parent) and first["var"] == "x y" and first["stdin"] == ""
    assert forked.stdout == fresh.stdout  # atexit handlers and joined threads included
    assert forked.stderr == fresh.stderr  # the traceback too
    assert ("ValueError: boom" in forked.stderr) == (what == "raise")


def test_the_zygote_forks_before_importing_the_project_or_pytest(script, tmp_path):
    forked, _ = _both(script, ["ok"], tmp_path)
    assert json.loads(forked.stdout.splitlines()[0])["preloaded"] == []
    assert "torch" in cli_zygote.PRELOAD and "pipeline" not in " ".join(cli_zygote.PRELOAD)


def test_a_run_past_its_timeout_is_killed_as_subprocess_does(script, tmp_path):
    z = cli_zygote.zygote()
    with pytest.raises(subprocess.TimeoutExpired):
        z.run(str(script), ["sleep"], tmp_path, dict(os.environ), 1.0)
    assert z.run(str(script), ["ok"], tmp_path, dict(os.environ), 60).returncode == 0  # still serving


def test_an_import_time_variable_that_differs_gets_a_fresh_interpreter(script, tmp_path, monkeypatch):
    z = cli_zygote.zygote()
    env = {**os.environ, "OMP_NUM_THREADS": str(int(os.environ.get("OMP_NUM_THREADS", "1")) + 7)}
    assert not z.faithful_for(env) and z.faithful_for(dict(os.environ))
    calls = []
    monkeypatch.setattr(z, "run", lambda *a, **k: calls.append(a))
    proc = cli_zygote.run(script, ["ok"], tmp_path, env, 60)
    assert proc.returncode == 0 and calls == []  # ran in subprocess.run, not in the zygote


def test_two_answers_that_arrive_together_are_both_read():
    """The pid and the exit status can reach the pipe before the test reads either: the second must
    come from the reader's buffer, not from a select() on an empty pipe (that would wait out the timeout)."""
    import time

    r, w = os.pipe()
    try:
        z = cli_zygote._Zygote.__new__(cli_zygote._Zygote)
        z._fd, z._buffer = r, b""
        os.write(w, b'{"pid": 7}\n{"returncode": 3}\n')
        assert z._read(None) == {"pid": 7}
        start = time.monotonic()
        assert z._read(time.monotonic() + 5) == {"returncode": 3} and time.monotonic() - start < 1
        assert z._read(time.monotonic() + 0.2) is None  # nothing more: the deadline, not a hang
    finally:
        os.close(r)
        os.close(w)


def test_a_zygote_that_did_not_get_ready_is_not_started_again(script, tmp_path, monkeypatch):
    """A preload that printed (or failed) means a fresh interpreter for every run, without paying for a
    new zygote's imports on each one."""
    class NotReady:
        started = 0

        def __init__(self):
            NotReady.started += 1
            self.ready, self.why_not = False, "printed something"

        def alive(self):
            return False  # gone, too: still not retried

        def close(self):
            pass

    monkeypatch.setattr(cli_zygote, "_zygote", None)
    monkeypatch.setattr(cli_zygote, "_Zygote", NotReady)
    runs = [cli_zygote.run(script, ["ok"], tmp_path, dict(os.environ), 60) for _ in range(2)]
    assert [p.returncode for p in runs] == [0, 0] and NotReady.started == 1
