"""Training throughput: the project's Lightning training vs a plain PyTorch loop.

Baseline: a hand-written loop (forward, cross-entropy, backward, Adam step) over the SAME model
(cnn_basic), the SAME batches (TensorBatches over MNIST, batch 64) and the same number of steps.
Contender: `pipeline.training` as a user runs it (LitClassifier with its torchmetrics, the
configured callbacks, CSV logger and progress bar; validation off so that both do the same work).

Throughput is timed in steady state, from the start of step WARMUP to the end of the last step,
the same steps in both (a callback timestamps Lightning's steps); the whole `trainer.fit` call,
set-up included, is reported beside it. The two contenders are interleaved and repeated; the
script prints the per-repeat ratios (Lightning time / plain time), their median and range.
Target: steady-state median <= 1.10.

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


WARMUP = 20  # steps excluded from the steady-state timing (both contenders)


def run_lightning(cfg) -> tuple[float, float]:
    """(steady-state seconds from step WARMUP to the end, whole fit call seconds)."""
    import pytorch_lightning as pl

    from pipeline.training.train import build

    class StepClock(pl.Callback):
        t0 = t1 = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == WARMUP:
                self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.t1 = time.perf_counter()

    datamodule, module, trainer = build(cfg)
    clock = StepClock()
    trainer.callbacks.append(clock)
    datamodule.setup("fit")
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    return clock.t1 - clock.t0, time.perf_counter() - start


def run_plain(cfg, steps: int) -> tuple[float, float]:
    from pipeline.training.train import build

    datamodule, module, _ = build(cfg)
    datamodule.setup("fit")
    start = time.perf_counter()
    net = module.net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.model.optimizer.lr)
    t0 = start
    for i, (x, y) in enumerate(datamodule.train_dataloader()):
        if i == steps:
            break
        if i == WARMUP:
            t0 = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    end = time.perf_counter()
    return end - t0, end - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    import logging
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning_fabric").setLevel(logging.WARNING)
    ratios, whole_ratios, plain_t, light_t = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats + 1):  # repeat 0 warms up both
            cfg = make_cfg(Path(tmp) / f"r{r}", args.steps, args.batch_size)
            order = [("plain", lambda: run_plain(cfg, args.steps)), ("lightning", lambda: run_lightning(cfg))]
            if r % 2:
                order.reverse()
            times = {name: fn() for name, fn in order}
            if r == 0:
                continue
            (p_steady, p_whole), (l_steady, l_whole) = times["plain"], times["lightning"]
            plain_t.append(p_steady); light_t.append(l_steady)
            ratios.append(l_steady / p_steady)
            whole_ratios.append(l_whole / p_whole)
            print(f"repeat {r}: steady state plain {p_steady:.2f} s, lightning {l_steady:.2f} s, ratio {ratios[-1]:.3f}; "
                  f"whole call plain {p_whole:.2f} s, lightning {l_whole:.2f} s, ratio {whole_ratios[-1]:.3f}", flush=True)
    n_img = (args.steps - WARMUP) * args.batch_size
    print(f"\ncnn_basic on MNIST, {args.steps} steps of batch {args.batch_size}, {args.repeats} interleaved repeats")
    print(f"steady state, steps {WARMUP}..{args.steps}:")
    print(f"plain PyTorch loop: median {statistics.median(plain_t):.2f} s ({n_img / statistics.median(plain_t):.0f} img/s)")
    print(f"pipeline (Lightning): median {statistics.median(light_t):.2f} s ({n_img / statistics.median(light_t):.0f} img/s)")
    print(f"steady-state ratio lightning/plain: median {statistics.median(ratios):.3f}  "
          f"range {min(ratios):.3f}-{max(ratios):.3f}  (target <= 1.10)")
    print(f"whole-call ratio (trainer set-up included): median {statistics.median(whole_ratios):.3f}  "
          f"range {min(whole_ratios):.3f}-{max(whole_ratios):.3f}")


if __name__ == "__main__":
    main()
