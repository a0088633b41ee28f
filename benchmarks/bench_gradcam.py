"""Grad-CAM throughput: pipeline.attribution.gradcam.GradCAM vs Captum's LayerGradCam.

    python benchmarks/bench_gradcam.py [--batch 256] [--reps 7] [--warmup 2] [--threads 1]

MultiHead (random init, eval mode, batch-norm statistics from a few random batches), batch of
256 RGB 28x28 images, layer ``features.conv3`` (the last conv), per-image targets, upsampling
to 28x28 included on both sides.

(a) one head (angle): ours vs ``LayerGradCam(lambda x: model(x)["angle"], conv3)`` +
    ``LayerAttribution.interpolate`` -- target >= 1.4x.
(b) all four heads: ours in one call (one forward) vs Captum called once per head (binary heads
    wrapped as ``cat([-logit, logit], 1)``) -- target >= 3x.

"ours_*_plain" rows (information only) switch off GradCAM's two fast paths -- the channels_last
input below the layer and, for one head, skipping the heads nobody asked for -- to show what
the no-grad-below-the-layer design alone gives.

Captum is a benchmark/test-only dependency; it is never imported by ``pipeline/``.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import add_timing_args, describe, interleaved, make_model, speedup  # noqa: E402
from pipeline.attribution.gradcam import GradCAM  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256)
    add_timing_args(ap, warmup=2)
    ap.add_argument("--layer", default="features.conv3")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from captum.attr import LayerAttribution, LayerGradCam

    if args.threads:
        torch.set_num_threads(args.threads)
    model = make_model(args.seed)
    layer = dict(model.named_modules())[args.layer]
    g = torch.Generator().manual_seed(args.seed + 1)
    x = torch.rand(args.batch, 3, 28, 28, generator=g)
    targets = {h: torch.randint(0, k, (args.batch,), generator=g) for h, k in model.head_classes.items()}
    size = tuple(x.shape[-2:])

    def captum_fn(head):
        if model.head_classes[head] == 2 and head != "angle":
            return lambda inp: (lambda lg: torch.cat([-lg, lg], 1))(model(inp)[head])
        return lambda inp: model(inp)[head]

    fns = {h: captum_fn(h) for h in model.head_classes}

    def captum_head(h):
        attr = LayerGradCam(fns[h], layer).attribute(x, targets[h], relu_attributions=True)
        return LayerAttribution.interpolate(attr, size, "bilinear")

    def ours_angle():
        return GradCAM(model, args.layer, heads=["angle"], batch_size=args.batch)(x, targets["angle"])

    def ours_angle_plain():
        return GradCAM(model, args.layer, heads=["angle"], batch_size=args.batch, channels_last=False,
                       skip_unused_heads=False)(x, targets["angle"])

    def ours_all_plain():
        return GradCAM(model, args.layer, batch_size=args.batch, channels_last=False)(x, targets)

    def ours_all():
        return GradCAM(model, args.layer, batch_size=args.batch)(x, targets)

    def captum_all():
        return {h: captum_head(h) for h in model.head_classes}

    # sanity: same maps before timing anything
    mine = ours_all()
    ref = captum_all()
    err = max((mine[h].maps - ref[h][:, 0]).abs().max().item() for h in ref)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, layer {args.layer}, "
          f"reps {args.reps} (+{args.warmup} warm-up), max |ours - captum| = {err:.2e}")
    assert err < 1e-4, err

    print("\n(a) one head (angle)")
    t = interleaved({"captum_angle": lambda: captum_head("angle"), "ours_angle": ours_angle,
                     "ours_angle_plain": ours_angle_plain}, args.reps, args.warmup)
    print(describe(t, args.batch))
    print(speedup(t, "captum_angle", "ours_angle", 1.4))
    print(speedup(t, "captum_angle", "ours_angle_plain") + "  (info: without channels_last / head skipping)")

    print("\n(b) all four heads")
    t = interleaved({"captum_4_calls": captum_all, "ours_all_heads": ours_all, "ours_all_plain": ours_all_plain},
                    args.reps, args.warmup)
    print(describe(t, args.batch))
    print(speedup(t, "captum_4_calls", "ours_all_heads", 3.0))
    print(speedup(t, "captum_4_calls", "ours_all_plain") + "  (info: without channels_last)")


if __name__ == "__main__":
    main()
