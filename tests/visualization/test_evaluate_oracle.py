"""job=evaluate's wiring against an oracle: every score it stores (HDF5 per image, evaluation.csv
per method and head) is recomputed here from the test images it names and the maps it stored,
with the metric functions called directly, and its maps from a direct call of the method. A
changed tolerance, a swapped pair of results (the method's curve and the random baseline, two
heads, two methods) or a wrong image subset fails these tests."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from pipeline.attribution.gradcam import GradCAM
from pipeline.attribution.saliency import Saliency
from pipeline.evaluation.faithfulness import class_probability_fn, deletion_insertion
from pipeline.evaluation.localization import localization_scores
from pipeline.evaluation.sampling import evaluation_sample
from pipeline.evaluation.sanity import merge_cascades, parameter_layers, randomization_cascade
from pipeline.storage.h5store import H5Run
from pipeline.visualization.context import load_context
from pipeline.visualize_run import run_visualize
from tests.conftest import TINY, compose_cfg

N, N_FAITH, STEPS, SEED = 24, 6, 5, 3
HEADS = ["length", "width", "angle", "colour"]


@pytest.fixture(scope="module")
def evaluated(tiny_trained):
    root, _ = tiny_trained  # the session's tiny multihead lines run
    cfg = compose_cfg(root, [*TINY["lines"], "search_cut_short=true", "job=evaluate", f"seed={SEED}",
                             "evaluate.methods=[gradcam,saliency]", f"evaluate.num_images={N}",
                             f"evaluate.faithfulness_images={N_FAITH}", f"evaluate.deletion_steps={STEPS}",
                             "evaluate.sanity_images=2", "evaluate.sanity_repeats=1"], config_name="visualize")
    run_visualize(cfg)
    ctx = load_context(cfg)
    run_dir = Path(cfg.paths.output_dir)
    with open(run_dir / "evaluation.csv") as f:
        rows = {(r["method"], r["head"]): r for r in csv.DictReader(f)}
    h5 = H5Run(run_dir / "visualization.h5")
    yield ctx, h5, rows
    h5.close()


def _inputs(ctx, h5):
    idx = torch.from_numpy(h5.evaluation_indices())
    test = ctx.datamodule.test
    return idx, test.images[idx].float() / 255, test.masks[idx]


def test_the_scored_images_are_the_seeded_sample(evaluated):
    ctx, h5, _ = evaluated
    idx, _, _ = _inputs(ctx, h5)
    assert idx.tolist() == evaluation_sample(ctx.datamodule.test.labels, N, SEED).tolist()


@pytest.mark.parametrize("method", ["gradcam", "saliency"])
def test_stored_maps_equal_a_direct_call_of_the_method(evaluated, method):
    ctx, h5, _ = evaluated
    _, x, _ = _inputs(ctx, h5)
    direct = (GradCAM(ctx.net, "features.conv3") if method == "gradcam" else Saliency(ctx.net))(x)
    for head in HEADS:
        stored = h5.evaluation(method, head)
        torch.testing.assert_close(torch.from_numpy(stored["maps"]), direct[head].maps.float(), rtol=1e-5, atol=1e-6)
        assert stored["targets"].tolist() == direct[head].targets.tolist()


@pytest.mark.parametrize("method", ["gradcam", "saliency"])
def test_localization_scores_recomputed_from_the_stored_maps(evaluated, method):
    ctx, h5, rows = evaluated
    _, _, masks = _inputs(ctx, h5)
    for head in HEADS:
        stored = h5.evaluation(method, head)
        oracle = localization_scores(torch.from_numpy(stored["maps"]), masks, dilate=1)
        for key in ("pointing_game", "energy_in_mask", "mask_share", "topk_iou"):
            torch.testing.assert_close(torch.from_numpy(stored[key]).float(), oracle[key].float())
            assert float(rows[(method, head)][key]) == pytest.approx(float(oracle[key].float().mean()), abs=1e-6)


@pytest.mark.parametrize("method", ["gradcam", "saliency"])
def test_deletion_insertion_and_their_random_baseline_recomputed(evaluated, method):
    ctx, h5, rows = evaluated
    _, x, _ = _inputs(ctx, h5)
    differs = 0.0
    for head in HEADS:
        stored = h5.evaluation(method, head)
        maps, targets = torch.from_numpy(stored["maps"][:N_FAITH]), torch.from_numpy(stored["targets"][:N_FAITH])
        score = class_probability_fn(ctx.net, targets, head)
        for mode in ("deletion", "insertion"):
            curves, auc = deletion_insertion(score, x[:N_FAITH], maps, steps=STEPS, mode=mode, order="map", seed=SEED)
            _, rauc = deletion_insertion(score, x[:N_FAITH], maps, steps=STEPS, mode=mode, order="random", seed=SEED)
            torch.testing.assert_close(torch.from_numpy(stored[f"{mode}_curves"]).float(), curves.float())
            row = rows[(method, head)]
            assert float(row[f"{mode}_auc"]) == pytest.approx(float(auc.mean()), abs=1e-6)
            assert float(row[f"{mode}_auc_random"]) == pytest.approx(float(rauc.mean()), abs=1e-6)
            differs = max(differs, abs(float(auc.mean()) - float(rauc.mean())))
    assert differs > 1e-4  # the method's order and the random order give different numbers: a swap shows


def test_the_table_has_one_row_per_method_and_head(evaluated):
    _, _, rows = evaluated
    assert sorted(rows) == sorted((m, h) for m in ("gradcam", "saliency") for h in HEADS)


def test_sanity_correlations_recomputed_with_the_cascade(evaluated):
    """The stored rank correlations per randomization step and the table's top-layer figure equal a
    direct cascade on the same images, targets, layers and seeds (repeat r: seed + 1000 r)."""
    ctx, h5, rows = evaluated
    _, x, _ = _inputs(ctx, h5)
    for head in HEADS:
        stored = h5.evaluation("gradcam", head)
        targets = torch.from_numpy(stored["targets"][:2])

        def attribute(model, xb, t, head=head):
            return GradCAM(model, "features.conv3", heads=[head])(xb, {head: t})[head].maps

        layers = parameter_layers(ctx.net, prefixes=("features", f"heads.{head}"))
        steps = merge_cascades([randomization_cascade(ctx.net, attribute, x[:2], targets, seed=SEED, layers=layers)])
        torch.testing.assert_close(torch.from_numpy(stored["sanity_spearman"]).float(),
                                   torch.stack([s["spearman"] for s in steps]).float())
        assert float(rows[("gradcam", head)]["sanity_top_layer"]) == pytest.approx(steps[1]["mean"], abs=1e-6)


def test_intervals_recomputed_from_the_stored_per_image_scores(evaluated):
    """Every interval in evaluation.csv and the HDF5 attrs is the seeded bootstrap of the stored
    per-image values (sanity: the R x N correlations after randomizing the top layer, by image), it
    holds its score, and the sanity verdict says settled exactly when the interval is on one side."""
    from pipeline.evaluation.bootstrap import bootstrap_ci

    ctx, h5, rows = evaluated
    for method in ("gradcam", "saliency"):
        for head in HEADS:
            stored, row = h5.evaluation(method, head), rows[(method, head)]
            per_image = {k: stored[k] for k in ("pointing_game", "energy_in_mask", "topk_iou")}
            per_image["sanity_top_layer"] = stored["sanity_spearman"][1].reshape(1, -1)
            for key, values in per_image.items():
                want = bootstrap_ci(values, seed=SEED)
                got = (float(row[f"{key}_ci_low"]), float(row[f"{key}_ci_high"]))
                assert got == pytest.approx(want, abs=1e-9), key
                assert list(stored["attrs"][f"{key}_ci"]) == pytest.approx(list(want), abs=1e-9)
                assert got[0] - 1e-9 <= float(row[key]) <= got[1] + 1e-9
            low, high = float(row["sanity_top_layer_ci_low"]), float(row["sanity_top_layer_ci_high"])
            assert (row["sanity_verdict"] == "settled") == (high < 0.5 or low > 0.5)
            assert row["deletion_verdict"] in ("settled", "not settled by this sample")
