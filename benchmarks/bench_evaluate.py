"""Time job=evaluate's compute (the scoring, without writing HDF5 / figures / report) in-process.

    python benchmarks/bench_evaluate.py                        # this tree, 2 repeats, default sizes
    python benchmarks/bench_evaluate.py --reps 3 --trees /tmp/ev_base .   # interleaved: an older checkout vs this one
    python benchmarks/bench_evaluate.py --ckpt PATH evaluate.sanity_repeats=1 evaluate.num_images=200

Each repeat runs, for every tree in ``--trees`` (default: this repository), one fresh worker
process (``python bench_evaluate.py --worker`` with that tree first on ``sys.path``) that loads
the checkpoint and the test set, builds the evaluate job as ``visualize.py job=evaluate`` does,
and times ``EvaluateJob.compute`` alone. Trees alternate order between repeats, so load drift on
a shared machine hits both alike. Prints the CPU model, the load average before and after, each
tree's median and range (wall seconds and the worker's CPU seconds, which a loaded machine
inflates less), the ratio of medians and the range of the paired ratios, per-part times (each
method's maps, cascade and deletion/insertion), and (``--compare``) the largest difference of
every score between the first and the last tree.

``--scores OUT.json``: every score of the first and the last tree side by side with its 95 %
bootstrap interval over the images, computed here (pipeline/evaluation/bootstrap.py of this
checkout) from the per-image values each worker returns -- the same intervals for an old tree
that stores none -- and whether the last tree's value lies in the first tree's interval.

The checkpoint: ``--ckpt`` (default: the newest complete lines/multihead run under outputs/train,
as visualize.py picks it). Trailing ``key=value`` arguments are Hydra overrides (e.g. smaller
samples for a quick look); they apply to every tree.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCORES = ["pointing_game", "energy_in_mask", "mask_share", "topk_iou", "deletion_auc", "deletion_auc_random",
          "insertion_auc", "insertion_auc_random", "sanity_top_layer", "sanity_last_step", "blank_maps"]


def worker(ckpt: str | None, overrides: list[str], out: str) -> None:
    """Load, build the evaluate job, time compute; write ``{"seconds", "rows"}`` to ``out``."""
    import tempfile

    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from pipeline.config import register_configs
    from pipeline.jobs.base import build_jobs
    from pipeline.visualization.context import load_context

    register_configs()

    tmp = tempfile.mkdtemp(prefix="bench_evaluate_")
    cache = os.environ.get("CNNVIS_CACHE_DIR", str(Path.cwd() / "outputs" / "cache"))
    ov = [f"paths.cache_dir={cache}", "job=evaluate", *([f"ckpt={ckpt}"] if ckpt else []), *overrides]
    with initialize_config_dir(config_dir=str(Path.cwd() / "conf"), version_base="1.3"):
        cfg = compose(config_name="visualize", overrides=ov, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = tmp
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    threads = cfg.get("torch_threads")
    if threads:
        torch.set_num_threads(int(threads))
    ctx = load_context(cfg)
    job, = build_jobs(cfg, ctx)
    phases = _time_phases(job)
    t0, c0 = time.perf_counter(), time.process_time()
    result = job.compute(None, int(cfg.batch_size))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = [{k: v for k, v in r.items() if k != "sanity_top_layer_each"} for r in result.rows]
    Path(out).write_text(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "rows": rows, "ckpt": str(ctx.ckpt),
                                     "threads": torch.get_num_threads(), "phases": phases,
                                     "per_image": per_image_values(result, int(cfg.evaluate.sanity_repeats))}))


def per_image_values(result, repeats: int) -> dict[str, dict[str, list]]:
    """``{"method/head": {score: per-image values}}`` from what compute returns in any tree (an old
    tree keeps no per-image AUCs: they are recomputed from its curves, trapezoid over the fractions)."""
    import numpy as np

    out: dict[str, dict[str, list]] = {}
    for (method, head), stored in result.arrays.items():
        a, v = stored["arrays"], {}
        for k in ("pointing_game", "energy_in_mask", "mask_share", "topk_iou"):
            if k in a:
                v[k] = np.asarray(a[k], dtype=float).tolist()
        for mode in ("deletion", "insertion"):
            curves = result.curves.get((head, mode), {})
            if method in curves:
                steps = curves[method].shape[1] - 1
                p = int(np.prod(np.shape(result.first_image)[-2:]))  # pixels per image
                frac = (np.arange(steps + 1) * p // steps) / p  # the curves' x: pixels changed / pixels
                auc = np.trapezoid(curves[method].astype(float), frac, axis=1)
                rauc = np.trapezoid(curves["random order"].astype(float), frac, axis=1)
                v[f"{mode}_auc"], v[f"{mode}_auc_random"] = auc.tolist(), rauc.tolist()
                v[f"{mode}_gap"] = ((rauc - auc) if mode == "deletion" else (auc - rauc)).tolist()
        if "sanity_spearman" in a:
            sp = np.asarray(a["sanity_spearman"], dtype=float)
            v["sanity_top_layer"] = sp[1].reshape(repeats, -1).tolist()
            v["sanity_last_step"] = sp[-1].reshape(repeats, -1).tolist()
        out[f"{method}/{head}"] = v
    return out


def _time_phases(job) -> dict[str, float]:
    """Seconds per phase (maps for localization, faithfulness, sanity) and method, filled in as the
    job runs: the job's own methods wrapped (whichever of them this tree has)."""
    phases: dict[str, float] = {}
    where = {"phase": "maps"}

    def timed(fn, phase):
        def wrapper(*a, **k):
            outer, where["phase"] = where["phase"], phase
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                where["phase"] = outer
                if outer == "maps":  # nested calls count in the outer phase
                    dt = time.perf_counter() - t0
                    phases[phase] = phases.get(phase, 0.0) + dt
                    key = f"{where.get('method')} {phase}"
                    phases[key] = phases.get(key, 0.0) + dt
        return wrapper

    for name, phase in (("_faithfulness", "faithfulness"), ("_sanity", "sanity")):
        if hasattr(job, name):
            setattr(job, name, timed(getattr(job, name), phase))
    class TimedMethods(dict):  # the job loops over its methods: the time from one to the next
        def items(self):
            for key, value in list(super().items()):
                t0 = time.perf_counter()
                where["method"] = key
                yield key, value
                phases[f"method {key}"] = time.perf_counter() - t0

    job.methods = TimedMethods(job.methods)
    return phases


def default_ckpt() -> str | None:
    runs = []
    for rec in (ROOT / "outputs" / "train").rglob("run.json"):
        try:
            r = json.loads(rec.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if r.get("status") == "complete" and r.get("dataset") == "lines" and r.get("model") == "multihead" \
                and not r.get("cut_short") and (rec.parent / "checkpoints" / "best.ckpt").is_file():
            runs.append((rec.stat().st_mtime, rec.parent / "checkpoints" / "best.ckpt"))
    return str(max(runs)[1]) if runs else None


def max_differences(a: list[dict], b: list[dict]) -> dict[str, tuple[float, str]]:
    """Per score column: the largest |a - b| over the (method, head) rows, and where."""
    bb = {(r["method"], r["head"]): r for r in b}
    out: dict[str, tuple[float, str]] = {}
    for r in a:
        other = bb.get((r["method"], r["head"]))
        if other is None:
            continue
        for col in SCORES + ["sanity_pass"]:
            x, y = r.get(col), other.get(col)
            if x is None or y is None:
                continue
            d = abs(float(x) - float(y))
            if math.isnan(d):
                d = 0.0 if (math.isnan(float(x)) and math.isnan(float(y))) else float("inf")
            if col not in out or d > out[col][0]:
                out[col] = (d, f"{r['method']}/{r['head']}")
    return out


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def scores_side_by_side(old_rows, old_values, new_rows, new_values) -> list[dict]:
    """One entry per (method, head, score): old value and interval, new value and interval, and
    whether the new value lies in the old interval (the intervals from the per-image values)."""
    from pipeline.evaluation.bootstrap import bootstrap_ci

    new_by = {(r["method"], r["head"]): r for r in new_rows}
    out = []
    for r in old_rows:
        key = f"{r['method']}/{r['head']}"
        n = new_by.get((r["method"], r["head"]))
        for col, values in old_values.get(key, {}).items():
            old_ci = bootstrap_ci(values)
            new_v = new_values.get(key, {}).get(col)
            new_ci = bootstrap_ci(new_v) if new_v is not None else None
            old_value = r.get(col, float(sum(map(float, _flat(values))) / max(len(_flat(values)), 1)))
            new_value = (n or {}).get(col) if (n or {}).get(col) is not None else (
                float(sum(_flat(new_v)) / len(_flat(new_v))) if new_v else None)
            within = None if new_value is None else bool(old_ci[0] - 1e-12 <= new_value <= old_ci[1] + 1e-12)
            out.append({"method": r["method"], "head": r["head"], "score": col, "old": old_value, "old_ci": old_ci,
                        "new": new_value, "new_ci": new_ci, "within": within})
    return out


def markdown_tables(table: list[dict]) -> str:
    """The --scores entries as markdown: per score, how many (method, head) values stayed in the old
    interval and the largest change; then one line per entry."""
    def num(v):
        return "-" if v is None else f"{v:.4g}"

    by_score: dict[str, list[dict]] = {}
    for t in table:
        by_score.setdefault(t["score"], []).append(t)
    lines = ["| score | within the old 95 % interval | largest abs. change | widest old interval |", "|---|---|---|---|"]
    for score, ts in by_score.items():
        changes = [abs(t["new"] - t["old"]) for t in ts if t["new"] is not None and t["old"] is not None]
        widths = [t["old_ci"][1] - t["old_ci"][0] for t in ts]
        lines.append(f"| {score} | {sum(bool(t['within']) for t in ts)} of {len(ts)} | {num(max(changes, default=None))} "
                     f"| {num(max(widths, default=None))} |")
    top = [t for t in table if t["score"] == "sanity_top_layer" and t["new"] is not None]
    if top:
        same = sum((t["old"] < 0.5) == (t["new"] < 0.5) for t in top)
        lines += ["", f"sanity verdicts (top-layer correlation < 0.5) unchanged: {same} of {len(top)}"]
    lines += ["", "| method | head | score | old | old 95 % interval | new | within |", "|---|---|---|---|---|---|---|"]
    for t in table:
        lines.append(f"| {t['method']} | {t['head']} | {t['score']} | {num(t['old'])} | "
                     f"[{num(t['old_ci'][0])}, {num(t['old_ci'][1])}] | {num(t['new'])} | "
                     f"{'yes' if t['within'] else 'NO' if t['within'] is False else '-'} |")
    return "\n".join(lines)


def _flat(values) -> list[float]:
    return [float(v) for row in values for v in (row if isinstance(row, list) else [row])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trees", nargs="+", default=[str(ROOT)], help="checkouts to time (each its own pipeline/)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--compare", action="store_true", help="print the largest score difference first vs last tree")
    ap.add_argument("--scores", metavar="OUT.json", default=None,
                    help="write every score of the first and last tree with its bootstrap interval")
    ap.add_argument("--table", metavar="SCORES.json", default=None,
                    help="print a --scores file as markdown tables (a summary per score, then every score) and exit")
    ap.add_argument("--worker", metavar="OUT", default=None, help=argparse.SUPPRESS)
    args, overrides = ap.parse_known_args()
    if args.table:
        print(markdown_tables(json.loads(Path(args.table).read_text())))
        return
    if args.worker:
        worker(args.ckpt, overrides, args.worker)
        return
    ckpt = args.ckpt or default_ckpt()
    from _timing import cpu_model  # here, not at the top: it puts this checkout first on sys.path, and a
    # worker must import the pipeline of the tree it times (PYTHONPATH)
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores visible); load average {_load()}")
    print(f"checkpoint: {ckpt}; overrides: {overrides or 'none'}")
    trees = [str(Path(t).resolve()) for t in args.trees]
    times: dict[str, list[float]] = {t: [] for t in trees}
    cpus: dict[str, list[float]] = {t: [] for t in trees}
    rows: dict[str, list[dict]] = {}
    per_image: dict[str, dict] = {}
    env = {**os.environ, "CNNVIS_CACHE_DIR": os.environ.get("CNNVIS_CACHE_DIR", str(ROOT / "outputs" / "cache"))}
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_evaluate_{os.getpid()}.json"
    for rep in range(args.reps):
        for tree in (trees if rep % 2 == 0 else trees[::-1]):
            cmd = [sys.executable, str(HERE / "bench_evaluate.py"), "--worker", str(out),
                   *(["--ckpt", ckpt] if ckpt else []), *overrides]
            subprocess.run(cmd, cwd=tree, env={**env, "PYTHONPATH": tree}, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            res = json.loads(out.read_text())
            if args.scores:  # each worker's result kept beside the table (a long run cut short keeps its parts)
                Path(f"{args.scores}.rep{rep}.{Path(tree).name}.json").write_text(out.read_text())
            times[tree].append(res["seconds"])
            cpus[tree].append(res["cpu_seconds"])
            rows[tree], per_image[tree] = res["rows"], res["per_image"]
            print(f"  rep {rep}: {tree}: compute {res['seconds']:.1f} s, {res['cpu_seconds']:.1f} CPU s "
                  f"({res['threads']} torch threads; load average now {_load()}); "
                  + ", ".join(f"{k} {v:.1f}" for k, v in res.get("phases", {}).items()), flush=True)
    out.unlink(missing_ok=True)
    for tree, ts in times.items():
        cs = cpus[tree]
        print(f"{tree}: median {statistics.median(ts):.1f} s (min {min(ts):.1f}, max {max(ts):.1f}; {len(ts)} runs); "
              f"CPU {statistics.median(cs):.1f} s (min {min(cs):.1f}, max {max(cs):.1f})")
    if len(trees) > 1:
        for what, series in (("wall", times), ("CPU", cpus)):
            b, c = series[trees[0]], series[trees[-1]]
            paired = [x / y for x, y in zip(b, c)]
            print(f"speed-up ({what}) {trees[-1]} vs {trees[0]}: {statistics.median(b) / statistics.median(c):.2f}x "
                  f"(paired ratios {min(paired):.2f}x .. {max(paired):.2f}x)")
    if args.scores:
        table = scores_side_by_side(rows[trees[0]], per_image[trees[0]], rows[trees[-1]], per_image[trees[-1]])
        Path(args.scores).write_text(json.dumps(table, indent=1))
        outside = [t for t in table if t["within"] is False]
        print(f"scores: {len(table)} compared, {len(outside)} outside the first tree's interval; written to {args.scores}")
        if args.compare:
            print("largest score difference per column (first vs last tree):")
            for col, (d, where) in max_differences(rows[trees[0]], rows[trees[-1]]).items():
                print(f"  {col:<22} {d:.3g}  ({where})")


if __name__ == "__main__":
    main()
