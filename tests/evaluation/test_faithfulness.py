"""Deletion / insertion curves with a toy scorer whose score is known in closed form."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.evaluation.faithfulness import class_probability_fn, deletion_insertion, end_scores, pixel_order

N, C, S, STEPS = 6, 2, 8, 8          # 64 pixels, 8 per step; each region is 8 pixels


def make_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 0.5 + 0.5 * torch.rand(N, C, S, S, generator=g)
    regions = torch.zeros(N, S, S, dtype=torch.bool)
    for i in range(N):                                    # a 2x4 block at a different place per image
        r, c = i % 6, (2 * i) % 4
        regions[i, r:r + 2, c:c + 4] = True
    calls = []

    def score_fn(xb, index):
        calls.append(len(xb))
        region = regions[index].unsqueeze(1)              # [B, 1, H, W]
        return (xb * region).sum((1, 2, 3)) / (region.sum((1, 2, 3)) * C)

    good_map = regions.float() + 0.01 * torch.rand(N, S, S, generator=g)   # region ranked first
    return x, regions, score_fn, good_map, calls


def test_deletion_and_insertion_exact_for_perfect_map():
    x, regions, score_fn, good, calls = make_problem()
    s0 = score_fn(x, torch.arange(N))
    curves, auc = deletion_insertion(score_fn, x, good, steps=STEPS, mode="deletion")
    assert curves.shape == (N, STEPS + 1) and auc.shape == (N,)
    # the region (8 px) is deleted entirely at step 1; baseline 0 -> score 0 afterwards
    assert torch.allclose(curves[:, 0], s0)
    assert torch.all(curves[:, 1:] == 0)
    assert torch.allclose(auc, s0 / (2 * STEPS))
    curves_i, auc_i = deletion_insertion(score_fn, x, good, steps=STEPS, mode="insertion")
    assert torch.all(curves_i[:, 0] == 0)
    assert torch.allclose(curves_i[:, 1:], s0[:, None].expand(N, STEPS))
    assert torch.allclose(auc_i, s0 * (1 - 1 / (2 * STEPS)))


def test_map_order_beats_random_order():
    x, regions, score_fn, good, _ = make_problem()
    _, del_map = deletion_insertion(score_fn, x, good, steps=STEPS, mode="deletion")
    _, del_rand = deletion_insertion(score_fn, x, good, steps=STEPS, mode="deletion", order="random", seed=1)
    _, ins_map = deletion_insertion(score_fn, x, good, steps=STEPS, mode="insertion")
    _, ins_rand = deletion_insertion(score_fn, x, good, steps=STEPS, mode="insertion", order="random", seed=1)
    assert del_map.mean() < 0.3 * del_rand.mean()
    assert ins_map.mean() > 1.5 * ins_rand.mean()
    # an inverted map (region last) is worse than random for deletion
    _, del_bad = deletion_insertion(score_fn, x, -good, steps=STEPS, mode="deletion")
    assert del_bad.mean() > del_rand.mean()


def test_endpoints_with_tensor_baseline():
    x, regions, score_fn, good, _ = make_problem()
    baseline = torch.tensor([0.25, 0.75]).view(C, 1, 1)
    base_img = baseline.expand(N, C, S, S)
    idx = torch.arange(N)
    for mode in ("deletion", "insertion"):
        for order in ("map", "random"):
            curves, _ = deletion_insertion(score_fn, x, good, steps=5, baseline=baseline, mode=mode, order=order)
            start, end = (x, base_img) if mode == "deletion" else (base_img, x)
            assert torch.allclose(curves[:, 0], score_fn(start, idx))
            assert torch.allclose(curves[:, -1], score_fn(end, idx))


def test_deletion_sets_all_channels_of_a_pixel():
    x = torch.ones(1, 3, 4, 4)
    seen = []

    def score_fn(xb, index):
        seen.append(xb.clone())
        return xb.sum((1, 2, 3))

    m = torch.zeros(1, 4, 4)
    m[0, 2, 1] = 1.0
    curves, _ = deletion_insertion(score_fn, x, m, steps=16, mode="deletion")
    step1 = seen[0][1]                                  # after deleting one pixel
    assert torch.all(step1[:, 2, 1] == 0) and step1.sum() == 3 * 15
    assert torch.allclose(curves[0], 3.0 * torch.arange(16, -1, -1).float())
    # AUC of a linear curve from 48 to 0 by the trapezoid rule: 24
    assert abs(deletion_insertion(score_fn, x, m, steps=16)[1].item() - 24.0) < 1e-5


def test_ties_broken_stably_row_major():
    flat = torch.zeros(2, 3, 3)
    order = pixel_order(flat, "map")
    assert order.tolist() == [list(range(9))] * 2
    x = torch.ones(1, 1, 3, 3)

    def first_pixel(xb, index):
        return xb[:, 0, 0, 0]

    curves, _ = deletion_insertion(first_pixel, x, torch.zeros(1, 3, 3), steps=9)
    assert curves[0].tolist() == [1.0] + [0.0] * 9


def test_random_order_reproducible_and_seeded():
    x, regions, score_fn, good, _ = make_problem()
    state = torch.get_rng_state()
    a, _ = deletion_insertion(score_fn, x, good, steps=STEPS, order="random", seed=7)
    b, _ = deletion_insertion(score_fn, x, good, steps=STEPS, order="random", seed=7)
    c, _ = deletion_insertion(score_fn, x, good, steps=STEPS, order="random", seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)      # the global RNG is untouched
    o = pixel_order(good, "random", seed=7)
    assert not torch.equal(o[0], o[1])                    # one permutation per image
    assert torch.equal(o.sort(1).values, torch.arange(S * S).expand(N, -1))


def test_batched_calls():
    x, regions, score_fn, good, calls = make_problem()
    ref, ref_auc = deletion_insertion(score_fn, x, good, steps=STEPS)
    assert calls == [N * (STEPS + 1)]                     # 54 pairs, one call with batch_size 256
    calls.clear()
    out, auc = deletion_insertion(score_fn, x, good, steps=STEPS, batch_size=20)
    assert calls == [20, 20, 14]
    assert torch.equal(out, ref) and torch.equal(auc, ref_auc)


def test_uneven_step_sizes_and_validation():
    x = torch.ones(1, 1, 5, 5)                            # 25 pixels, 4 steps -> counts 0, 6, 12, 18, 25

    def score_fn(xb, index):
        return xb.sum((1, 2, 3))

    m = torch.rand(1, 5, 5)
    curves, auc = deletion_insertion(score_fn, x, m, steps=4)
    assert curves[0].tolist() == [25.0, 19.0, 13.0, 7.0, 0.0]
    assert abs(auc.item() - 12.5) < 1e-5                  # linear in the fraction deleted
    with pytest.raises(ValueError):
        deletion_insertion(score_fn, x, m, mode="erase")
    with pytest.raises(ValueError):
        deletion_insertion(score_fn, x, m, order="sorted")
    with pytest.raises(ValueError):
        deletion_insertion(score_fn, x, torch.rand(1, 4, 4))


def test_class_probability_fn_single_and_multihead():
    torch.manual_seed(0)

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8))
            self.bin = nn.Linear(8, 1)
            self.multi = nn.Linear(8, 3)

        def forward(self, x):
            h = self.body(x)
            return {"bin": self.bin(h), "multi": self.multi(h)}

    model = Two().eval()
    x = torch.rand(4, 1, 4, 4)
    targets_multi = torch.tensor([0, 2, 1, 2])
    targets_bin = torch.tensor([1, 0, 0, 0])  # idx 3 -> 0, idx 0 -> 1
    idx = torch.tensor([3, 0])
    with torch.no_grad():
        out = model(x)
        p_multi = class_probability_fn(model, targets_multi, head="multi")(x[idx], idx)
        assert torch.allclose(p_multi, out["multi"].softmax(1)[idx, targets_multi[idx]])
        p_bin = class_probability_fn(model, targets_bin, head="bin")(x[idx], idx)
        s = torch.sigmoid(out["bin"][idx, 0])
        assert torch.allclose(p_bin, torch.stack([1 - s[0], s[1]]))
    with pytest.raises(ValueError):
        class_probability_fn(model, targets_bin)(x, torch.arange(4))
    curves, auc = deletion_insertion(class_probability_fn(model, targets_multi, head="multi"),
                                     x, torch.rand(4, 4, 4), steps=4)
    assert ((curves >= 0) & (curves <= 1)).all() and ((auc >= 0) & (auc <= 1)).all()


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
@pytest.mark.parametrize("order", ["map", "random"])
def test_precomputed_ends_give_the_same_curves(mode, order):
    """``ends`` (the scores of the images and of the baseline, once for many maps) leave the
    curves unchanged and only the steps in between are run."""
    x, regions, score_fn, good, calls = make_problem()
    baseline = torch.full((C, 1, 1), 0.25)
    ref, ref_auc = deletion_insertion(score_fn, x, good, steps=STEPS, mode=mode, order=order, baseline=baseline)
    ends = end_scores(score_fn, x, baseline, batch_size=4)
    calls.clear()
    out, auc = deletion_insertion(score_fn, x, good, steps=STEPS, mode=mode, order=order, baseline=baseline,
                                  ends=ends, batch_size=20)
    assert sum(calls) == N * (STEPS - 1)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-7)
    torch.testing.assert_close(auc, ref_auc, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="ends"):
        deletion_insertion(score_fn, x, good, steps=STEPS, ends=(ends[0][:2], ends[1]))


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_batched_over_images_and_steps_equals_a_loop_over_steps(mode):
    """The batched curves (rows mixing images and steps, in chunks) equal a plain loop: for each
    step, that step's perturbed images of every image scored together, the pixels picked here."""
    x, regions, score_fn, good, _ = make_problem(seed=5)
    curves, auc = deletion_insertion(score_fn, x, good, steps=STEPS, mode=mode, batch_size=7)
    p = S * S
    order = torch.sort(good.flatten(1), dim=1, descending=True, stable=True).indices
    want = torch.empty(N, STEPS + 1, dtype=torch.float64)
    for s in range(STEPS + 1):
        changed = torch.zeros(N, p, dtype=torch.bool)
        changed.scatter_(1, order[:, :s * p // STEPS], True)
        changed = changed.view(N, 1, S, S)
        xs = torch.where(changed, 0.0, x) if mode == "deletion" else torch.where(changed, x, torch.zeros_like(x))
        want[:, s] = score_fn(xs, torch.arange(N)).double()
    torch.testing.assert_close(curves.double(), want, rtol=0, atol=1e-6)
    frac = torch.arange(STEPS + 1, dtype=torch.float64) / STEPS
    torch.testing.assert_close(auc.double(), torch.trapezoid(want, x=frac, dim=1), rtol=0, atol=1e-6)
