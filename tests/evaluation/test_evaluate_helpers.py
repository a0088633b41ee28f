"""The evaluate job's sample and its printed bars (the job itself runs in test_visualize_job)."""
import torch

from pipeline.evaluation.job import evaluation_sample, print_bars


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
        {"method": "gradcam", "head": "angle", "pointing_game": 0.96, "energy_in_mask": 0.17, "mask_share": 0.03,
         "deletion_auc": 0.05, "deletion_auc_random": 0.45, "sanity_top_layer": 0.1},
        {"method": "gradcam", "head": "length", "deletion_auc": 0.99999, "deletion_auc_random": 0.99998,
         "sanity_top_layer": 0.7},
        {"method": "scorecam", "head": "angle", "pointing_game": 0.5, "energy_in_mask": 0.1, "mask_share": 0.03},
    ]
    text = print_bars(rows, "lines").splitlines()
    assert text[0].startswith("bar: Grad-CAM pointing game, angle head >= 95%: 96.0% (ok)")
    assert "0.0500 vs 0.4500 random, ok" in text[1]
    assert "(angle): 0.10 ok" in text[2]
    assert text[3].endswith("MISSED (the same as random)")          # equal AUCs are not "below"
    assert text[4].endswith("0.70 MISSED")
    assert len(text) == 5                                           # only Grad-CAM rows are bars
    rows[0]["pointing_game"] = 0.9
    assert "90.0% (MISSED)" in print_bars(rows, "lines")
