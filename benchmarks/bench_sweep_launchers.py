"""Wall time of a 4-run training sweep: Hydra's basic launcher vs hydra/launcher=joblib with 2 jobs.

Baseline: ``python train.py -m <4 combinations>`` as a user runs it (the basic launcher: one
combination after another in one process, torch on every core). Contender: the same command with
``hydra/launcher=joblib hydra.launcher.n_jobs=2`` (two combinations at a time in worker processes,
each with its share of the cores: torch_threads=null gives cores // n_jobs threads). Both are timed
as whole commands, start-up included; the four runs are small but real trainings (multihead on
lines, 100 images per class, 1 epoch, test at the end). The dataset cache is built by an untimed
warm-up round, so both read it. Repeats are interleaved (the order alternates), and the script
prints the median, range and paired ratios, the CPU model and the core count.

    python benchmarks/bench_sweep_launchers.py [--reps 3] [--per-class 100] [--epochs 1]

Needs the launcher plugin: pip install -r requirements-cluster.txt.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from _timing import cpu_model, describe, interleaved, speedup

ROOT = Path(__file__).resolve().parents[1]



def sweep_command(out: Path, cache: Path, args, launcher: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "-m", "seed=0,1,2,3", "dataset=lines", "model=multihead",
            f"data.per_class={args.per_class}", "data.progress=false", "trainer=cpu",
            f"trainer.max_epochs={args.epochs}", "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false", f"paths.root_dir={out}", f"paths.cache_dir={cache}", *launcher]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        counter = {"n": 0}

        def run(launcher: list[str]):
            def go():
                counter["n"] += 1
                out = root / f"out{counter['n']}"  # a fresh outputs folder per command
                proc = subprocess.run(sweep_command(out, root / "cache", args, launcher),
                                      capture_output=True, text=True, cwd=ROOT)
                if proc.returncode != 0:
                    sys.exit(f"sweep failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
                done = [p for p in out.rglob("run.json") if '"complete"' in p.read_text()]
                assert len(done) == 4, f"expected 4 complete runs, found {len(done)}"
            return go

        contenders = {"basic launcher": run([]),
                      f"joblib n_jobs={args.jobs}": run(["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.jobs}"])}
        times = interleaved(contenders, reps=args.reps, warmup=args.warmup)

    print(f"CPU: {cpu_model()}; {len(os.sched_getaffinity(0))} usable cores; Python {platform.python_version()}")
    print(f"4-run training sweep (multihead on lines, per_class={args.per_class}, {args.epochs} epoch(s) each, "
          f"whole command timed), {args.reps} interleaved repeats after {args.warmup} warm-up round(s):")
    print(describe(times))
    print(speedup(times, "basic launcher", f"joblib n_jobs={args.jobs}"))


if __name__ == "__main__":
    main()
