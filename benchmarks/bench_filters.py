"""Filter-pattern throughput: all filters of a layer in one batch vs the one-at-a-time loop.

    python benchmarks/bench_filters.py [--steps 30] [--reps 7] [--warmup 1] [--threads 1] [--no-single]

MultiHead (random init, batch-norm statistics from a few random batches), layer
``features.conv3`` (64 filters), 30 gradient-ascent steps from the same blank start.
Baseline: ``FilterVisualizer.one_at_a_time`` (the same optimisation, one filter per run, same
start and random draws). Target: batched >= 2.5x.

"batched" is the default call: on the CPU it runs the 64 filters as equal batches whose
activations fit a core's L2 cache (4 x 16 here). "batched_single" (information only) forces all
64 filters into one batch (``batch_size=0``).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import add_timing_args, describe, interleaved, make_model, speedup  # noqa: E402
from pipeline.visualization.filters import FilterVisualizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    add_timing_args(ap, warmup=1)
    ap.add_argument("--no-single", action="store_true",
                    help="leave out the information-only 'batched_single' contender (all filters in one batch)")
    ap.add_argument("--layer", default="features.conv3")
    ap.add_argument("--jitter", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    model = make_model(args.seed)
    fv = FilterVisualizer(model, args.layer, input_shape=(3, 28, 28))
    kw = dict(steps=args.steps, jitter=args.jitter, seed=args.seed)

    a, b = fv(**kw), fv.one_at_a_time(**kw)
    diff = (a.scores - b.scores).abs()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, layer {args.layer} "
          f"({fv.n_filters} filters), {args.steps} steps, jitter {args.jitter}, "
          f"reps {args.reps} (+{args.warmup} warm-up)")
    print(f"  mean score start {a.start_scores.mean():.4f} -> final {a.scores.mean():.4f}; "
          f"|batched - one_at_a_time| final scores: median {diff.median():.2e}, max {diff.max():.2e} (float32)")

    contenders = {"one_at_a_time": lambda: fv.one_at_a_time(**kw), "batched": lambda: fv(**kw)}
    if not args.no_single:
        contenders["batched_single"] = lambda: fv(batch_size=0, **kw)
    print(f"  default batches on this device: {fv._batch_size(fv.n_filters, None)} filters each")
    t = interleaved(contenders, args.reps, args.warmup)
    print(describe(t, fv.n_filters, "filters"))
    print(speedup(t, "one_at_a_time", "batched", 2.5))
    if not args.no_single:
        print(speedup(t, "one_at_a_time", "batched_single") + "  (info: one batch of all filters)")


if __name__ == "__main__":
    main()
