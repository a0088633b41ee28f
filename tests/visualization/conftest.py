"""Fixtures shared by the visualization tests (plain helpers live in helpers.py)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a whole test module, restored afterwards.

    Small models (and float64 convolutions, which take a slow thread-parallel path) run much
    faster on one thread than on contended ones when the CPU is shared. Opt in per module with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
