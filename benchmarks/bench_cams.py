"""Every attribution method's throughput, each against named baselines measured in the same run.

    python benchmarks/bench_cams.py [--batch 128] [--reps 5] [--warmup 1] [--threads 1] [--heads all|angle]
    python benchmarks/bench_cams.py --baseline-tree DIR   # also time an older copy of pipeline/ (DIR/pipeline)

MultiHead (random init, eval mode, batch-norm statistics from random batches; benchmarks/_timing.py),
a batch of RGB 28x28 images, layer ``features.conv3`` for the layer methods, per-image targets,
every head (``--heads angle``: one head), each method built from its config file
(conf/methods/<name>.yaml) as visualize.py builds it. Contenders per method, run interleaved:

* ``ours``: the method as the jobs run it (channels_last below the layer and skipping unrequested
  heads, the shared fast paths of pipeline/attribution/base.py);
* ``plain``: the same with both fast paths off (what the fast paths give);
* ``captum``: Captum's implementation where Captum has the method (LayerGradCam, GuidedGradCam,
  Saliency, NoiseTunnel(Saliency), IntegratedGradients), called once per head;
* ``baseline``: with ``--baseline-tree DIR``, the same method from the pipeline/ package under
  DIR (e.g. ``git archive <rev> pipeline | tar -x -C DIR``), imported as a renamed copy so both
  run in one process. Its API is found by layout: ``pipeline/visualization/methods.py``
  (``make_method``) or ``pipeline/attribution`` with conf/methods.

The ratio printed is ``contender time / ours time`` (> 1: ours is faster). Captum is a
benchmark/test-only dependency; it is never imported by ``pipeline/``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import apply_allocator, ROOT, add_timing_args, describe, interleaved, make_model, speedup  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

import hydra  # noqa: E402

PARAMS = {"smoothgrad": {"n_samples": 16}, "integrated_gradients": {"n_steps": 32}}  # conf/methods values


def method_factories(conf_dir: Path) -> dict:
    """``{name: partial}`` from every file in conf/methods, overrides of PARAMS applied."""
    out = {}
    for path in sorted(conf_dir.glob("*.yaml")):
        for name, node in OmegaConf.load(path).items():
            out[name] = hydra.utils.instantiate(node)
    return out


def renamed_copy(tree: Path, alias: str) -> Path:
    """A temporary copy of ``tree/pipeline`` as package ``alias`` (its imports rewritten)."""
    dst = Path(tempfile.mkdtemp(prefix="bench_baseline_"))
    shutil.copytree(tree / "pipeline", dst / alias, ignore=shutil.ignore_patterns("__pycache__"))
    for py in (dst / alias).rglob("*.py"):
        text = py.read_text()
        text = re.sub(r"\bpipeline\.", f"{alias}.", text).replace("from pipeline import", f"from {alias} import")
        py.write_text(text)
    if (tree / "conf" / "methods").is_dir():
        shutil.copytree(tree / "conf" / "methods", dst / "methods_conf")
        for yml in (dst / "methods_conf").glob("*.yaml"):
            yml.write_text(yml.read_text().replace("pipeline.", f"{alias}."))
    sys.path.insert(0, str(dst))
    return dst


def baseline_builder(tree: Path):
    """``build(name, model, layer, heads, batch_size)`` for the package under ``tree``."""
    dst = renamed_copy(tree, "pipeline_baseline")
    if (dst / "pipeline_baseline" / "visualization" / "methods.py").is_file():
        make = importlib.import_module("pipeline_baseline.visualization.methods").make_method
        return lambda name, model, layer, heads, bs: make(name, model, layer, heads=heads, batch_size=bs,
                                                          **PARAMS.get(name, {}))
    factories = method_factories(dst / "methods_conf")

    def build(name, model, layer, heads, bs):
        f = factories[name]
        return f(model, layer if f.func.needs_layer else None, heads=heads, batch_size=bs, **PARAMS.get(name, {}))
    return build


def captum_contender(name: str, model, layer, x, targets, heads):
    """A Captum call for every head, or None where Captum has no such method."""
    from captum.attr import GuidedGradCam, IntegratedGradients, LayerGradCam, NoiseTunnel, Saliency

    class Head(torch.nn.Module):  # Captum's forward for one head: a 1-unit head as [-logit, +logit]
        def __init__(self, head):
            super().__init__()
            self.m, self.head = model, head

        def forward(self, inp):
            out = self.m(inp)[self.head]
            return torch.cat([-out, out], 1) if out.shape[1] == 1 else out

    fns = {h: Head(h) for h in heads}
    make = {"gradcam": lambda f: (LayerGradCam(f, layer), dict(relu_attributions=True)),
            "guided_gradcam": lambda f: (GuidedGradCam(f, layer), dict(interpolate_mode="bilinear")),
            "saliency": lambda f: (Saliency(f), dict(abs=True)),
            "smoothgrad": lambda f: (NoiseTunnel(Saliency(f)), dict(nt_type="smoothgrad", nt_samples=16,
                                                                       stdevs=0.15, nt_samples_batch_size=256)),
            "integrated_gradients": lambda f: (IntegratedGradients(f), dict(n_steps=32, internal_batch_size=256))}
    if name not in make:
        return None

    def run():
        for h in heads:
            method, kw = make[name](fns[h])
            method.attribute(x, target=targets[h], **kw)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    add_timing_args(ap, warmup=1)
    ap.add_argument("--heads", choices=["all", "angle"], default="all")
    ap.add_argument("--methods", nargs="*", default=None, help="default: every file in conf/methods")
    ap.add_argument("--baseline-tree", type=Path, default=None)
    ap.add_argument("--no-captum", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(apply_allocator(args))

    warnings.filterwarnings("ignore", category=UserWarning, module="captum")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = make_model(args.seed)
    layer_name = "features.conv3"
    layer = dict(model.named_modules())[layer_name]
    g = torch.Generator().manual_seed(args.seed + 1)
    x = torch.rand(args.batch, 3, 28, 28, generator=g)
    targets = {h: torch.randint(0, k, (args.batch,), generator=g) for h, k in model.head_classes.items()}
    heads = list(model.head_classes) if args.heads == "all" else ["angle"]
    ours_t = {h: targets[h] for h in heads}
    factories = method_factories(Path(ROOT) / "conf" / "methods")
    names = args.methods or list(factories)
    baseline = baseline_builder(args.baseline_tree) if args.baseline_tree else None

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, heads {heads}, "
          f"layer {layer_name}, reps {args.reps} (+{args.warmup} warm-up)"
          + (f", baseline tree {args.baseline_tree}" if baseline else ""))
    for name in names:
        f = factories[name]
        lay = layer_name if f.func.needs_layer else None
        hs = heads if args.heads == "angle" else None
        ours = f(model, lay, heads=hs, batch_size=256, **PARAMS.get(name, {}))
        plain = f(model, lay, heads=hs, batch_size=256, channels_last=False, skip_unused_heads=False,
                  **PARAMS.get(name, {}))
        contenders = {"ours": lambda m=ours: m(x, ours_t), "plain": lambda m=plain: m(x, ours_t)}
        if baseline is not None:
            old = baseline(name, model, lay, hs, 256)
            contenders["baseline"] = lambda m=old: m(x, ours_t)
        cap = None if args.no_captum else captum_contender(name, model, layer, x, targets, heads)
        if cap is not None:
            contenders["captum"] = cap
        t = interleaved(contenders, args.reps, args.warmup)
        print(f"\n{name}")
        print(describe(t, args.batch))
        for other in contenders:
            if other != "ours":
                print(speedup(t, other, "ours"))


if __name__ == "__main__":
    main()
