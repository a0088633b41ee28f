"""Training throughput: the project's Lightning training vs a plain PyTorch loop.

Baseline: a hand-written loop (forward, cross-entropy, backward, Adam step) over the SAME model
(cnn_basic), the SAME batches (TensorBatches over MNIST, batch 64) and the same number of steps.
Contender: `pipeline.training` as a user runs it (LitClassifier with its torchmetrics, the
configured callbacks, CSV logger and progress bar; validation off so that both do the same work),
timed around the whole `trainer.fit` call, set-up included.

The two are interleaved and repeated; the script prints the per-repeat ratio
(Lightning time / plain time), its median and range. Target: median <= 1.10.

    python benchmarks/bench_train_throughput.py [--steps 300] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def make_cfg(tmp: Path, steps: int, batch_size: int):
    import sys

    sys.path.insert(0, str(ROOT))
    from tests.conftest import compose_cfg  # the same config composition the tests use

    return compose_cfg(tmp, [
        "dataset=mnist", f"data.data_dir={ROOT.parent / 'shared' / 'datasets' / 'mnist'}",
        f"data.batch_size={batch_size}", "model=cnn_basic", "trainer=cpu", "trainer.max_epochs=1",
        f"trainer.limit_train_batches={steps}", "trainer.limit_val_batches=0", "test_after_fit=false",
        "trainer.enable_model_summary=false"])


def run_lightning(cfg) -> float:
    from pipeline.training.train import build

    datamodule, module, trainer = build(cfg)
    datamodule.setup("fit")
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    return time.perf_counter() - start


def run_plain(cfg, steps: int) -> float:
    from pipeline.training.train import build

    datamodule, module, _ = build(cfg)
    datamodule.setup("fit")
    net = module.net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.model.optimizer.lr)
    start = time.perf_counter()
    for i, (x, y) in enumerate(datamodule.train_dataloader()):
        if i == steps:
            break
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    import logging
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning_fabric").setLevel(logging.WARNING)
    ratios, plain_t, light_t = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats + 1):  # repeat 0 warms up both
            cfg = make_cfg(Path(tmp) / f"r{r}", args.steps, args.batch_size)
            order = [("plain", lambda: run_plain(cfg, args.steps)), ("lightning", lambda: run_lightning(cfg))]
            if r % 2:
                order.reverse()
            times = {name: fn() for name, fn in order}
            if r == 0:
                continue
            plain_t.append(times["plain"]); light_t.append(times["lightning"])
            ratios.append(times["lightning"] / times["plain"])
            print(f"repeat {r}: plain {times['plain']:.2f} s, lightning {times['lightning']:.2f} s, "
                  f"ratio {ratios[-1]:.3f}", flush=True)
    n_img = args.steps * args.batch_size
    print(f"\ncnn_basic on MNIST, {args.steps} steps of batch {args.batch_size}, {args.repeats} interleaved repeats")
    print(f"plain PyTorch loop: median {statistics.median(plain_t):.2f} s ({n_img / statistics.median(plain_t):.0f} img/s)")
    print(f"pipeline (Lightning): median {statistics.median(light_t):.2f} s ({n_img / statistics.median(light_t):.0f} img/s)")
    print(f"ratio lightning/plain: median {statistics.median(ratios):.3f}  range {min(ratios):.3f}-{max(ratios):.3f}  "
          f"(target <= 1.10)")


if __name__ == "__main__":
    main()
