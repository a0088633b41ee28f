"""Quality bars: train each model/dataset pair as a user would and compare test accuracy with
the bars of the training issue. Every run is a real `python train.py ...` (its own run directory
under --root), so the numbers are the pipeline's, not a benchmark-only path.

    python benchmarks/bench_quality.py                 # all pairs (tens of minutes on 2 CPU cores)
    python benchmarks/bench_quality.py --only multihead_lines cnn_basic_mnist

Also prints the wall time of each run; `multihead_lines` is the default demo (`python train.py`),
whose bar is <= 180 s.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name: (overrides, metric bar, time bar in seconds or None)
RUNS = {
    "multihead_lines": ([], 0.995, 180.0),                       # the default demo, as is
    "cnn_basic_mnist": (["dataset=mnist", "model=cnn_basic", "trainer.max_epochs=2"], 0.985, None),
    "cnn_deep_mnist": (["dataset=mnist", "model=cnn_deep", "trainer.max_epochs=4"], 0.993, None),
    "cnn_basic_lines": (["dataset=lines", "model=cnn_basic", "trainer.max_epochs=5"], 0.98, None),
    "cnn_deep_lines": (["dataset=lines", "model=cnn_deep", "trainer.max_epochs=5"], 0.98, None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", choices=list(RUNS), help="run only these pairs")
    parser.add_argument("--root", default=str(ROOT / "outputs" / "bench_quality"), help="paths.root_dir of the runs")
    args = parser.parse_args()
    rows = []
    for name in args.only or list(RUNS):
        overrides, bar, time_bar = RUNS[name]
        cmd = [sys.executable, str(ROOT / "train.py"), f"paths.root_dir={args.root}",
               f"paths.cache_dir={ROOT / 'outputs' / 'cache'}", "trainer.enable_progress_bar=false", *overrides]
        print("$", " ".join(cmd[1:]), flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            print(proc.stderr[-3000:])
            rows.append((name, None, bar, wall, time_bar, "FAILED"))
            continue
        run_dir = next(line.split(":", 1)[1].strip() for line in proc.stdout.splitlines() if line.strip().startswith("run dir:"))
        metrics = json.loads((Path(run_dir) / "test_metrics.json").read_text())
        acc = metrics["accuracy"]
        ok = acc >= bar and (time_bar is None or wall <= time_bar)
        rows.append((name, acc, bar, wall, time_bar, "ok" if ok else "MISSED"))
        heads = ", ".join(f"{h} {v['accuracy']:.4f}" for h, v in metrics["heads"].items())
        print(f"  {name}: test accuracy {acc:.4f} (macro F1 {metrics['f1_macro']:.4f}) [{heads}] in {wall:.0f} s", flush=True)
    print(f"\n{'run':<18} {'test acc':>9} {'bar':>7} {'wall s':>7} {'time bar':>9}  verdict")
    for name, acc, bar, wall, time_bar, verdict in rows:
        acc_s = f"{acc:.4f}" if acc is not None else "-"
        tb = f"{time_bar:.0f}" if time_bar else "-"
        print(f"{name:<18} {acc_s:>9} {bar:>7.3f} {wall:>7.0f} {tb:>9}  {verdict}")


if __name__ == "__main__":
    main()
