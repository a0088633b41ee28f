"""How long generating the lines dataset takes: 96,000 images per style, with and without the
training-time randomization (issue 9: "generating 96,000 images stays in seconds").

    python benchmarks/bench_lines_generation.py [--per-class 1000] [--repeats 3]

Prints the median and range of the repeats per variant and the CPU model (machines of this
class differ 2-3x in speed).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import _timing  # noqa: F401  (puts the repository root on sys.path)
from bench_course_lines import cpu_model

from pipeline.data.line_styles import Augment
from pipeline.data.lines import NUM_CLASSES, generate_lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = NUM_CLASSES * args.per_class
    train = np.zeros(n, dtype=bool)
    train[: int(n * 0.54)] = True  # the share of images in the training split (60 % x 90 %)
    variants = {
        "sheet": dict(style="sheet"),
        "course": dict(style="course"),
        "course + augmentation of the training split": dict(style="course", augment=Augment(), augmented=train),
    }
    print(f"CPU: {cpu_model()}, torch threads {torch.get_num_threads()}; {n} images per run")
    times = {name: [] for name in variants}
    for _ in range(args.repeats):  # interleaved: load drift hits every variant alike
        for name, kw in variants.items():
            start = time.perf_counter()
            generate_lines(per_class=args.per_class, seed=0, progress=False, **kw)
            times[name].append(time.perf_counter() - start)
    for name, t in times.items():
        print(f"{name:<45} median {statistics.median(t):6.2f} s  (range {min(t):.2f}-{max(t):.2f} s)")


if __name__ == "__main__":
    main()
