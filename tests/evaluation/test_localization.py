"""Localization scores on hand-built maps/masks (exact oracles) and on real lines masks."""
from __future__ import annotations

import torch

from pipeline.data.lines import generate_lines
from pipeline.evaluation.localization import (dilate_masks, energy_in_mask, localization_scores,
                                              mask_share, pointing_game, pointing_game_valid, topk_iou)


def square_mask(n=1, size=8, rows=(3, 5), cols=(3, 5)):
    m = torch.zeros(n, size, size, dtype=torch.bool)
    m[:, rows[0]:rows[1], cols[0]:cols[1]] = True
    return m


def peak_map(r, c, size=8):
    m = torch.full((size, size), 0.1)
    m[r, c] = 1.0
    return m


def test_dilate_masks_is_chebyshev():
    m = torch.zeros(1, 7, 7, dtype=torch.bool)
    m[0, 3, 3] = True
    d1 = dilate_masks(m, 1)
    expected = torch.zeros(7, 7, dtype=torch.bool)
    expected[2:5, 2:5] = True
    assert torch.equal(d1[0], expected)
    d2 = dilate_masks(m, 2)
    assert int(d2.sum()) == 25
    assert torch.equal(dilate_masks(m, 0), m)
    # corner: no wrap-around, clipped at the border
    c = torch.zeros(1, 5, 5, dtype=torch.bool)
    c[0, 0, 0] = True
    dc = dilate_masks(c, 1)
    assert int(dc.sum()) == 4 and bool(dc[0, 1, 1]) and not bool(dc[0, 4, 4])


def test_pointing_game_on_beside_far():
    masks = square_mask(3)                       # rows 3-4, cols 3-4
    maps = torch.stack([peak_map(3, 4), peak_map(3, 5), peak_map(0, 0)])
    assert pointing_game(maps, masks, dilate=1).tolist() == [True, True, False]
    assert pointing_game(maps, masks, dilate=0).tolist() == [True, False, False]
    assert pointing_game_valid(maps).tolist() == [True, True, True]


def test_pointing_game_first_max_row_major():
    masks = square_mask(1)
    m = torch.zeros(1, 8, 8)
    m[0, 0, 7] = 1.0     # first maximum in row-major order: off the mask
    m[0, 4, 4] = 1.0     # tie, on the mask, but later
    assert pointing_game(m, masks, dilate=0).tolist() == [False]
    m2 = m.clone()
    m2[0, 0, 7] = 0.5
    assert pointing_game(m2, masks, dilate=0).tolist() == [True]


def test_all_zero_and_constant_maps_are_misses_without_nan():
    masks = square_mask(2, rows=(0, 2), cols=(0, 2))   # argmax of a flat map would be pixel 0: on the mask
    maps = torch.stack([torch.zeros(8, 8), torch.full((8, 8), 3.0)])
    assert pointing_game_valid(maps).tolist() == [False, False]
    assert pointing_game(maps, masks, dilate=1).tolist() == [False, False]
    e = energy_in_mask(maps, masks)
    assert torch.isfinite(e).all()
    assert e[0].item() == 0.0
    assert abs(e[1].item() - 4 / 64) < 1e-7     # a constant positive map: the mask share
    negative = -torch.rand(1, 8, 8)
    assert energy_in_mask(negative, masks[:1]).item() == 0.0
    scores = localization_scores(maps, masks)
    assert all(torch.isfinite(v.float()).all() for v in scores.values())


def test_energy_in_mask_exact():
    mask = torch.tensor([[[True, False], [False, True]]])
    maps = torch.tensor([[[3.0, 1.0], [-5.0, 1.0]]])   # relu -> 3, 1, 0, 1; inside 3 + 1 of 5
    assert abs(energy_in_mask(maps, mask).item() - 4 / 5) < 1e-7
    maps2 = torch.tensor([[[0.0, 2.0], [6.0, 0.0]]])
    assert energy_in_mask(maps2, mask).item() == 0.0


def test_mask_share():
    masks = torch.zeros(3, 4, 5, dtype=torch.bool)
    masks[1, 0, :] = True
    masks[2] = True
    assert torch.allclose(mask_share(masks), torch.tensor([0.0, 5 / 20, 1.0]))


def test_topk_iou_exact():
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 0, 0] = mask[0, 0, 1] = mask[0, 1, 0] = True           # 3 pixels
    maps = torch.zeros(1, 4, 4)
    maps[0, 0, 0], maps[0, 3, 3], maps[0, 0, 1], maps[0, 2, 2] = 9.0, 8.0, 7.0, 6.0
    # k = 3 (mask size): top = {(0,0), (3,3), (0,1)} -> inter 2, union 4
    assert abs(topk_iou(maps, mask).item() - 0.5) < 1e-7
    # percent=25 -> k = 4: top adds (2,2) -> inter 2, union 5
    assert abs(topk_iou(maps, mask, percent=25).item() - 2 / 5) < 1e-7
    # ties broken by a stable sort: a flat map picks the first 3 pixels (row-major)
    flat = torch.zeros(1, 4, 4)
    # top-3 = (0,0), (0,1), (0,2): inter 2, union 4
    assert abs(topk_iou(flat, mask).item() - 0.5) < 1e-7
    # perfect map
    assert topk_iou(mask.float(), mask).item() == 1.0
    # empty mask, percent None -> k = 0, empty union -> 0, not NaN
    assert topk_iou(maps, torch.zeros(1, 4, 4, dtype=torch.bool)).item() == 0.0


def test_scores_on_real_lines_masks():
    data = generate_lines(per_class=1, seed=3, progress=False)
    masks = torch.from_numpy(data.masks)
    assert masks.any(dim=(1, 2)).all()
    maps = masks.float()
    s = localization_scores(maps, masks, dilate=0)
    assert s["pointing_game"].all() and s["pointing_valid"].all()
    assert torch.allclose(s["energy_in_mask"], torch.ones(len(masks)))
    assert torch.allclose(s["topk_iou"], torch.ones(len(masks)))
    assert torch.allclose(s["mask_share"], masks.float().mean((1, 2)))
    inv = (~masks).float()
    s_inv = localization_scores(inv, masks, dilate=0)
    assert (s_inv["energy_in_mask"] == 0).all()
    assert not s_inv["pointing_game"].any()
    assert (s_inv["topk_iou"] == 0).all()
    # a uniform map: energy equals the chance level
    uniform = torch.ones_like(maps)
    assert torch.allclose(energy_in_mask(uniform, masks), mask_share(masks))
    # numpy masks are accepted too
    assert pointing_game(maps, data.masks, dilate=0).all()
