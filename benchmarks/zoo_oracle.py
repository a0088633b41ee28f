"""Can the default network read every renderer of the zoo at all? Train it ON the zoo and see.

    python benchmarks/zoo_oracle.py [--per-class 200] [--epochs 3] [--seed 0]

The default ``python train.py`` model learns from the pipeline's own mixture (the course's
generator plus randomized lines and Pillow's pens) and is scored on the renderer zoo of
``standin_lines.py``, which it never saw (benchmarks/bench_course_lines.py). Where it misses a
renderer, two explanations compete: the renderer draws the same pixels as another one under the
other label (then no model can be right on both), or the mixture does not teach what the renderer
draws. This script tells them apart: it trains the same network (``MultiHead`` at its defaults,
Adam with the one-cycle schedule of conf/model/multihead.yaml, batch 128, the heads' losses summed)
on ``--per-class`` images per class of EVERY zoo renderer and of the course style (training sets
seeded ``--seed + 7``), then scores each renderer on fresh images (seed 101, 30 per class, the
sets bench_course_lines.py draws at ``--per-class 30``). Accuracy near 100 % on a renderer means
its pixels do tell its classes apart, and the default model's gap there is the mixture's.
A plain loop, not the pipeline: this is a measurement, not a training recipe.
Needs opencv-python-headless (requirements-dev.txt).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _timing import cpu_model  # (also puts the repository root on sys.path)
from bench_course_lines import style_set
from standin_lines import STANDINS

from pipeline.data.lines_labels import decode_label
from pipeline.models.multihead import MultiHead

HEADS = ("length", "width", "angle", "colour")


def renderer_sets(per_class: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    sets = {"course": style_set("course", per_class, seed)}
    for name, (fn, kw, _) in STANDINS.items():
        if name != "course_cv2":  # the course's generator again (OpenCV): "course" draws the same
            sets[name] = fn(per_class=per_class, seed=seed, **kw)
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-class", type=int, default=200, help="training images per class and renderer")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    train = renderer_sets(args.per_class, args.seed + 7)
    test = renderer_sets(30, 101)
    x = torch.from_numpy(np.concatenate([s[0] for s in train.values()])).float().div_(255)
    parts = decode_label(np.concatenate([s[1] for s in train.values()]))
    y = {h: torch.as_tensor(np.asarray(parts[h])) for h in HEADS}
    print(f"CPU: {cpu_model()}, torch threads {torch.get_num_threads()}; {len(x)} training images "
          f"({len(train)} renderers x 96 classes x {args.per_class}), drawn in {time.perf_counter() - t0:.0f} s")

    net = MultiHead()
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    batches = len(x) // 128
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-3, total_steps=args.epochs * batches, pct_start=0.2)
    bce, ce = torch.nn.BCEWithLogitsLoss(), torch.nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(x))
        for b in range(batches):
            j = perm[b * 128:(b + 1) * 128]
            out = net(x[j].contiguous(memory_format=torch.channels_last))
            loss = ce(out["angle"], y["angle"][j]) + sum(bce(out[h][:, 0], y[h][j].float())
                                                         for h in ("length", "width", "colour"))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}: last batch loss {loss.item():.4f} ({time.perf_counter() - t0:.0f} s)")

    net.eval()
    print(f"\n{'renderer':<18} " + " ".join(f"{h:>8}" for h in HEADS) + f" {'aggregate':>10}")
    for name, (images, labels) in test.items():
        with torch.no_grad():
            out = net(torch.from_numpy(images).float() / 255)
        truth = decode_label(labels)
        wrong = np.zeros(len(labels), dtype=bool)
        accs = []
        for h in HEADS:
            pred = (out[h][:, 0] > 0).long().numpy() if out[h].shape[1] == 1 else out[h].argmax(1).numpy()
            miss = pred != np.asarray(truth[h])
            wrong |= miss
            accs.append(1 - miss.mean())
        print(f"{name:<18} " + " ".join(f"{a:>8.4f}" for a in accs) + f" {1 - wrong.mean():>10.4f}")
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
