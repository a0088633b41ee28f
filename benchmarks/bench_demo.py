"""Wall time of the README's demo, the way a newcomer runs it:

    python train.py && python visualize.py job=all

    python benchmarks/bench_demo.py [--repeats 1] [--cache DIR] [--train "overrides"] [--visualize "overrides"]

Each repeat runs both commands as subprocesses in a fresh temporary directory (so the run
search finds only this repeat's model). The lines dataset cache lives in ``--cache``
(default: a temporary directory shared by the repeats: the first repeat generates the dataset,
as on a fresh machine, and the later ones load it); each command's own time is printed, with the
phases of the training run read from its log (start-up and data, fit, test and figures).
The CPU model is printed beside every time: machines of this class differ 2-3x.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _timing import cpu_model

ROOT = Path(__file__).resolve().parents[1]
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def _log_time(line: str) -> float | None:
    m = STAMP.match(line)
    return dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() if m else None


def training_phases(run_dir: Path, t_start: float, t_end: float) -> dict[str, float]:
    """Start-up+data (process start -> the model summary), fit, and test+figures (fit end -> exit)."""
    lines = (run_dir / "train.log").read_text().splitlines()
    fit_start = next((_log_time(l) for l in lines if "datamodules" in l and "images" in l), None)
    fit_end = next((_log_time(l) for l in lines if "Trainer.fit` stopped" in l or "Signaling Trainer to stop" in l), None)
    if fit_start is None or fit_end is None:
        return {}
    return {"start-up+data": fit_start - t_start, "fit": fit_end - fit_start, "test+figures": t_end - fit_end}


def run(cmd: list[str], cwd: Path, env: dict) -> float:
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cache", default=None, help="lines dataset cache directory (default: a fresh temporary one)")
    ap.add_argument("--train", default="", help="extra train.py overrides, e.g. 'trainer.max_epochs=3'")
    ap.add_argument("--visualize", default="", help="extra visualize.py overrides")
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores")
    cache = Path(args.cache or tempfile.mkdtemp(prefix="demo_cache_")).resolve()  # the commands run elsewhere
    env = {**os.environ, "CNNVIS_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
    totals = []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="demo_") as tmp:
            cwd = Path(tmp)
            t_start = time.time()
            t_train = run([sys.executable, str(ROOT / "train.py"), *shlex.split(args.train)], cwd, env)
            run_dir = next((cwd / "outputs" / "train").rglob("run.json")).parent
            phases = training_phases(run_dir, t_start, t_start + t_train)
            t_vis = run([sys.executable, str(ROOT / "visualize.py"), "job=all", *shlex.split(args.visualize)], cwd, env)
            totals.append(t_train + t_vis)
            shown = ", ".join(f"{k} {v:.0f} s" for k, v in phases.items())
            print(f"repeat {r + 1}: train.py {t_train:.0f} s ({shown}); visualize.py job=all {t_vis:.0f} s; "
                  f"demo {t_train + t_vis:.0f} s", flush=True)
    print(f"demo: median {statistics.median(totals):.0f} s, range {min(totals):.0f}-{max(totals):.0f} s over "
          f"{len(totals)} repeat(s) on {cpu_model()}")


if __name__ == "__main__":
    main()
