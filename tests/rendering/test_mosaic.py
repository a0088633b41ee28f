"""Tests of pipeline.rendering.mosaic: exact tile placement."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.rendering.mosaic import grid_shape, mosaic, tile_origins


def test_exact_placement_on_arange():
    arr = np.arange(5 * 2 * 3).reshape(5, 2, 3)
    m = mosaic(arr)  # ncols = ceil(sqrt(5)) = 3, pad 1 -> 2 rows
    assert m.shape == (2 * 2 + 1, 3 * 3 + 2)
    origins = tile_origins(5, 2, 3, None, 1)
    assert origins == [(0, 0), (0, 4), (0, 8), (3, 0), (3, 4)]
    for c, (r, col) in enumerate(origins):
        np.testing.assert_array_equal(m[r:r + 2, col:col + 3], arr[c])
    # gaps and the unused cell are NaN
    assert np.isnan(m[2, :]).all() and np.isnan(m[:, 3]).all() and np.isnan(m[:, 7]).all()
    assert np.isnan(m[3:, 8:]).all()
    assert np.count_nonzero(~np.isnan(m)) == arr.size


def test_ncols_and_pad():
    arr = np.arange(6 * 2 * 2, dtype=np.float32).reshape(6, 2, 2)
    m = mosaic(arr, ncols=2, pad=3, pad_value=-1)
    assert m.shape == (3 * 2 + 2 * 3, 2 * 2 + 3)
    assert m.dtype == np.float32
    for c, (r, col) in enumerate(tile_origins(6, 2, 2, ncols=2, pad=3)):
        np.testing.assert_array_equal(m[r:r + 2, col:col + 2], arr[c])
    assert (m[2:5, :] == -1).all()
    m0 = mosaic(arr, ncols=6, pad=0)
    np.testing.assert_array_equal(m0, np.concatenate(list(arr), axis=1))
    # ncols larger than C is clamped to C
    assert mosaic(arr, ncols=50, pad=0).shape == (2, 12)
    assert grid_shape(64) == (8, 8) and grid_shape(65) == (8, 9) and grid_shape(32) == (6, 6)


def test_rgb_tiles_and_tensor_input():
    arr = torch.arange(3 * 2 * 2 * 3, dtype=torch.float32).reshape(3, 2, 2, 3)
    m = mosaic(arr, ncols=3, pad=1, pad_value=1.0)
    assert m.shape == (2, 8, 3)
    for c, (r, col) in enumerate(tile_origins(3, 2, 2, 3, 1)):
        np.testing.assert_array_equal(m[r:r + 2, col:col + 2], arr[c].numpy())
    assert (m[:, 2] == 1.0).all() and (m[:, 5] == 1.0).all()


def test_integer_input_promoted_for_nan_pad():
    m = mosaic(np.ones((2, 2, 2), np.int64))
    assert np.issubdtype(m.dtype, np.floating) and np.isnan(m[:, 2]).all()
    assert mosaic(np.ones((2, 2, 2), np.uint8), pad_value=0).dtype == np.uint8


def test_bad_input():
    with pytest.raises(ValueError):
        mosaic(np.ones((2, 2)))
    with pytest.raises(ValueError):
        mosaic(np.ones((0, 2, 2)))
