"""Feature visualization (issue 10): are the pictures right, and how fast?

    python benchmarks/bench_feature_vis.py [--steps 32] [--reps 3] [--speed-steps 32] [--skip-mnist] [--seed 0]

Uses the newest complete checkpoints (outputs/train): lines/multihead, mnist/cnn_basic and
mnist/cnn_deep (the judge; train it with another seed: python train.py dataset=mnist model=cnn_deep seed=1).
"configured" = the job's defaults (conf/job/filters.yaml); "plain" = pixel ascent, no transforms.
Bars: angle axis within 7.5 deg >= 11/12; colour energy >= 80 %; MNIST judge >= 8/10; objective
>= 90 % of plain on every unit; batched >= 2.5x one at a time; job on the default model <= 60 s;
bad input rejected before any work.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from omegaconf import OmegaConf  # noqa: E402

from _timing import cpu_model  # noqa: E402

from pipeline.errors import CnnvisError  # noqa: E402
from pipeline.jobs.filters import data_prior, prior_setting  # noqa: E402
from pipeline.training.checkpoints import load_lit_module  # noqa: E402
from pipeline.training.registry import list_runs  # noqa: E402
from pipeline.visualization.feature_vis import FeatureVisualizer  # noqa: E402

_JOB = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/job/filters.yaml"))["filters"]
_KEYS = ("param", "transforms", "steps", "lr", "noise", "jitter", "scale", "rotate", "l1", "lhalf", "centre", "tv",
         "blur", "channels", "polish", "polish_lr", "polish_mask")


def configured(dataset: str, objective: str = "class") -> dict:
    """The job's settings (conf/job/filters.yaml) for a model trained on ``dataset`` (its prior for the objective)."""
    s = {k: v for k, v in _JOB.items() if k in _KEYS}
    s["lhalf"], s["centre"], s["channels"] = data_prior(dataset, objective, s["lhalf"], s["centre"], s["channels"],
                                                        _JOB.get("priors"))
    s["polish"] = int(prior_setting(dataset, objective, "polish", s["polish"], _JOB.get("priors")))
    s["restarts"] = int(prior_setting(dataset, objective, "restarts", _JOB.get("restarts"), _JOB.get("priors"), 1))
    return s


CONF, CONF_MNIST, CONF_UNIT = configured("lines"), configured("mnist"), configured("lines", "channel")
PLAIN = {**CONF, "param": "pixel", "transforms": [], "l1": 0.0, "lhalf": 0.0, "centre": 0.0, "tv": 0.0, "blur": 0.0,
         "channels": None, "polish": 0, "restarts": 1}


def plain_for(conf: dict) -> dict:
    """Plain pixel ascent with as many steps (at ``lr``) as ``conf``'s robust + polish steps together."""
    return {**PLAIN, "seed": conf.get("seed", 0), "steps": int(conf["steps"]) + int(conf.get("polish") or 0)}


def newest(dataset: str, model: str):
    runs = list_runs(ROOT / "outputs", dataset, model)
    if not runs:
        return None
    return load_lit_module(runs[-1].best_checkpoint, f"{dataset}/{model}").net.eval()


def axis_deg(img: torch.Tensor) -> float:
    """Principal axis of the intensity above its mean (second moments), degrees counter-clockwise, [0, 180)."""
    i = img.sum(0)
    i = (i - i.mean()).clamp_min(0)
    h, w = i.shape
    y, x = torch.meshgrid(torch.arange(h, dtype=i.dtype), torch.arange(w, dtype=i.dtype), indexing="ij")
    m = i.sum().clamp_min(1e-12)
    cx, cy = (i * x).sum() / m, (i * y).sum() / m
    mu20, mu02 = (i * (x - cx) ** 2).sum(), (i * (y - cy) ** 2).sum()
    mu11 = (i * (x - cx) * -(y - cy)).sum()  # y up
    return (0.5 * math.degrees(math.atan2(float(2 * mu11), float(mu20 - mu02)))) % 180


def angle_errors(patterns) -> list[float]:
    """Per angle class i (15 i degrees): |principal axis - class angle|, degrees in [0, 90]."""
    return [abs((axis_deg(p) - 15 * i + 90) % 180 - 90) for i, p in enumerate(patterns)]


def colour_shares(patterns) -> list[float]:
    """Share of the energy (sum of squares) in the red channel of picture 0 and the blue one of picture 1."""
    return [float(patterns[row].pow(2).sum(dim=(1, 2))[ch] / patterns[row].pow(2).sum().clamp_min(1e-12))
            for row, ch in ((0, 0), (1, 2))]


def judge_hits(judge, patterns) -> torch.Tensor:
    """The judge's predicted digit for each of the 10 class pictures."""
    with torch.no_grad():
        return judge(patterns).argmax(1)


def angle_bar(net, steps):
    vis = FeatureVisualizer(net, "heads.angle", (3, 28, 28))
    out = {}
    for name, s in (("configured", {**CONF, "steps": steps}), ("plain pixel", plain_for({**CONF, "steps": steps}))):
        res = vis(objective="class", **s)
        errs = angle_errors(res.patterns)
        ok = sum(e <= 7.5 for e in errs)
        print(f"  angle {name:12s}: {ok}/12 within 7.5 deg (errors {[round(e) for e in errs]})  "
              f"[bar >= 11/12: {'MET' if ok >= 11 else 'NOT MET'}]")
        out[name] = res
    return out


def colour_bar(net, steps):
    vis = FeatureVisualizer(net, "heads.colour", (3, 28, 28))
    for label, s in (("configured", {**CONF, "steps": steps}), ("plain pixel", plain_for({**CONF, "steps": steps}))):
        shares = colour_shares(vis(objective="class", **s).patterns)
        for name, share in zip(("red", "blue"), shares):
            print(f"  colour {label:12s} {name}: {share:.0%} of the energy in the {name} channel  [bar >= 80 %: "
                  f"{'MET' if share >= 0.8 else 'NOT MET'}]")


def mnist_bar(steps):
    basic, deep = newest("mnist", "cnn_basic"), newest("mnist", "cnn_deep")
    if basic is None or deep is None:
        print("  MNIST: skipped (needs complete mnist/cnn_basic and mnist/cnn_deep runs)")
        return
    vis = FeatureVisualizer(basic, "classifier", (1, 28, 28))
    out = []
    for name, s in (("configured", {**CONF_MNIST, "steps": steps}),
                    ("plain pixel", plain_for({**CONF_MNIST, "steps": steps}))):
        res = vis(objective="class", **s)
        pred = judge_hits(deep, res.patterns)
        ok = int((pred == torch.arange(10)).sum())
        print(f"  MNIST {name:12s}: cnn_deep reads {ok}/10 as the intended digit ({pred.tolist()})  "
              f"[bar >= 8/10: {'MET' if ok >= 8 else 'NOT MET'}]")
        out.append(res)
    return out


def ratio_line(label: str, conf, plain) -> tuple[int, int]:
    """Print the objective of the configured pictures as a share of plain pixel ascent's, per unit: median and
    range over the units where plain ascent ends above 0 (a share of a value <= 0 means nothing: conv2's
    pre-batch-norm units whose best is ~0 from below are counted apart, with their share of plain's gain over
    the start). Returns (units >= 90 %, units)."""
    pos = plain.scores > 1e-3
    ratio = conf.scores[pos] / plain.scores[pos]
    ok = int((ratio >= 0.9).sum())
    msg = (f"median {float(ratio.median()):.0%} (range {float(ratio.min()):.0%}..{float(ratio.max()):.0%}); "
           f"{ok}/{int(pos.sum())} >= 90 %") if pos.any() else "no unit where plain ends > 0"
    if (~pos).any():
        gain = (conf.scores[~pos] - conf.start_scores[~pos]) / (plain.scores[~pos] - plain.start_scores[~pos])
        msg += (f"; {int((~pos).sum())} unit(s) where plain ends <= 0 (share of plain's gain over the start: "
                f"min {float(gain.min()):.1%}, median {float(gain.median()):.1%})")
    print(f"  objective vs plain ({label}): {msg}")
    return ok, len(ratio)


def strength_bar(net, steps, angle, mnist=None):
    """The objective bar per layer and objective: the configured pictures (the job's defaults) vs plain pixel
    ascent with the same total steps (robust + polish) and lr, on the same unit, both scored on the final
    untransformed picture."""
    total = [0, 0]
    rows = [("heads.angle", "class", angle["configured"], angle["plain pixel"])]
    for layer in ("heads.colour", "heads.length", "heads.width"):
        vis = FeatureVisualizer(net, layer, (3, 28, 28))
        rows.append((layer, "class", vis(objective="class", **{**CONF, "steps": steps}),
                     vis(objective="class", **plain_for({**CONF, "steps": steps}))))
    for layer in ("features.conv1", "features.conv2", "features.conv3"):
        vis = FeatureVisualizer(net, layer, (3, 28, 28))
        rows.append((layer, "channel", vis(objective="channel", **{**CONF_UNIT, "steps": steps}),
                     vis(objective="channel", **plain_for({**CONF_UNIT, "steps": steps}))))
    if mnist is not None:
        rows.append(("mnist cnn_basic classifier", "class", *mnist))
    for layer, objective, conf, plain in rows:
        ok, n = ratio_line(f"{layer} {objective}", conf, plain)
        total[0] += ok
        total[1] += n
    print(f"  objective vs plain, all of the above: {total[0]}/{total[1]} units >= 90 %  "
          f"[bar: every unit: {'MET' if total[0] == total[1] else 'NOT MET'}]")


def speed_bar(net, steps, reps):
    vis = FeatureVisualizer(net, "features.conv3", (3, 28, 28))
    kw = {**CONF_UNIT, "steps": steps}
    times = {"batched": [], "one at a time": []}
    for _ in range(reps):
        for name, fn in (("batched", vis), ("one at a time", vis.one_at_a_time)):
            t = time.perf_counter()
            fn(objective="channel", **kw)
            times[name].append(time.perf_counter() - t)
    ratios = [b / a for a, b in zip(times["batched"], times["one at a time"])]
    med = statistics.median(times["one at a time"]) / statistics.median(times["batched"])
    print(f"  speed (features.conv3, 64 channels, {steps} steps, {reps} interleaved repeats, {cpu_model()}, "
          f"{torch.get_num_threads()} thread(s)): batched {statistics.median(times['batched']):.2f} s, one at a time "
          f"{statistics.median(times['one at a time']):.2f} s -> {med:.2f}x (paired {min(ratios):.2f}-{max(ratios):.2f}x)"
          f"  [bar >= 2.5x: {'MET' if med >= 2.5 else 'NOT MET'}]")


def job_bar(net, seed=0):
    from pipeline.jobs.filters import FiltersJob

    ctx = SimpleNamespace(net=net, input_shape=(3, 28, 28), head_classes=dict(net.head_classes),
                          class_names=[str(i) for i in range(96)], dataset_name="lines")
    t = time.perf_counter()
    raw = {k: v for k, v in _JOB.items() if k not in ("_target_", "_partial_")}  # the job resolves its priors
    job = FiltersJob(ctx, None, seed, **raw)
    result = job.compute(None, 64)
    dt = time.perf_counter() - t
    print(f"  job=filters compute on the default model ({', '.join(f'{r.layer}/{r.objective}' for r in result['patterns'])}): "
          f"{dt:.1f} s  [bar <= 60 s: {'MET' if dt <= 60 else 'NOT MET'}]")
    for layers, kw in ((["features.conv3"], {"objective": "class"}), (["heads.angle"], {"objective": "class",
                       "classes": [12]}), (None, {"transforms": ["jitter", "shear"]})):
        t = time.perf_counter()
        try:
            FiltersJob(ctx, layers, 0, **{**raw, **kw})
            msg = "NOT rejected"
        except CnnvisError as exc:
            msg = f"rejected in {time.perf_counter() - t:.2f} s: {str(exc)[:90]}"
        print(f"  bad input {layers} {kw}: {msg}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=int(CONF["steps"]))
    ap.add_argument("--speed-steps", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-mnist", action="store_true")
    ap.add_argument("--seed", type=int, default=0, help="seed of every optimization's start and transforms")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for settings in (CONF, CONF_MNIST, CONF_UNIT, PLAIN):
        settings["seed"] = args.seed
    print(f"feature visualization bench ({cpu_model()}, {args.threads} thread(s)); configured (lines class) = {CONF}; "
          f"unit pictures: lhalf {CONF_UNIT['lhalf']:g}, centre {CONF_UNIT['centre']:g}, channels {CONF_UNIT['channels']}; "
          f"polish {CONF_UNIT['polish']}; MNIST: lhalf {CONF_MNIST['lhalf']:g}, centre {CONF_MNIST['centre']:g}, "
          f"channels {CONF_MNIST['channels']}, polish {CONF_MNIST['polish']}")
    net = newest("lines", "multihead")
    if net is None:
        sys.exit("no complete lines/multihead run: python train.py first")
    angle = angle_bar(net, args.steps)
    colour_bar(net, args.steps)
    mnist = None if args.skip_mnist else mnist_bar(args.steps)
    strength_bar(net, args.steps, angle, mnist)
    speed_bar(net, args.speed_steps, args.reps)
    job_bar(net, args.seed)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
