"""Every gradient method, all heads: one backward per head vs every head in ONE backward.

    python benchmarks/bench_heads_backward.py [--images 256] [--row-images 32] [--reps 5] [--threads 1]
                                              [--methods saliency,smoothgrad,...] [--ckpt PATH|random]

The default multihead: the newest trained checkpoint under
``outputs/train/lines/multihead/*/checkpoints/best.ckpt`` if there is one, else random init
(benchmarks/_timing.py:make_model); the script says which. Each method is built from its config file
(conf/methods/<name>.yaml) with every head, per-image random targets, and run interleaved twice:

* ``per_head``: ``heads_backward="per_head"``, one ``torch.autograd.grad`` per head on the shared graph;
* ``batched``: ``heads_backward="batched"``, the four scores stacked and ONE
  ``torch.autograd.grad(..., is_grads_batched=True)`` (vmap over identity grad outputs);
* ``closed_form`` (the CAMs only; their default): the gradient at the layer written by hand
  (pipeline/attribution/pooled_backward.py); per_head and batched run with it switched off.

Before timing, the two are checked equal (max |difference| of the attributions / maps printed,
asserted <= 1e-5 of the scale). ``--images`` images for the one-row methods (Saliency, Guided
backprop, the CAMs), ``--row-images`` for SmoothGrad and Integrated Gradients (their n_samples /
n_steps rows per image, conf defaults). The printed speed-up is per_head time / batched time
(> 1: one backward is faster).

``--replicate`` adds, for Saliency only, the other exact way of getting every head's input
gradient from one backward: the batch replicated once per head (H*B rows), one forward and one
backward, head h's score taken on its own copy (information: it costs H forwards).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import apply_allocator, ROOT, add_timing_args, cpu_model, describe, interleaved, make_model, speedup  # noqa: E402

ONE_ROW = ("saliency", "guided_backprop", "gradcam", "gradcam++", "layercam", "hirescam", "guided_gradcam")
MANY_ROWS = ("smoothgrad", "integrated_gradients")
LAYER = "features.conv3"


def default_model(ckpt: str | None = None, seed: int = 0):
    """``(model in eval mode, description)``: ``ckpt`` ("random": random init), else the newest trained
    multihead checkpoint under outputs/train/lines/multihead, else random init."""
    if ckpt is None:
        found = sorted(glob.glob(os.path.join(ROOT, "outputs/train/lines/multihead/*/checkpoints/best.ckpt")))
        ckpt = found[-1] if found else "random"
    if ckpt == "random":
        return make_model(seed), "MultiHead, random init (seed %d), batch-norm statistics from random batches" % seed
    from pipeline.training.checkpoints import load_lit_module

    net = load_lit_module(ckpt, f"ckpt={ckpt}").net.eval()
    return net, f"trained checkpoint {os.path.relpath(ckpt, ROOT)}"


def method_factory(name: str):
    """The partial conf/methods/<name>.yaml describes, as visualize.py builds it."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    node = OmegaConf.load(os.path.join(ROOT, "conf", "methods", f"{name}.yaml"))[name]
    return instantiate(node)


def build(name: str, model, batch: int, mode: str):
    """``mode``: "per_head" / "batched" (autograd; a CAM's closed form off) or "closed_form" (a CAM as
    configured: the hand-written gradient where the layer's pooled chain allows it)."""
    layer = {"target_layer": LAYER} if name not in ("saliency", "guided_backprop") + MANY_ROWS else {}
    if name == "guided_backprop":
        from pipeline.attribution.guided import GuidedBackprop

        return GuidedBackprop(model, batch_size=batch, heads_backward=mode)
    if layer:
        layer["closed_form_backward"] = mode == "closed_form"
        mode = "per_head" if mode == "closed_form" else mode
    return method_factory(name)(model, batch_size=batch, heads_backward=mode, **layer)


def replicated_saliency(model, x, targets):
    """Every head's |dScore/dx| from one forward + one backward of the batch replicated per head."""
    heads = list(model.head_classes)
    n = len(x)
    leaf = x.repeat(len(heads), 1, 1, 1).requires_grad_(True)
    out = model(leaf)
    total = 0
    for k, h in enumerate(heads):
        lg = out[h][k * n:(k + 1) * n]
        t = targets[h]
        total = total + (torch.where(t == 1, lg[:, 0], -lg[:, 0]) if lg.shape[1] == 1
                         else lg.gather(1, t[:, None])[:, 0]).sum()
    g, = torch.autograd.grad(total, leaf)
    return {h: g[k * n:(k + 1) * n].abs() for k, h in enumerate(heads)}


def max_diff(a: dict, b: dict) -> tuple[float, float]:
    d = scale = 0.0
    for h in a:
        for f in ("maps", "attributions"):
            x, y = getattr(a[h], f), getattr(b[h], f)
            if x is not None:
                d = max(d, (x - y).abs().max().item())
                scale = max(scale, x.abs().max().item())
    return d, scale


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--row-images", type=int, default=32)
    ap.add_argument("--methods", default=",".join(("saliency", "smoothgrad", "integrated_gradients") + ONE_ROW[1:]))
    ap.add_argument("--ckpt", default=None, help="a best.ckpt, or 'random' (default: the newest trained multihead)")
    ap.add_argument("--replicate", action="store_true")
    add_timing_args(ap, warmup=1)
    args = ap.parse_args()
    print(apply_allocator(args))
    if args.threads:
        torch.set_num_threads(args.threads)
    model, what = default_model(args.ckpt)
    print(f"CPU: {cpu_model()}; load average at start {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f}; torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"model: {what}; heads {dict(model.head_classes)}; reps {args.reps} (+{args.warmup} warm-up)")
    g = torch.Generator().manual_seed(1)
    summary = []
    for name in args.methods.split(","):
        n = args.row_images if name in MANY_ROWS else args.images
        x = torch.rand(n, 3, 28, 28, generator=g)
        targets = {h: torch.randint(0, max(k, 2), (n,), generator=g) for h, k in model.head_classes.items()}
        per_head, batched = build(name, model, args.images, "per_head"), build(name, model, args.images, "batched")
        d, scale = max_diff(per_head(x, targets), batched(x, targets))
        assert d <= 1e-5 * max(scale, 1.0), (name, d, scale)
        contenders = {"per_head": lambda: per_head(x, targets), "batched": lambda: batched(x, targets)}
        if name in ONE_ROW[2:]:
            closed = build(name, model, args.images, "closed_form")
            dc, _ = max_diff(per_head(x, targets), closed(x, targets))
            assert dc <= 1e-5 * max(scale, 1.0), (name, dc, scale)
            print(f"  {name}: max |per_head - closed_form| = {dc:.2e}")
            contenders["closed_form"] = lambda: closed(x, targets)
        if args.replicate and name == "saliency":
            with torch.inference_mode(False):
                rep = replicated_saliency(model, x, targets)
            ref = per_head(x, targets)
            dr = max((rep[h] - ref[h].attributions).abs().max().item() for h in rep)
            print(f"  saliency replicated per head: max |diff| vs per_head {dr:.2e}")
            contenders["replicated"] = lambda: replicated_saliency(model, x, targets)
        print(f"\n{name}: {n} images, max |per_head - batched| = {d:.2e} (scale {scale:.3g})")
        t = interleaved(contenders, args.reps, args.warmup)
        print(describe(t, n))
        line = speedup(t, "per_head", "batched")
        print(line)
        if "replicated" in t:
            print(speedup(t, "per_head", "replicated") + "  (info: batch replicated per head)")
        summary.append((name, line.split(":", 1)[1].strip()))
        if "closed_form" in t:
            cf = speedup(t, "per_head", "closed_form")
            print(cf + "  (the hand-written gradient, the CAMs' default)")
            summary.append((name + " closed_form", cf.split(":", 1)[1].strip()))
        print(f"  load average now {os.getloadavg()[0]:.2f}")
    print("\nsummary (per_head time / contender time; > 1: the contender is faster)")
    for name, line in summary:
        print(f"  {name:<22} {line}")


if __name__ == "__main__":
    main()
