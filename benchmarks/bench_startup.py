"""Command-line start-up: what every `python train.py|visualize.py ...` pays before its work.

    python benchmarks/bench_startup.py [--reps 3] [--only help,import,activations,filters]
                                       [--tree NAME=DIR ...]

Each measurement starts a fresh interpreter (the venv's python), one after the other inside each
repetition, contenders' order alternating (benchmarks/_timing.py), and prints the median, the range
and the median CPU seconds (user + sys of the process: less disturbed by a busy machine than the
wall time):

- ``train.py --help``, ``visualize.py --help``, ``python -c "import pipeline.config"``;
- ``visualize.py job=activations``: seconds until its first figure file appears under the run's
  ``figures/`` (the job's first output; the process is then stopped with Ctrl-C);
- ``visualize.py job=filters``: the whole command.

The visualize runs use the newest complete lines run under outputs/train (``--outputs DIR``:
DIR/train; train one first: ``python train.py``) and write into a temporary ``paths.root_dir``
that links ``train/`` and ``cache/``, so nothing is added to outputs/. A run trained by an older
version has its training figures drawn again by every visualize run (pipeline/rendering/stamps.py). ``--tree before=/tmp/old_checkout`` adds the
same commands run from another checkout (e.g. ``git archive <commit> | tar -x -C /tmp/old_checkout``)
to the interleaving, for a before/after comparison on the same machine state.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import ROOT, cpu_model  # noqa: E402

KINDS = ("help", "import", "activations", "filters")


def _rusage_cpu(ru) -> float:
    return ru.ru_utime + ru.ru_stime


def run(cmd: list[str], cwd: Path, first_file_under: Path | None = None, timeout: float = 1800) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``cmd``; with ``first_file_under``: wall seconds until a file
    appears below that folder, then the process gets SIGINT (Ctrl-C) and is waited for."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = None
    while True:   # os.wait4: the child's own CPU time
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if first_file_under is not None and any(p.is_file() for p in first_file_under.glob("*/*/*/figures*/**/*")):
            wall = time.perf_counter() - t0
            proc.send_signal(signal.SIGINT)
            _, status, ru = os.wait4(proc.pid, 0)
            break
        if time.perf_counter() - t0 > timeout:
            proc.kill()
            _, status, ru = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if wall is None:
        wall = time.perf_counter() - t0
        if first_file_under is not None:
            raise SystemExit(f"no figure appeared (exit {proc.returncode}): {' '.join(cmd)} in {cwd}")
        if proc.returncode != 0:
            raise SystemExit(f"failed (exit {proc.returncode}): {' '.join(cmd)} in {cwd}")
    return wall, _rusage_cpu(ru)


def scratch_root(outputs: Path) -> Path:
    """A paths.root_dir whose outputs/train and outputs/cache are those of ``outputs`` (read), the rest fresh."""
    root = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    (root / "outputs").mkdir()
    for name in ("train", "cache"):
        src = outputs / name
        if name == "train" and not src.is_dir():
            raise SystemExit(f"{src} is missing: train a lines model first (python train.py)")
        if src.is_dir():
            (root / "outputs" / name).symlink_to(src.resolve())
        elif name == "cache":
            print(f"warning: no {src}: every visualize run generates the lines dataset first", flush=True)
    return root


def commands(tree: Path, kinds: set[str]) -> dict[str, tuple[list[str], str | None]]:
    py = sys.executable
    out: dict[str, tuple[list[str], str | None]] = {}
    if "help" in kinds:
        out["train.py --help"] = ([py, str(tree / "train.py"), "--help"], None)
        out["visualize.py --help"] = ([py, str(tree / "visualize.py"), "--help"], None)
    if "import" in kinds:
        out["import pipeline.config"] = ([py, "-c", "import pipeline.config"], None)
    if "activations" in kinds:
        out["job=activations, first figure"] = ([py, str(tree / "visualize.py"), "job=activations"], "first")
    if "filters" in kinds:
        out["job=filters, whole command"] = ([py, str(tree / "visualize.py"), "job=filters"], "root")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    ap.add_argument("--outputs", type=Path, default=Path(ROOT) / "outputs",
                    help="the outputs folder whose train/ runs (and cache/) the visualize runs use")
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=DIR",
                    help="another checkout to time beside this one (repeatable)")
    args = ap.parse_args()
    kinds = set(args.only.split(","))
    trees = {"now": Path(ROOT)}
    for spec in args.tree:
        name, _, d = spec.partition("=")
        trees[name] = Path(d).resolve()
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores); python {sys.version.split()[0]}; {args.reps} reps")
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    scratch = []
    for r in range(args.reps):
        order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
        for what in commands(Path(ROOT), kinds):
            for tree_name, tree in order:
                cmd, mode = commands(tree, kinds)[what]
                extra, first = [], None
                if mode is not None:
                    root = scratch_root(args.outputs)
                    scratch.append(root)
                    extra = [f"paths.root_dir={root}"]
                    first = root / "outputs" / "visualize" if mode == "first" else None
                wall, cpu = run(cmd + extra, cwd=tree, first_file_under=first)
                times.setdefault((what, tree_name), []).append((wall, cpu))
                print(f"  rep {r + 1}: {what:<32} [{tree_name}] {wall:7.1f} s wall, {cpu:7.1f} s CPU", flush=True)
    print()
    width = max(len(w) for w, _ in times)
    for (what, tree_name), ts in times.items():
        walls, cpus = [t[0] for t in ts], [t[1] for t in ts]
        print(f"{what:<{width}} [{tree_name}]  median {statistics.median(walls):6.1f} s "
              f"(range {min(walls):.1f}-{max(walls):.1f}), CPU median {statistics.median(cpus):6.1f} s")
    for root in scratch:
        subprocess.run(["rm", "-rf", str(root)], check=False)


if __name__ == "__main__":
    main()
