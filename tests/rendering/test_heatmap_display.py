"""Heatmap display (issue 11): the overlay on a greyscale image with low values faded, blank and
near-zero maps labelled, gradcam.scale=per_image|shared."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib import colormaps

from pipeline.attribution.result import AttributionResult, normalize_maps
from pipeline.errors import CnnvisError
from pipeline.jobs.attribution_maps import AttributionMapsJob, display_maps, map_flags
from pipeline.rendering.figures import overlay_heatmap


def test_overlay_is_the_grey_image_where_the_map_is_zero_and_the_colour_at_alpha_on_the_peak():
    rgb = np.zeros((2, 2, 3), np.float32)
    rgb[0, 0] = [0.8, 0, 0]  # a red line pixel
    rgb[1, 1] = [0, 0, 0.4]
    heat = np.array([[0.0, 1.0], [0.0, 0.5]], np.float32)
    out = overlay_heatmap(rgb, heat, alpha=0.6, cmap="jet")
    np.testing.assert_allclose(out[0, 0], [1.0] * 3, atol=1e-6)        # zero heat: the red pixel in grey (max 0.8, stretched to 1)
    np.testing.assert_allclose(out[1, 0], [0, 0, 0], atol=1e-6)         # black stays black (no navy wash)
    peak = np.array(colormaps["jet"](1.0)[:3], np.float32)
    np.testing.assert_allclose(out[0, 1], 0.6 * peak, atol=1e-6)        # the peak: 0.6 of the colour over black
    half = np.array(colormaps["jet"](0.5)[:3], np.float32)
    np.testing.assert_allclose(out[1, 1], 0.7 * 0.5 + 0.3 * half, atol=1e-6)  # opacity 0.6 x 0.5 over 0.4 / 0.8


def _result(peaks):
    maps = torch.zeros(len(peaks), 4, 4)
    for i, p in enumerate(peaks):
        maps[i, 1, 2] = p
        maps[i, 0, 0] = p / 2
    n = len(peaks)
    return AttributionResult(maps=maps, maps_normalized=normalize_maps(maps), layer_maps=maps[:, :2, :2],
                             targets=torch.zeros(n, dtype=torch.long), probs=torch.ones(n), scores=torch.ones(n),
                             all_zero=~(maps.flatten(1) > 0).any(1))


def test_blank_and_near_zero_maps_are_labelled():
    assert map_flags(_result([2.0, 0.0, 5e-5, 0.03]).maps) == [
        "", "blank (no positive evidence)", "near-zero (max 5.0e-05, 0.0% of the largest)", ""]
    assert map_flags(_result([2.0, 0.01]).maps) == ["", "near-zero (max 1.0e-02, 0.5% of the largest)"]


def test_shared_scale_keeps_a_weak_map_faint():
    r = _result([2.0, 5e-5, 0.0])
    per_image = display_maps(r, "per_image")
    assert float(per_image[1].max()) == 1.0  # min-max: the near-zero map looks as strong as the real one
    shared = display_maps(r, "shared")
    assert float(shared[0, 1, 2]) == 1.0 and float(shared[0, 0, 0]) == 0.5
    assert float(shared[1].max()) == pytest.approx(2.5e-5) and float(shared[2].abs().max()) == 0.0


def test_unknown_scale_is_refused():
    with pytest.raises(CnnvisError, match="gradcam.scale=global is not one of: per_image, shared"):
        AttributionMapsJob(None, None, 0, method="gradcam", catalog={}, alpha=0.5, cmap="jet", scale="global")


def _job(scale: str) -> AttributionMapsJob:
    from types import SimpleNamespace

    job = object.__new__(AttributionMapsJob)
    job.ctx = SimpleNamespace(head_classes={"class": 2}, class_names=["a", "b"], multihead=False, dataset_name="toy")
    job.alpha, job.cmap, job.scale, job.methods = 0.5, "jet", scale, {"gradcam": None}
    return job


def test_the_job_labels_tiles_and_reports_near_zero_maps(tmp_path, monkeypatch):
    from pipeline.jobs.attribution_maps import AttributionMaps, MapSet
    from pipeline.rendering import figures
    from pipeline.visualization.inputs import Selection

    seen = {}
    monkeypatch.setattr(figures, "render_gradcam_sheet", lambda images, maps, titles, path, **kw:
                        seen.update(maps=maps, titles=titles, title=kw["title"]) or path)
    monkeypatch.setattr(figures, "render_gradcam_figure", lambda *a, **kw: a[3])
    sel = Selection(torch.zeros(3, 3, 4, 4), torch.tensor([0, 1, 0]), ["test[0]", "test[1]", "test[2]"], None)
    result = AttributionMaps(sel, [MapSet("gradcam", "class", "features.conv1", _result([2.0, 0.0, 5e-5]))])
    job = _job("shared")
    figs = job.render(result, tmp_path)
    assert seen["titles"] == ["class: a (p=1.00)", "class: a (p=1.00)\nblank (no positive evidence)",
                              "class: a (p=1.00)\nnear-zero (max 5.0e-05, 0.0% of the largest)"]
    assert seen["title"] == "gradcam, layer features.conv1 (shared scale)"
    assert float(seen["maps"][2].max()) == pytest.approx(2.5e-5)
    assert figs[0].figures[3].caption == "image 2 (test[2]): class: a (p=1.00); near-zero (max 5.0e-05, 0.0% of the largest)"
    obs = job.section(result, figs).observations
    assert ("gradcam at features.conv1: image 2's map is near-zero (max 5.0e-05, 0.0% of the largest); its min-max "
            "scaled overlay would look as confident as the others (gradcam.scale=shared shows it on the figure's "
            "common scale)") in obs
