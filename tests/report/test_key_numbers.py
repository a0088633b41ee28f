"""The numbers a sweep's index shows per visualize run: each job's key numbers and its main figure."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluation.probe import FactorResult
from pipeline.jobs.evaluate import EvaluateJob
from pipeline.jobs.probe import ProbeJob
from pipeline.report.sections import Figure, Section
from pipeline.report.deliverables import main_figure


def test_evaluate_key_numbers_are_means_over_methods_and_heads():
    rows = [{"method": "gradcam", "head": "angle", "pointing_game": 1.0, "deletion_auc": 0.2, "sanity_top_layer": 0.1},
            {"method": "saliency", "head": "angle", "pointing_game": 0.5, "deletion_auc": 0.4, "sanity_top_layer": None}]
    assert EvaluateJob.key_numbers(rows) == pytest.approx(
        {"mean pointing game": 0.75, "mean deletion auc": 0.3, "mean sanity top layer": 0.1})
    assert EvaluateJob.key_numbers([{"pointing_game": None}]) == {}


def test_probe_key_numbers_name_the_lowest_accuracy_and_where():
    base = FactorResult("baseline", [float("nan")], ["as drawn"], {"length": np.array([1.0]), "aggregate": np.array([0.98])}, 10)
    dim = FactorResult("brightness", [1.0, 0.7], ["x1", "x0.7"],
                       {"length": np.array([1.0, 0.4]), "aggregate": np.array([0.97, 0.43])}, 10)
    assert ProbeJob.key_numbers([base, dim]) == {"baseline accuracy (aggregate)": 0.98,
                                                 "lowest accuracy (aggregate)": 0.43, "lowest at": "brightness x0.7"}


def test_main_figure_is_the_first_figure_of_a_job_without_a_known_key_figure(tmp_path):
    run = tmp_path / "run"
    sections = [("probe", Section("no figures")), ("units", Section("units", subsections=[
        Section("layer", figures=[Figure(run / "figures" / "a" / "0.png"), Figure(run / "figures" / "a" / "1.png")])]))]
    assert main_figure(sections, run) == "figures/a/0.png"
    assert main_figure([("probe", Section("x"))], run) is None
    assert main_figure([("probe", Section("x", figures=[Figure(Path("elsewhere/f.png"))]))], run) == "elsewhere/f.png"
