"""The evaluate job's sample and its printed bars (the job itself runs in test_visualize_job)."""
import torch

from pipeline.evaluation.sampling import evaluation_sample
from pipeline.evaluation.scoreboard import evaluation_observations, print_bars


def test_evaluation_sample_prefixes_span_the_classes():
    # a test set stored class by class, as the lines test split is: 96 classes x 40 images
    labels = torch.arange(96).repeat_interleave(40)
    idx = evaluation_sample(labels, 1000, seed=0)
    assert len(idx) == 1000 and len(set(idx.tolist())) == 1000
    assert torch.equal(idx, evaluation_sample(labels, 1000, seed=0))      # seeded
    assert not torch.equal(idx, evaluation_sample(labels, 1000, seed=1))
    # the faithfulness (200) and sanity (16) prefixes are themselves spread over the classes,
    # not the first classes of a sorted sample
    assert len(set(labels[idx[:200]].tolist())) > 70
    assert labels[idx[:16]].float().mean() > 20 and len(set(labels[idx[:16]].tolist())) > 10


def test_print_bars_verdicts():
    rows = [
        {"method": "gradcam", "head": "angle", "layer": "features.conv3", "pointing_game": 0.96, "energy_in_mask": 0.17, "mask_share": 0.03,
         "deletion_auc": 0.05, "deletion_auc_random": 0.45, "sanity_top_layer": 0.1},
        {"method": "gradcam", "head": "length", "deletion_auc": 0.99999, "deletion_auc_random": 0.99998,
         "sanity_top_layer": 0.7},
        {"method": "scorecam", "head": "angle", "pointing_game": 0.5, "energy_in_mask": 0.1, "mask_share": 0.03},
    ]
    text = print_bars(rows, "lines").splitlines()
    assert text[0].startswith("bar: Grad-CAM pointing game at features.conv3, angle head >= 95%: 96.0% (ok)")
    assert "0.0500 vs 0.4500 random, ok" in text[1]
    assert "(angle): 0.10 ok" in text[2]
    assert text[3].endswith("MISSED (the same as random)")          # equal AUCs are not "below"
    assert text[4].endswith("0.70 MISSED")
    assert len(text) == 5                                           # only Grad-CAM rows are bars
    rows[0]["pointing_game"] = 0.9
    assert "90.0% (MISSED)" in print_bars(rows, "lines")


def test_observations_explain_blank_maps_and_verdicts():
    rows = [{"method": "gradcam", "head": "length", "pointing_game": 0.47, "energy_in_mask": 0.06, "mask_share": 0.03,
             "blank_maps": 0.5, "deletion_auc": 0.5, "deletion_auc_random": 0.8, "sanity_top_layer": 0.53,
             "sanity_pass": False},
            {"method": "gradcam", "head": "angle", "pointing_game": 0.998, "energy_in_mask": 0.17, "mask_share": 0.03,
             "blank_maps": 0.0, "deletion_auc": 0.5, "deletion_auc_random": 0.5, "sanity_top_layer": 0.2,
             "sanity_pass": True}]
    text = evaluation_observations(rows, has_masks=True)
    blank = [t for t in text if "blank" in t]
    assert blank == [blank[0]] and blank[0].startswith("gradcam (length): 50.0% of the maps are blank")
    assert any("gradcam (length)" in t and "FAILS the sanity check" in t for t in text)
    assert any("gradcam (angle)" in t and "about the same as random" in t for t in text)
    assert any("gradcam (angle)" in t and "99.8%" in t and "5.7x chance" in t for t in text)
