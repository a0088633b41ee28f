"""Integrated Gradients: completeness error per quadrature rule and step count, and the time it costs.

    python benchmarks/bench_ig_completeness.py [--per-class 1] [--steps N] [--gl 2,3,4,6,8,12,16,24,32]
                                               [--reps 3] [--threads 1] [--ckpt PATH|random]

The default multihead (the newest trained checkpoint under outputs/train/lines/multihead, else
random init; the script says which), every head, each image's predicted class, zero baseline, on
generated lines images (``--per-class`` per class, drawn in the style the checkpoint was trained
on). Completeness error per image and head: ``|sum(attributions) - (f(x) - f(x0))|``
(``extras["delta"]``), absolute and relative to ``|f(x) - f(x0)|`` (``extras["delta_relative"]``);
median and 95th percentile over all images and heads.

The reference is the Riemann sum at ``--steps`` (default: conf/methods/integrated_gradients.yaml's
n_steps) with Captum's ``riemann_trapezoid`` rule (the other Riemann rules printed for
information); Gauss-Legendre (numpy's leggauss nodes mapped to [0, 1]) is swept over ``--gl``, and
the smallest n whose |delta| median and 95th percentile are at or below the reference's is
reported, and the smallest n meeting the relative ones too. Then the reference, Gauss-Legendre at
those n and at ``--steps`` are timed interleaved (median, range, ratio to the reference).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import apply_allocator, ROOT, add_timing_args, cpu_model, describe, interleaved, speedup  # noqa: E402
from bench_heads_backward import default_model  # noqa: E402

RIEMANN = ("riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right")


def conf_steps() -> int:
    from omegaconf import OmegaConf

    return int(OmegaConf.load(os.path.join(ROOT, "conf", "methods", "integrated_gradients.yaml"))
               .integrated_gradients.n_steps)


def lines_images(per_class: int, ckpt_desc: str) -> tuple[torch.Tensor, str]:
    """``per_class`` generated lines images per class in [0, 1], in the training run's style."""
    from omegaconf import OmegaConf

    from pipeline.data.lines import generate_lines

    style = "sheet"
    if ckpt_desc.startswith("trained checkpoint "):
        run = os.path.dirname(os.path.dirname(os.path.join(ROOT, ckpt_desc.split(" ", 2)[2])))
        cfg = os.path.join(run, "config.yaml")
        if os.path.exists(cfg):
            style = str(OmegaConf.select(OmegaConf.load(cfg), "data.style", default="sheet"))
    arr = generate_lines(per_class=per_class, seed=12345, progress=False, style=style)
    return torch.from_numpy(arr.images).float() / 255.0, style


def errors(model, x, method: str, n: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Absolute and relative completeness errors, every image and head (pooled)."""
    from pipeline.attribution.integrated_gradients import IntegratedGradients

    res = IntegratedGradients(model, n_steps=n, method=method, batch_size=batch)(x)
    res = res if isinstance(res, dict) else {"class": res}
    ab = torch.cat([r.extras["delta"].abs() for r in res.values()]).numpy()
    rel = torch.cat([r.extras["delta_relative"] for r in res.values()]).numpy()
    return ab, rel


def stats(v: np.ndarray) -> tuple[float, float]:
    v = v[np.isfinite(v)]
    return float(np.median(v)), float(np.percentile(v, 95))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=1)
    ap.add_argument("--steps", type=int, default=None, help="the reference's steps (default: the conf's n_steps)")
    ap.add_argument("--gl", default="2,3,4,6,8,12,16,24,32")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--ckpt", default=None)
    add_timing_args(ap, warmup=1)
    ap.set_defaults(reps=3)
    args = ap.parse_args()
    print(apply_allocator(args))
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or conf_steps()
    model, what = default_model(args.ckpt)
    x, style = lines_images(args.per_class, what)
    print(f"CPU: {cpu_model()}; load average at start {' '.join(f'{v:.2f}' for v in os.getloadavg())}; "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"model: {what}; {len(x)} generated lines images (style {style}), heads {list(model.head_classes)}, "
          f"predicted classes, zero baseline; errors pooled over images x heads")

    rows = [(m, steps) for m in RIEMANN] + [("gausslegendre", int(n)) for n in args.gl.split(",")]
    table = {}
    print(f"\n  {'rule':<18} {'steps':>5}  {'|delta| median':>14} {'p95':>10}  {'relative median':>15} {'p95':>10}")
    for m, n in rows:
        ab, rel = errors(model, x, m, n, args.batch)
        table[(m, n)] = (*stats(ab), *stats(rel))
        a_med, a_95, r_med, r_95 = table[(m, n)]
        print(f"  {m:<18} {n:>5}  {a_med:14.3e} {a_95:10.3e}  {r_med:15.3e} {r_95:10.3e}")
    ref = table[("riemann_trapezoid", steps)]
    gl = {n: v for (m, n), v in table.items() if m == "gausslegendre"}
    ok_abs = [n for n, v in gl.items() if v[0] <= ref[0] and v[1] <= ref[1]]
    ok = [n for n, v in gl.items() if all(a <= b for a, b in zip(v, ref))]
    best_abs = min(ok_abs) if ok_abs else None
    best = min(ok) if ok else None
    print(f"\nreference: riemann_trapezoid, {steps} steps. Smallest Gauss-Legendre n at or below it on "
          f"|delta| (median and p95): {best_abs if best_abs is not None else 'none in the sweep'}; on all four "
          f"statistics (|delta| and relative, median and p95): {best if best is not None else 'none in the sweep'}")

    from pipeline.attribution.integrated_gradients import IntegratedGradients

    def run(m, n):
        return lambda: IntegratedGradients(model, n_steps=n, method=m, batch_size=args.batch)(x)

    contenders = {f"riemann_trapezoid_{steps}": run("riemann_trapezoid", steps),
                  f"gausslegendre_{steps}": run("gausslegendre", steps)}
    for n in sorted({b for b in (best, best_abs) if b is not None and b != steps}):
        contenders[f"gausslegendre_{n}"] = run("gausslegendre", n)
    t = interleaved(contenders, args.reps, args.warmup)
    print(f"\ntime per call, {len(x)} images, every head (reps {args.reps} + {args.warmup} warm-up)")
    print(describe(t, len(x)))
    for name in list(t)[1:]:
        print(speedup(t, f"riemann_trapezoid_{steps}", name))
    print(f"load average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
