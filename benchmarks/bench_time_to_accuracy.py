"""Time until the default lines model reaches a target aggregate validation accuracy.

    python benchmarks/bench_time_to_accuracy.py [--repeats 3] [--target 0.995] [--max-epochs 10]
        [--ours "callbacks=stop_at_target trainer.val_check_interval=0.25"]

Contenders, interleaved (the order alternates between repeats), on the same data (the default
``dataset=lines`` splits, generated or loaded once before any clock starts):

(a) ``ours``: ``python train.py`` as configured plus the overrides in ``--ours`` (default: the
    documented fast settings: stop at the target, validate every quarter epoch), run in-process
    through ``pipeline.training.train.run_training``. A timing callback, added through the config
    only (``+callbacks.bench_clock``), notes the time and ``val/acc`` after every validation.
(b) ``plain``: the textbook eager loop over the same architecture (MultiHead, NCHW fp32, batch 128,
    Adam 1e-3, no scheduler), shuffled batches, evaluating the validation split once per epoch.

Each contender's clock starts at its first training step's set-up (for (a) Lightning's
``on_fit_start``, after the data are in memory) and stops at the first validation that reaches
``--target``; its test accuracy (aggregate, best/last weights) is printed beside it. A contender
that never reaches the target (the plain loop: within ``--max-epochs``; (a): within its configured
``trainer.max_epochs``, which its one-cycle schedule spans) is reported as such. Bar: (a) <= 0.5x (b).
The CPU model is printed beside every absolute time (machines of this class differ 2-3x).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import cpu_model  # noqa: E402
from pipeline.data.batches import TensorBatches, to_float_images  # noqa: E402
from pipeline.data.lines_labels import HEADS, join_label, split_label  # noqa: E402
from pipeline.models.multihead import MultiHead  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"


class ValClock(pl.Callback):
    """Notes (seconds since fit start, val/acc) after every validation; added by config only."""

    def __init__(self, path: str):
        self.path, self.t0, self.points = Path(path), None, []

    def on_fit_start(self, trainer, pl_module):
        self.t0 = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        acc = trainer.callback_metrics.get("val/acc")
        if acc is not None and self.t0 is not None:
            self.points.append((time.perf_counter() - self.t0, float(acc)))
            self.path.write_text(json.dumps(self.points))



def compose(root: Path, overrides: list[str], cache: Path):
    from hydra import compose as hcompose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from pipeline.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hcompose("train", overrides=[f"paths.root_dir={root}", f"paths.cache_dir={cache}",
                                           "data.progress=false", "trainer.enable_progress_bar=false",
                                           "trainer.enable_model_summary=false", *overrides],
                       return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(root / "run")
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def first_at(points, target):
    return next((t for t, acc in points if acc >= target), None)


def run_ours(overrides: list[str], target: float, cache: Path) -> dict:
    from pipeline.training.train import run_training

    with tempfile.TemporaryDirectory() as tmp:
        clock = Path(tmp) / "clock.json"
        # the run's own length (trainer.max_epochs as configured): its schedule spans it (one-cycle)
        cfg = compose(Path(tmp), ["+callbacks.bench_clock._target_=bench_time_to_accuracy.ValClock",
                                  f"+callbacks.bench_clock.path={clock}", *overrides], cache)
        wall = time.perf_counter()
        result = run_training(cfg)
        wall = time.perf_counter() - wall
        points = json.loads(clock.read_text()) if clock.exists() else []
    test = result["test"].get(result["main_head"], {}).get("accuracy")
    return {"time": first_at(points, target), "test": test, "wall": wall, "val_points": len(points)}


def _aggregate_accuracy(net, images, labels, batch=1024) -> float:
    net.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out = net(to_float_images(images[i:i + batch]))
            preds = {h: (o[:, 0] > 0).long() if o.shape[1] == 1 else o.argmax(1) for h, o in out.items()}
            right += int((join_label(preds, HEADS) == labels[i:i + batch]).sum())
    net.train()
    return right / len(images)


def run_plain(dm, target: float, max_epochs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    net = MultiHead()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    batches = TensorBatches(dm.train.images, dm.train.labels, 128, shuffle=True, seed=seed)
    t0, reached = time.perf_counter(), None
    for _ in range(max_epochs):
        for x, y in batches:
            out, t = net(x), split_label(y, HEADS)  # TensorBatches yields float images in [0, 1]
            loss = sum(F.binary_cross_entropy_with_logits(out[h][:, 0], t[h].float()) if out[h].shape[1] == 1
                       else F.cross_entropy(out[h], t[h]) for h in HEADS)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if _aggregate_accuracy(net, dm.val.images, dm.val.labels) >= target:
            reached = time.perf_counter() - t0
            break
    return {"time": reached, "test": _aggregate_accuracy(net, dm.test.images, dm.test.labels)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--target", type=float, default=0.995)
    ap.add_argument("--max-epochs", type=int, default=10,
                    help="epochs the plain loop may take to reach the target ((a) trains as configured)")
    ap.add_argument("--ours", default="callbacks=stop_at_target trainer.val_check_interval=0.25",
                    help="overrides of python train.py for contender (a), space-separated")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ours_overrides = [f"seed={args.seed}", *args.ours.split()]
    cache = Path(tempfile.gettempdir()) / "cnnvis_bench_tta_cache"
    dm_cfg = compose(Path(tempfile.mkdtemp()), ours_overrides, cache)
    from hydra.utils import instantiate

    dm = instantiate(dm_cfg.data)
    dm.setup("fit")
    dm.setup("test")  # generated or loaded here, before any clock starts
    print(f"CPU: {cpu_model()} ({torch.get_num_threads()} torch threads); torch {torch.__version__}; "
          f"{len(dm.train.images)} train / {len(dm.val.images)} val / {len(dm.test.images)} test images; "
          f"target val aggregate >= {args.target:.1%}")
    print(f"(a) ours: python train.py {' '.join(ours_overrides)}\n(b) plain: eager loop, NCHW fp32, batch 128, "
          f"Adam 1e-3, validation once per epoch")
    rows = {"ours": [], "plain": []}
    for r in range(args.repeats):
        order = ["ours", "plain"] if r % 2 == 0 else ["plain", "ours"]
        for name in order:
            res = (run_ours(ours_overrides, args.target, cache) if name == "ours"
                   else run_plain(dm, args.target, args.max_epochs, args.seed))
            rows[name].append(res)
            t = f"{res['time']:.1f} s" if res["time"] is not None else "not reached" + (
                f" in {args.max_epochs} epochs" if name == "plain" else "")
            extra = f", whole train.py run {res['wall']:.1f} s" if "wall" in res else ""
            print(f"  repeat {r} {name:5s}: time to target {t}; test aggregate {res['test']:.2%}{extra}", flush=True)
    times = {k: [x["time"] for x in v if x["time"] is not None] for k, v in rows.items()}
    for k, v in times.items():
        if v:
            print(f"{k:5s} median {statistics.median(v):.1f} s (min {min(v):.1f}, max {max(v):.1f}) "
                  f"over {len(v)}/{len(rows[k])} repeats that reached the target; CPU {cpu_model()}")
    paired = [o["time"] / p["time"] for o, p in zip(rows["ours"], rows["plain"]) if o["time"] and p["time"]]
    if paired:
        med = statistics.median(paired)
        print(f"ratio ours / plain: median {med:.2f}x (paired {min(paired):.2f}x .. {max(paired):.2f}x)  "
              f"bar <= 0.5x: {'MET' if med <= 0.5 else 'MISSED'}")
    else:
        print("ratio ours / plain: not measurable (a contender never reached the target)")


if __name__ == "__main__":
    main()
