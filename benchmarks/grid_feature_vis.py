"""The grid the filters job's defaults (conf/job/filters.yaml) were chosen from (issue 10).

    python benchmarks/grid_feature_vis.py [--threads 1] [--only 0,3]

Each row is one setting of the optimization, measured on the issue's bars with the functions of
bench_feature_vis.py: angle classes of the default lines multihead model whose second-moment axis
is within 7.5 deg; red/blue energy share of the colour class pictures; MNIST cnn_basic digit
pictures read right by the independent cnn_deep judge; the objective reached as a share of plain
pixel ascent's (pixel, no transforms, no penalties, all channels, same steps and lr) on the angle
classes, on the 64 conv3 channels and on the MNIST digits (plain: as many steps, robust + polish); the wall time
of the angle and conv3 optimizations. Prints a markdown table.
The MNIST column runs the row's settings on the grey model (channels: all).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_feature_vis import angle_errors, colour_shares, cpu_model, judge_hits, newest  # noqa: E402
from pipeline.visualization.feature_vis import FeatureVisualizer  # noqa: E402

BASE = dict(param="pixel", transforms=["jitter", "scale", "rotate"], steps=64, lr=0.05, noise=0.01, jitter=2.0,
            scale=0.1, rotate=10.0, l1=0.0, lhalf=0.0, centre=0.0, tv=0.0, blur=0.0, channels=None, polish=0,
            polish_lr=0.1, polish_mask=0.0, restarts=1)
GRID = [
    dict(param="fft", steps=128),             # 0: the earlier (Lucid) defaults
    dict(steps=128),
    dict(steps=64),
    dict(steps=64, l1=0.5),
    dict(steps=64, l1=2.0),
    dict(steps=64, l1=2.0, lr=0.02),          # 5
    dict(steps=64, l1=2.0, transforms=[]),
    dict(param="fft", steps=64, l1=2.0),
    dict(steps=64, l1=1.0, tv=1.0),
    dict(steps=32, l1=0.5),
    dict(steps=64, lhalf=20.0),               # 10: L1/2 alone: sparse strokes, still tiling the image
    dict(steps=64, lhalf=20.0, centre=16.0),
    dict(steps=64, l1=10.0, centre=100.0),
    dict(steps=64, lhalf=10.0, centre=100.0),
    dict(steps=32, lhalf=10.0, centre=100.0),
    dict(steps=32, lhalf=10.0, centre=100.0, transforms=[]),  # 15
    dict(steps=32, lhalf=20.0, centre=100.0),
    dict(steps=32, lhalf=10.0, centre=200.0),
    dict(param="fft", steps=32, lhalf=10.0, centre=100.0),
    dict(steps=16, lhalf=10.0, centre=100.0),
    dict(steps=32, lhalf=10.0, centre=3.0),    # 20: the MNIST prior
    dict(steps=32, lhalf=10.0, centre=10.0),
    dict(steps=32, lhalf=5.0),
    dict(steps=32, lhalf=20.0, centre=100.0, channels=[0, 2]),  # red and blue only (the lines data's colours)
    dict(steps=32, lhalf=20.0, centre=200.0, channels=[0, 2]),  # 24: the lines prior for class pictures
    dict(steps=32, channels=[0, 2]),                              # 25: the old lines prior for unit pictures
    # 26-33: a polish phase after the lines class prior (row 24): steps on the objective alone (no transforms,
    # no penalties); the trade-off of the objective bar against the angle / MNIST bars
    dict(steps=32, lhalf=20.0, centre=200.0, channels=[0, 2], polish=8, polish_lr=0.01),
    dict(steps=32, lhalf=20.0, centre=200.0, channels=[0, 2], polish=8, polish_lr=0.05),
    dict(steps=32, lhalf=20.0, centre=200.0, channels=[0, 2], polish=8, polish_lr=0.1),
    dict(steps=32, lhalf=20.0, centre=200.0, channels=[0, 2], polish=32, polish_lr=0.1),
    dict(steps=32, lhalf=20.0, centre=200.0, channels=[0, 2], polish=8, polish_lr=0.05, polish_mask=0.1),  # 30
    dict(steps=32, lhalf=20.0, centre=200.0, channels=[0, 2], polish=32, polish_lr=0.1, polish_mask=0.1),
    dict(steps=128, lhalf=20.0, centre=200.0, channels=[0, 2]),
    dict(steps=32, polish=8, polish_lr=0.1),                      # 33: the unit pictures' prior (all channels)
    dict(steps=32, lhalf=20.0, centre=200.0, channels=[0, 2], restarts=3),  # 34: row 24, best of 3 starts
]


def plain(s: dict) -> dict:
    """Plain pixel ascent: as many steps (robust + polish) at the row's lr."""
    return {**s, "param": "pixel", "transforms": [], "l1": 0.0, "lhalf": 0.0, "centre": 0.0, "tv": 0.0, "blur": 0.0,
            "channels": None, "polish": 0, "steps": s["steps"] + s.get("polish", 0)}


def measure(nets: dict, s: dict) -> dict:
    angle = FeatureVisualizer(nets["lines"], "heads.angle", (3, 28, 28))
    conv3 = FeatureVisualizer(nets["lines"], "features.conv3", (3, 28, 28))
    t = time.perf_counter()
    a = angle(objective="class", **s)
    c = conv3(objective="channel", **s)
    dt = time.perf_counter() - t
    a0, c0 = angle(objective="class", **plain(s)), conv3(objective="channel", **plain(s))
    ra, rc = a.scores / a0.scores, c.scores / c0.scores.clamp_min(1e-6)
    row = dict(angle=sum(e <= 7.5 for e in angle_errors(a.patterns)),
               colour=colour_shares(FeatureVisualizer(nets["lines"], "heads.colour", (3, 28, 28))(
                   objective="class", **s).patterns),
               ratio_angle=(float(ra.median()), float(ra.min())), ratio_conv3=(float(rc.median()), float(rc.min())),
               time=dt)
    if nets.get("basic") is not None and nets.get("judge") is not None:
        vis = FeatureVisualizer(nets["basic"], "classifier", (1, 28, 28))
        digits = vis(objective="class", **{**s, "channels": None})  # grey: all channels
        row["mnist"] = int((judge_hits(nets["judge"], digits.patterns) == torch.arange(10)).sum())
        row["ratio_mnist"] = float((digits.scores / vis(objective="class", **plain(s)).scores).median())
    return row


def describe(s: dict) -> str:
    extra = [f"{k} {s[k]:g}" for k in ("lhalf", "centre", "tv", "blur") if s[k]]
    extra += [f"channels {s['channels']}"] if s["channels"] is not None else []
    if s.get("polish"):
        extra += [f"polish {s['polish']} at lr {s['polish_lr']:g}" + (f", mask {s['polish_mask']:g}"
                                                                      if s.get("polish_mask") else "")]
    if s.get("restarts", 1) > 1:
        extra += [f"best of {s['restarts']} starts"]
    return (f"{s['param']} | {'+'.join(s['transforms']) or 'none'} | {s['steps']} | {s['lr']:g} | {s['l1']:g}"
            + (f" ({', '.join(extra)})" if extra else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated row numbers of GRID")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    nets = {"lines": newest("lines", "multihead"), "basic": newest("mnist", "cnn_basic"),
            "judge": newest("mnist", "cnn_deep")}
    if nets["lines"] is None:
        sys.exit("no complete lines/multihead run: python train.py first")
    rows = [int(i) for i in args.only.split(",") if i] or range(len(GRID))
    print(f"{cpu_model()}, {torch.get_num_threads()} thread(s); penalty weights are relative to |objective|")
    print("| # | param | transforms | steps | lr | l1 | angle <= 7.5 deg | red / blue share | MNIST judge "
          "| objective / plain: angle median (min) | conv3 median (min) | MNIST median | time (angle + conv3) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for i in rows:
        s = {**BASE, **GRID[i]}
        r = measure(nets, s)
        print(f"| {i} | {describe(s)} | {r['angle']}/12 | {r['colour'][0]:.0%} / {r['colour'][1]:.0%} | "
              f"{r.get('mnist', 'n/a')}/10 | {r['ratio_angle'][0]:.0%} ({r['ratio_angle'][1]:.0%}) | "
              f"{r['ratio_conv3'][0]:.0%} ({r['ratio_conv3'][1]:.0%}) | "
              f"{format(r['ratio_mnist'], '.0%') if 'ratio_mnist' in r else 'n/a'} | {r['time']:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
