"""Filter-pattern throughput: all filters of a layer in one batch vs the one-at-a-time loop.

    python benchmarks/bench_filters.py [--steps 30] [--reps 7] [--warmup 1] [--threads 1] [--no-split]
                                       [--param pixel] [--transforms]

MultiHead (random init, batch-norm statistics from a few random batches), layer
``features.conv3`` (64 filters), channel objective, ``--steps`` Adam steps from the same seeded
start (plain pixel ascent by default; ``--transforms`` adds jitter+scale+rotate, ``--param fft``
the Fourier parametrization). Baseline: ``FeatureVisualizer.one_at_a_time`` (the same
optimisation, one filter per run, same start and random draws). Target: batched >= 2.5x.

"batched" is the default call (all filters in one batch); "batched_16" (information only) runs
them as batches of 16 (``batch_size=16``).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import apply_allocator, add_timing_args, describe, interleaved, make_model, speedup  # noqa: E402
from pipeline.visualization.feature_vis import FeatureVisualizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    add_timing_args(ap, warmup=1)
    ap.add_argument("--no-split", action="store_true",
                    help="leave out the information-only 'batched_16' contender (batches of 16 filters)")
    ap.add_argument("--layer", default="features.conv3")
    ap.add_argument("--param", default="pixel", choices=["pixel", "fft"])
    ap.add_argument("--transforms", action="store_true", help="jitter+scale+rotate each step")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(apply_allocator(args))

    if args.threads:
        torch.set_num_threads(args.threads)
    model = make_model(args.seed)
    fv = FeatureVisualizer(model, args.layer, (3, 28, 28))
    kw = dict(objective="channel", steps=args.steps, seed=args.seed, param=args.param,
              transforms=["jitter", "scale", "rotate"] if args.transforms else [])

    a, b = fv(**kw), fv.one_at_a_time(**kw)
    diff = (a.scores - b.scores).abs()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, layer {args.layer} "
          f"({fv.n_units} filters), {args.steps} steps, {kw['param']}, transforms {kw['transforms'] or 'none'}, "
          f"reps {args.reps} (+{args.warmup} warm-up)")
    print(f"  mean score start {a.start_scores.mean():.4f} -> final {a.scores.mean():.4f}; "
          f"|batched - one_at_a_time| final scores: median {diff.median():.2e}, max {diff.max():.2e} (float32)")

    contenders = {"one_at_a_time": lambda: fv.one_at_a_time(**kw), "batched": lambda: fv(**kw)}
    if not args.no_split:
        contenders["batched_16"] = lambda: fv(batch_size=16, **kw)
    t = interleaved(contenders, args.reps, args.warmup)
    print(describe(t, fv.n_units, "filters"))
    print(speedup(t, "one_at_a_time", "batched", 2.5))
    if not args.no_split:
        print(speedup(t, "one_at_a_time", "batched_16") + "  (info: batches of 16)")


if __name__ == "__main__":
    main()
