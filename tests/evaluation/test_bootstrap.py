"""Bootstrap intervals over images (pipeline/evaluation/bootstrap.py) and the verdicts they settle."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation.bootstrap import bootstrap_ci, settled, verdict


def test_interval_contains_the_mean_and_shrinks_with_more_images():
    rng = np.random.default_rng(0)
    widths = []
    for n in (50, 200, 800):
        v = rng.normal(0.4, 0.2, size=n)
        lo, hi = bootstrap_ci(v, seed=1)
        assert lo <= v.mean() <= hi
        widths.append(hi - lo)
    assert widths[0] > 1.5 * widths[1] and widths[1] > 1.5 * widths[2]  # about 1/sqrt(n): halves per 4x images
    # the textbook width of a 95% interval of a mean: 2 * 1.96 * sd / sqrt(n)
    assert widths[2] == pytest.approx(2 * 1.96 * 0.2 / np.sqrt(800), rel=0.15)


def test_seeded_and_resampled_by_image():
    v = np.random.default_rng(2).random(40)
    assert bootstrap_ci(v, seed=3) == bootstrap_ci(v, seed=3)
    assert bootstrap_ci(v, seed=3) != bootstrap_ci(v, seed=4)
    # [R, N]: the R values of an image are resampled together -- the interval of their per-image mean
    rv = np.stack([v, v + 0.1, v - 0.1])
    assert bootstrap_ci(rv, seed=3) == pytest.approx(bootstrap_ci(rv.mean(0), seed=3))
    # a constant score has a zero-width interval; one image gives its value
    assert bootstrap_ci(np.full(30, 0.25)) == pytest.approx((0.25, 0.25))
    assert bootstrap_ci([0.7]) == pytest.approx((0.7, 0.7))
    assert all(np.isnan(bootstrap_ci([])))
    with pytest.raises(ValueError):
        bootstrap_ci(np.zeros((2, 3, 4)))


def test_verdicts_settled_only_on_one_side():
    assert settled((0.1, 0.4), 0.5) and settled((0.6, 0.9), 0.5)
    assert not settled((0.4, 0.6), 0.5) and not settled((0.3, 0.5), 0.5)
    assert verdict((0.1, 0.2), 0.5) == "settled"
    assert verdict((0.45, 0.55), 0.5) == "not settled by this sample"
