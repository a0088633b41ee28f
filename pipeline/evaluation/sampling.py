"""Which test images the measuring jobs (job=evaluate, job=probe) score."""
from __future__ import annotations

import torch

__all__ = ["evaluation_sample"]


def evaluation_sample(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """``count`` test indices in a seeded random order, so every class is represented in
    proportion -- in the whole sample and in each prefix of it. job=evaluate scores faithfulness
    and the sanity check on prefixes, and test sets are often stored class by class: a sorted
    sample would hand those checks the first classes only."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(len(labels), generator=g)[:count]
