"""The least time job=evaluate can take on this machine, with its sizes and its methods as configured.

    python benchmarks/bench_evaluate_floor.py [--reps 7] [--threads N (default: torch's, as the job)] [--ckpt PATH|random] [key=value ...]

job=evaluate is a count of model passes: every map of SmoothGrad is ``n_samples`` rows of one
forward and one backward per head to the input, every Integrated Gradients map ``n_steps`` rows,
every Score-CAM map one forward per channel of its layer, every point of a deletion/insertion curve
one forward, and the randomization cascade repeats the maps of ``sanity_images`` images at every
step (``1 + sanity_repeats x depth`` computations, depth = the parameter layers under one head).
This script counts those passes from the configs (conf/job/evaluate.yaml, conf/methods/*.yaml,
overridable with trailing Hydra-style ``key=value`` such as ``evaluate.num_images=200``), measures
what ONE row of each kind costs on the default model at batch 256 (medians of ``--reps``
interleaved repeats), and prints count x cost per part: the time the passes alone take if
nothing else ran. The one-row CAM methods (Grad-CAM and its relatives, Saliency, Guided
Grad-CAM) are counted as what they at least do, one forward per image.

The job's real time (``python visualize.py job=evaluate``, or benchmarks/bench_evaluate.py for the
scoring alone) is that floor plus start-up, the bootstrap intervals, HDF5, figures and the report.
The model: ``--ckpt``, else the newest trained lines/multihead checkpoint, else random init.
"""
from __future__ import annotations

import argparse
import os

import torch

from _timing import ROOT, apply_allocator, add_timing_args, cpu_model, describe, interleaved
from bench_heads_backward import default_model

BATCH = 256


def evaluate_config(overrides: list[str]):
    """``(evaluate node, methods node)`` of conf/job/evaluate.yaml and conf/methods/, with overrides."""
    from omegaconf import OmegaConf

    job = OmegaConf.load(os.path.join(ROOT, "conf", "job", "evaluate.yaml"))
    methods = OmegaConf.create({})
    for name in sorted(os.listdir(os.path.join(ROOT, "conf", "methods"))):
        if name.endswith(".yaml"):
            methods = OmegaConf.merge(methods, OmegaConf.load(os.path.join(ROOT, "conf", "methods", name)))
    cfg = OmegaConf.merge(OmegaConf.create({"evaluate": job.evaluate, "methods": methods}),
                          OmegaConf.from_dotlist(overrides))
    return cfg.evaluate, cfg.methods


def pass_counts(ev, methods, net) -> tuple[dict[str, tuple[str, int]], int, int]:
    """``(counts, depth, cascade computations)``; counts: part -> (row kind, rows): ``grad`` (forward + a backward per head to the input), ``fwd``
    (a no-grad forward), ``folded`` (a no-grad forward of the batch-norm-folded copy)."""
    from pipeline.evaluation.sanity import parameter_layers

    heads = list(net.head_classes)
    depth = len(parameter_layers(net, prefixes=("features", f"heads.{heads[0]}")))
    n, s = int(ev.num_images), int(ev.sanity_images)
    calls = 1 + int(ev.sanity_repeats) * depth                 # the cascade's map computations
    images = n + calls * s                                     # images whose maps a method computes
    names = list(methods)
    counts = {}
    if "smoothgrad" in names:
        counts["SmoothGrad (maps + cascade)"] = ("grad", int(methods.smoothgrad.n_samples) * images)
    if "integrated_gradients" in names:
        counts["Integrated Gradients (maps + cascade)"] = ("grad", int(methods.integrated_gradients.n_steps) * images)
    if "scorecam" in names:
        channels = net.features.conv3.out_channels
        counts["Score-CAM masked forwards (maps + cascade)"] = ("fwd", channels * images)
    one_row = [m for m in names if m not in ("smoothgrad", "integrated_gradients", "scorecam")]
    counts[f"{len(one_row)} one-row methods, a forward each (maps + cascade)"] = ("fwd", len(one_row) * images)
    f, steps = min(int(ev.faithfulness_images), n), int(ev.deletion_steps)
    curves = (len(names) + 1) * len(heads) * 2                 # every method's and the random order's, both modes
    counts["deletion/insertion curves"] = ("folded", curves * f * (steps - 1) + 2 * len(heads) * f)
    return counts, depth, calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", help="a lines/multihead checkpoint, or 'random' (default: the newest trained one)")
    add_timing_args(ap, warmup=2)
    ap.set_defaults(threads=0)  # the job's own threads (torch's default: every core), not 1
    ap.add_argument("overrides", nargs="*", help="evaluate.* / methods.* overrides, e.g. evaluate.num_images=200")
    args = ap.parse_args()
    allocator = apply_allocator(args)
    if args.threads:
        torch.set_num_threads(args.threads)

    from pipeline.attribution.fast_backward import affine_batchnorm_grads
    from pipeline.evaluation.inference_copy import folded_copy

    net, what = default_model(args.ckpt)
    folded = folded_copy(net)
    x = torch.rand(BATCH, 3, 28, 28)
    xc = x.contiguous(memory_format=torch.channels_last)

    def grad_rows():
        leaf = x.detach().requires_grad_(True)
        with affine_batchnorm_grads(net):
            out = net(leaf)
        heads = list(out)
        for j, h in enumerate(heads):
            torch.autograd.grad(out[h][:, 0].sum(), leaf, retain_graph=j < len(heads) - 1)

    def fwd_rows(model):
        with torch.inference_mode():
            model(xc)

    contenders = {"grad": grad_rows, "fwd": lambda: fwd_rows(net), "folded": lambda: fwd_rows(folded)}
    times = interleaved(contenders, reps=args.reps, warmup=args.warmup)
    per_row = {k: sorted(v)[len(v) // 2] / BATCH for k, v in times.items()}

    ev, methods = evaluate_config(args.overrides)
    counts, depth, calls = pass_counts(ev, methods, net)
    print(f"model: {what}\n{allocator}")
    print(f"CPU: {cpu_model()}, torch threads {torch.get_num_threads()}, batch {BATCH}, medians of {args.reps}")
    print(describe(times, BATCH, "rows"))
    print(f"sizes: {ev.num_images} images, cascade {ev.sanity_images} images x (1 + {ev.sanity_repeats} x {depth} "
          f"layers) = {calls} map computations, curves on {ev.faithfulness_images} images x {ev.deletion_steps} steps")
    print("one row: " + ", ".join(f"{k} {1e3 * v:.3f} ms" for k, v in per_row.items())
          + "  (grad: a forward and a backward per head to the input; fwd: a no-grad channels_last forward;"
          " folded: the same on the batch-norm-folded copy)")
    total = 0.0
    print(f"\n{'part':<52} {'rows':>9} {'kind':>7} {'floor s':>8}")
    for part, (kind, rows) in counts.items():
        sec = rows * per_row[kind]
        total += sec
        print(f"{part:<52} {rows:>9,} {kind:>7} {sec:>8.1f}")
    print(f"{'total: the passes alone':<52} {'':>9} {'':>7} {total:>8.1f}")


if __name__ == "__main__":
    main()
