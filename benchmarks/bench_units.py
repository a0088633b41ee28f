"""job=units' streaming pass: the top-k test images of every unit, timed against a plain forward of the same images.

    python benchmarks/bench_units.py [--ckpt path/to/best.ckpt] [--images 38400] [--k 8] [--batch-size 1024]

The default model (MultiHead: conv1..conv3 and four heads; ``--ckpt``: a trained checkpoint, else random weights
with batch-norm statistics from random batches), ``--images`` random uint8 28x28 RGB images (the cost of a forward
does not depend on what the pixels show; the lines test split has 38,400). Prints the CPU model, the load average
before and after, wall and CPU seconds of the ranking pass and of a plain forward pass (no hooks), and the growth of
the peak resident memory (the pass keeps one batch and k numbers per unit, never [N, C, H, W]).
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import make_model  # noqa: E402
from pipeline.visualization.unit_examples import top_unit_examples  # noqa: E402

LAYERS = ["features.conv1", "features.conv2", "features.conv3", "heads.length", "heads.width", "heads.angle",
          "heads.colour"]


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--images", type=int, default=38400)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.ckpt:
        from pipeline.training.checkpoints import load_lit_module
        net = load_lit_module(args.ckpt, f"ckpt={args.ckpt}", map_location="cpu").net.eval()
    else:
        net = make_model(0)
    images = torch.randint(0, 256, (args.images, 3, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(args.images, dtype=torch.long)
    print(f"CPU: {cpu_model()}; {os.cpu_count()} cores; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"load average before: {open('/proc/loadavg').read().split()[:3]}")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def plain():
        with torch.inference_mode():
            for s in range(0, args.images, args.batch_size):
                net((images[s:s + args.batch_size].float() / 255).contiguous(memory_format=torch.channels_last))

    _, pw, pc = timed(plain)
    ex, w, c = timed(lambda: top_unit_examples(net, images, labels, LAYERS, args.k, batch_size=args.batch_size))
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    units = sum(e.units for e in ex.values())
    print(f"ranking pass: {args.images} images, {units} units, k={args.k}: {w:.1f} s wall, {c:.1f} s CPU")
    print(f"plain forward (no hooks): {pw:.1f} s wall, {pc:.1f} s CPU")
    print(f"peak RSS growth over both passes: {(rss1 - rss0) / 1024:.0f} MB (images: "
          f"{images.numel() / 2**20:.0f} MB uint8; one [N, C, H, W] conv2 output would be "
          f"{args.images * 24 * 28 * 28 * 4 / 2**30:.1f} GB)")
    print(f"load average after: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
