"""pipeline/allocator.py: glibc keeps freed memory, so a batch's activations do not page-fault again.

The oracle is the kernel's own count of minor page faults (``getrusage``), in fresh processes: the
multihead's no-grad forward at batch 256 (activations of 5-19 MB), six times, faults on its
activations' pages on every pass at glibc's defaults (the heap's top is handed back between
passes), and only on the first with freed memory kept."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.allocator import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

PROBE = r"""
import json, resource, sys
import torch
if sys.argv[1] == "keep":
    from pipeline.allocator import keep_freed_memory
    print(keep_freed_memory(), file=sys.stderr)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
from pipeline.models.multihead import MultiHead
torch.set_num_threads(1)
torch.manual_seed(0)
model = MultiHead().eval()
x = torch.rand(256, 3, 28, 28).contiguous(memory_format=torch.channels_last)
counts = []
for _ in range(6):
    before = faults()
    with torch.no_grad():
        model(x)
    counts.append(faults() - before)
print(json.dumps(counts))
"""


def _faults(mode: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_kept_memory_stops_the_page_faults_of_every_round():
    default, kept = _faults("default"), _faults("keep")
    # glibc's defaults: every pass faults again (measured: ~23,000 pages, 92 MB, per pass)
    assert min(default[3:]) > 5_000, default
    # kept: the heap has grown to the forward's peak after the first passes; then no new page
    assert sum(kept[3:]) < 0.02 * sum(default[3:]), (kept, default)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_keep_freed_memory_says_what_it_set_and_is_idempotent():
    first = keep_freed_memory()
    assert first.startswith("allocator: glibc keeps freed memory (mmap threshold 32 MiB, trim threshold 1024 MiB)")
    assert keep_freed_memory() == first


def test_the_entry_scripts_have_the_switch_on_by_default():
    from omegaconf import OmegaConf

    for name in ("train", "visualize", "eval"):
        cfg = OmegaConf.load(ROOT / "conf" / f"{name}.yaml")
        assert cfg.keep_freed_memory is True, name
