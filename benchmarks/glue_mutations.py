"""Seed one-line glue slips, one at a time, in a scratch copy of the repository and run tests against each.

    git worktree add /tmp/mut HEAD
    python benchmarks/glue_mutations.py /tmp/mut [test files ...]    # default: tests/test_glue_wiring.py

Each slip is one of the kinds issue 26 lists (a figure handed the wrong scale or values, a compatibility
check reduced to one half of its condition, an index bound off by one, a folder order other than the
documented one). The file is restored after each run. Never point it at the working tree you edit:
it rewrites files in place. Results: docs/glue-tests.md.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

if len(sys.argv) < 2 or Path(sys.argv[1]).resolve() == Path(__file__).resolve().parents[1]:
    sys.exit("usage: python benchmarks/glue_mutations.py SCRATCH_WORKTREE [tests ...] (not this working tree)")
ROOT = Path(sys.argv[1]).resolve()
M = [
 ("activations: per-image limits instead of the layer's shared ones", "pipeline/jobs/activations.py",
  '"limits": limits[layer]', '"limits": shared_limits(a)'),
 ("activations: another image's activations handed to figure i", "pipeline/jobs/activations.py",
  "a = result.acts[layer][i]", "a = result.acts[layer][0]"),
 ("attribution shared scale: normalized maps over their maximum, not the raw ones", "pipeline/jobs/attribution_maps.py",
  "return result.maps / top if top > 0 else torch.zeros_like(result.maps)",
  "return result.maps_normalized / top if top > 0 else torch.zeros_like(result.maps)"),
 ("attribution job: per-image scale whatever gradcam.scale says", "pipeline/jobs/attribution_maps.py",
  "display_maps(m.result, self.scale)", 'display_maps(m.result, "per_image")'),
 ("per-target figures: each target on its own scale", "pipeline/jobs/attribution_maps.py",
  "shown = display_maps_together([m.result for m in sets], self.scale)",
  "shown = torch.stack([display_maps(m.result, self.scale) for m in sets])"),
 ("attribution per-image figure: the overlay map as the layer map", "pipeline/jobs/attribution_maps.py",
  "(sel.images[i], shown[i], m.result.layer_maps[i],", "(sel.images[i], shown[i], m.result.maps[i],"),
 ("eval/resume fit (single head): class count instead of names", "pipeline/training/evaluate.py",
  "fits = ck_names == dm_names and next(iter(ck_heads.values())) == len(dm_names)",
  "fits = len(ck_names) == len(dm_names) and next(iter(ck_heads.values())) == len(dm_names)"),
 ("eval/resume fit (multihead): heads only", "pipeline/training/evaluate.py",
  "fits = ck_names == dm_names and dm_heads == ck_heads", "fits = dm_heads == ck_heads"),
 ("visualize fit: class count instead of names", "pipeline/visualization/context.py",
  'list(hp.get("class_names") or []) != list(datamodule.class_names)',
  'len(hp.get("class_names") or []) != len(datamodule.class_names)'),
 ("visualize fit: names as sets (order ignored)", "pipeline/visualization/context.py",
  'list(hp.get("class_names") or []) != list(datamodule.class_names)',
  'set(hp.get("class_names") or []) != set(datamodule.class_names)'),
 ("model fits data: head count instead of heads", "pipeline/config.py",
  "dict(data_heads) != dict(head_classes)", "len(data_heads) != len(head_classes)"),
 ("image index == test-set size accepted", "pipeline/visualization/inputs.py",
  "if not 0 <= i < n_test:", "if not 0 <= i <= n_test:"),
 ("target class == class count accepted", "pipeline/jobs/target_choice.py",
  "not 0 <= spec.index < k", "not 0 <= spec.index <= k"),
 ("feature-vis unit == unit count accepted", "pipeline/visualization/feature_vis.py",
  "bad = t[(t < 0) | (t >= n)]", "bad = t[(t < 0) | (t > n)]"),
 ("feature-vis input channel == channel count accepted", "pipeline/visualization/feature_vis.py",
  "channels[-1] >= self.input_shape[0]", "channels[-1] > self.input_shape[0]"),
 ("filters class == class count accepted", "pipeline/jobs/filters.py",
  "if not 0 <= c < heads[n]", "if not 0 <= c <= heads[n]"),
 ("default images: the last class never reached", "pipeline/visualization/inputs.py",
  "step = (len(present) - 1) / (count - 1) if count > 1 else 0.0", "step = len(present) / count if count > 1 else 0.0"),
 ("image_folder: case-insensitive class order", "pipeline/data/image_folder.py",
  "key=lambda p: p.name)", "key=lambda p: p.name.lower())"),
 ("lines_folder: ids ordered as text (by path)", "pipeline/data/lines_folder.py",
  "key=lambda f: (f[1], f[2], f[0])", "key=lambda f: (f[1], f[0])"),
 ("filters: the kernels of the last convolution", "pipeline/jobs/filters.py",
  "first = dict(self.ctx.net.named_modules())[convs[0]]", "first = dict(self.ctx.net.named_modules())[convs[-1]]"),
]
tests = sys.argv[2:] or ["tests/test_glue_wiring.py"]
only = os.environ.get("GLUE_MUTATIONS")  # e.g. GLUE_MUTATIONS=0,6,11: those slips only
rows = []
for k, (name, rel, old, new) in enumerate(M):
    if only and str(k) not in only.split(","):
        continue
    p = ROOT / rel
    src = p.read_text()
    n = src.count(old)
    if n != 1:
        rows.append((name, f"SKIP (pattern found {n}x)", 0)); print(rows[-1], flush=True); continue
    p.write_text(src.replace(old, new))
    t = time.time()
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider", *tests],
                           cwd=ROOT, capture_output=True, text=True, timeout=900)
        failed = [l.split(" - ")[0] for l in r.stdout.splitlines() if l.startswith(("FAILED ", "ERROR tests"))] or ["(no FAILED line)"]
        rows.append((name, "caught by " + failed[0].split("::")[-1] if r.returncode else "MISSED", round(time.time() - t)))
    finally:
        p.write_text(src)
    print(rows[-1], flush=True)
caught = sum(1 for r in rows if r[1].startswith("caught"))
print(f"caught {caught} of {sum(1 for r in rows if not r[1].startswith('SKIP'))}")
