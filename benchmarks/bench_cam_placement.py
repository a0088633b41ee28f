"""Where Grad-CAM's heat lands: stretched over the image vs placed by the receptive field, and what a
one-output head's class 0 map shows.

    python benchmarks/bench_cam_placement.py                      # both parts, latest trained runs
    python benchmarks/bench_cam_placement.py --part placement [--ckpt PATH] [--images 1000]
    python benchmarks/bench_cam_placement.py --part binary    [--ckpt PATH] [--images 1000]

``placement`` (MNIST, cnn_basic, Grad-CAM at its last conv ``features.conv1``, each image's
predicted class): the ink is ``pixel > 0.5``. For the 6 default images of ``python visualize.py
dataset=mnist model=cnn_basic`` (the class-spread ``spread_indices`` pick) and for ``--images``
test images (job=evaluate's seeded sample, ``evaluation_sample(labels, n, seed=0)``): the share of the map's mass on ink (``energy_in_mask``) and the pointing
game (the map's peak on ink; exact, and with the 1-px tolerance the lines report uses), for
``placement="stretch"`` (Captum's and pytorch-grad-cam's ``F.interpolate`` over the whole image)
and ``placement="receptive_field"`` (the default).

``binary`` (lines, multihead, Grad-CAM at ``features.conv3``): for each one-output head (length,
width, colour) and the ``--images`` test images (the same seeded sample) whose prediction is class 0 (short / thin /
red): the pointing game and energy on the line of the map Grad-CAM draws for class 0 (``-logit``,
the evidence for class 0 over class 1) and of the map for ``+logit`` (class 1's evidence, the
same contrast seen from the other side); and, for comparison, class 1 images' own ``+logit`` maps.

Prints Markdown tables (the numbers docs/gradcam.md quotes).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.attribution.gradcam import GradCAM  # noqa: E402
from pipeline.evaluation.localization import energy_in_mask, pointing_game  # noqa: E402
from pipeline.evaluation.sampling import evaluation_sample  # noqa: E402


def latest_checkpoint(dataset: str, model: str) -> Path:
    runs = sorted(Path("outputs/train", dataset, model).glob("*/checkpoints/best.ckpt"))
    if not runs:
        raise SystemExit(f"no trained {model} on {dataset} under outputs/train/: "
                         f"python train.py dataset={dataset} model={model} trainer.max_epochs=1")
    return runs[-1]


def load(dataset: str, ckpt: Path):
    """The trained net (eval mode, CPU) and the test split, via the project's own loaders."""
    from hydra import compose, initialize_config_dir

    from pipeline.config import register_configs
    from pipeline.visualization.context import load_context

    register_configs()
    cache = os.environ.get("CNNVIS_CACHE_DIR", str(Path.cwd() / "outputs" / "cache"))
    with initialize_config_dir(config_dir=str(Path.cwd() / "conf"), version_base="1.3"):
        cfg = compose(config_name="visualize", overrides=[f"dataset={dataset}", f"ckpt={ckpt}", "device=cpu",
                                                          f"paths.cache_dir={cache}", "job=gradcam"])
    ctx = load_context(cfg)
    return ctx, ctx.datamodule.test


def scores(maps: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    return {"energy": float(energy_in_mask(maps, masks).mean()),
            "pointing": float(pointing_game(maps, masks, dilate=0).float().mean()),
            "pointing_1px": float(pointing_game(maps, masks, dilate=1).float().mean())}


def part_placement(ckpt: Path | None, n: int) -> None:
    from pipeline.visualization.inputs import spread_indices

    ckpt = ckpt or latest_checkpoint("mnist", "cnn_basic")
    ctx, test = load("mnist", ckpt)
    net, layer = ctx.net, "features.conv1"
    default = spread_indices(test.labels, 6, len(ctx.class_names))
    sets = {f"the 6 default images (test {default})": torch.tensor(default),
            f"{n} test images (job=evaluate's seeded sample)": evaluation_sample(test.labels, n, 0)}
    print(f"MNIST cnn_basic, {ckpt}; Grad-CAM at {layer} of each image's predicted class; ink = pixel > 0.5\n")
    print("| images | placement | mass on ink | pointing game (exact) | pointing game (1 px) |")
    print("|---|---|---|---|---|")
    for name, idx in sets.items():
        x = test.images[idx].float() / 255
        ink = x[:, 0] > 0.5
        for placement in ("stretch", "receptive_field"):
            maps = GradCAM(net, layer, placement=placement, batch_size=256)(x).maps
            s = scores(maps, ink)
            print(f"| {name} | {placement} | {s['energy']:.1%} | {s['pointing']:.1%} | {s['pointing_1px']:.1%} |")
            if len(idx) == 6:
                per = energy_in_mask(maps, ink).tolist()
                print(f"|  | (per image) | {', '.join(f'{v:.0%}' for v in per)} | | |")
    print()


def part_binary(ckpt: Path | None, n: int) -> None:
    ckpt = ckpt or latest_checkpoint("lines", "multihead")
    ctx, test = load("lines", ckpt)
    net = ctx.net
    idx = evaluation_sample(test.labels, n, 0)
    x = test.images[idx].float() / 255
    masks = test.masks[idx].bool()
    binary = [h for h, k in ctx.head_classes.items() if k == 2]
    pred = GradCAM(net, "features.conv3", heads=binary)(x)               # each image's prediction
    plus = GradCAM(net, "features.conv3", heads=binary)(x, 1)             # +logit for every image
    print(f"lines multihead, {ckpt}; Grad-CAM at features.conv3, {len(idx)} test images (job=evaluate's seeded sample); "
          "pointing game with the report's 1-px tolerance\n")
    print("| head | class 0 images | class 0 map (-logit): pointing / energy | +logit map on them: pointing / energy "
          "| class 1 images: +logit map pointing / energy |")
    print("|---|---|---|---|---|")
    for h in binary:
        zero = pred[h].targets == 0
        one = ~zero
        if not zero.any() or not one.any():
            print(f"| {h} | {int(zero.sum())} | (the head predicts one class only on this sample) | | |")
            continue
        a = scores(pred[h].maps[zero], masks[zero])
        b = scores(plus[h].maps[zero], masks[zero])
        c = scores(pred[h].maps[one], masks[one])
        print(f"| {h} | {int(zero.sum())} | {a['pointing_1px']:.1%} / {a['energy']:.1%} | "
              f"{b['pointing_1px']:.1%} / {b['energy']:.1%} | {c['pointing_1px']:.1%} / {c['energy']:.1%} |")
    print(f"\nthe line's share of the image: {float(masks.float().mean()):.1%}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["placement", "binary", "all"], default="all")
    ap.add_argument("--ckpt", type=Path, default=None, help="a checkpoint (one part only)")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.part in ("placement", "all"):
        part_placement(args.ckpt if args.part == "placement" else None, args.images)
    if args.part in ("binary", "all"):
        part_binary(args.ckpt if args.part == "binary" else None, args.images)


if __name__ == "__main__":
    main()
