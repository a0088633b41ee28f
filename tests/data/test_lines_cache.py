"""Tests of the HDF5 cache of the lines dataset."""

from __future__ import annotations

import logging
import os

import h5py
import numpy as np
import pytest

import pipeline.data.array_cache as array_cache
import pipeline.data.lines_cache as lc
from pipeline.data.lines import generate_lines
from pipeline.data.line_styles import Augment
from pipeline.data.lines_cache import GENERATOR_VERSION, cache_params, cache_path, load_or_generate_lines

PER_CLASS = 2
SEED = 4
FIELDS = ("images", "masks", "labels", "centres")


def _assert_same(a, b):
    for field in FIELDS:
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes(), field


def _forbid_generation(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("generate_lines called although a valid cache exists")

    monkeypatch.setattr(lc, "generate_lines", boom)


@pytest.fixture
def fresh():
    return generate_lines(per_class=PER_CLASS, seed=SEED, progress=False)


@pytest.fixture
def cached(tmp_path):
    cache_dir = tmp_path / "nested" / "cache"  # created on demand
    arrays = load_or_generate_lines(cache_dir, per_class=PER_CLASS, seed=SEED, progress=False)
    return cache_dir, arrays, cache_path(cache_dir, cache_params(PER_CLASS, SEED, 28, 1.0))


def _load(cache_dir):
    return load_or_generate_lines(cache_dir, per_class=PER_CLASS, seed=SEED, progress=False)


def _only_cache_file_left(cache_dir, path):
    assert sorted(os.listdir(cache_dir)) == [path.name]


def test_cache_path_encodes_parameters(tmp_path):
    def path(*args, **kwargs):
        return cache_path(tmp_path, cache_params(*args, **kwargs))

    base = path(1000, 0, 28, 1.0)
    assert base.parent == tmp_path and base.suffix == ".h5"
    assert f"v{GENERATOR_VERSION}" in base.name
    marked = np.zeros(96 * 1000, dtype=bool)
    other_marked = marked.copy()
    other_marked[5] = True
    others = {path(999, 0, 28, 1.0), path(1000, 1, 28, 1.0), path(1000, 0, 32, 1.0), path(1000, 0, 28, 1.5),
              path(1000, 0, 28, 1.0, style="course"),
              path(1000, 0, 28, 1.0, augment=Augment(), augmented=marked),
              path(1000, 0, 28, 1.0, augment=Augment(), augmented=other_marked),
              path(1000, 0, 28, 1.0, augment=Augment(blur=(0.0, 0.5)), augmented=marked)}
    assert base not in others and len(others) == 8


def test_course_style_with_augmentation_round_trips(tmp_path, monkeypatch):
    marked = np.zeros(96 * PER_CLASS, dtype=bool)
    marked[::2] = True
    kw = dict(per_class=PER_CLASS, seed=SEED, progress=False, style="course", augment=Augment(), augmented=marked)
    first = load_or_generate_lines(tmp_path, **kw)
    _assert_same(first, generate_lines(**kw))
    _forbid_generation(monkeypatch)
    _assert_same(load_or_generate_lines(tmp_path, **kw), first)


def test_first_call_generates_second_loads(cached, fresh, monkeypatch):
    cache_dir, first, path = cached
    assert path.is_file()
    _assert_same(first, fresh)
    _only_cache_file_left(cache_dir, path)
    with h5py.File(path, "r") as f:
        assert set(FIELDS) <= set(f)
        assert f.attrs["seed"] == SEED and f.attrs["per_class"] == PER_CLASS
        assert len(f.attrs["sha256"]) == 64
    _forbid_generation(monkeypatch)
    _assert_same(_load(cache_dir), fresh)


def _corrupt_and_check(cache_dir, path, fresh, caplog, monkeypatch, expect_in_message):
    calls = []
    real = lc.generate_lines

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(lc, "generate_lines", counting)
    with caplog.at_level(logging.WARNING, logger="pipeline.data.array_cache"):
        again = _load(cache_dir)
    assert len(calls) == 1, "a corrupt cache must be regenerated"
    _assert_same(again, fresh)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert path.name in message and "regenerat" in message
    assert expect_in_message in message
    _only_cache_file_left(cache_dir, path)
    # The rewritten file is whole: the next call loads it.
    _forbid_generation(monkeypatch)
    _assert_same(_load(cache_dir), fresh)


def test_truncated_file_is_regenerated(cached, fresh, caplog, monkeypatch):
    cache_dir, _, path = cached
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    _corrupt_and_check(cache_dir, path, fresh, caplog, monkeypatch, "unreadable")


def test_flipped_bytes_are_detected(cached, fresh, caplog, monkeypatch):
    cache_dir, _, path = cached
    data = bytearray(path.read_bytes())
    # Flip bytes spread over the file (header, metadata, compressed chunks).
    for offset in range(len(data) // 3, len(data), max(1, len(data) // 50)):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    _corrupt_and_check(cache_dir, path, fresh, caplog, monkeypatch, "")


def test_garbage_file_is_regenerated(cached, fresh, caplog, monkeypatch):
    cache_dir, _, path = cached
    path.write_bytes(b"not an hdf5 file at all")
    _corrupt_and_check(cache_dir, path, fresh, caplog, monkeypatch, "unreadable")


def test_checksum_mismatch_is_regenerated(cached, fresh, caplog, monkeypatch):
    cache_dir, _, path = cached
    with h5py.File(path, "r+") as f:  # a valid HDF5 file whose data changed
        f["images"][0, 0, 5, 5] = 17
    _corrupt_and_check(cache_dir, path, fresh, caplog, monkeypatch, "sha256")


def test_wrong_parameters_are_regenerated(cached, fresh, caplog, monkeypatch):
    cache_dir, _, path = cached
    with h5py.File(path, "r+") as f:
        f.attrs["seed"] = SEED + 1
    _corrupt_and_check(cache_dir, path, fresh, caplog, monkeypatch, "seed")


def test_wrong_shape_is_regenerated(cached, fresh, caplog, monkeypatch):
    cache_dir, _, path = cached
    with h5py.File(path, "r+") as f:
        labels = f["labels"][()]
        del f["labels"]
        f.create_dataset("labels", data=labels[:-1])
    _corrupt_and_check(cache_dir, path, fresh, caplog, monkeypatch, "labels")


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(array_cache.os, "replace", fail)
    with pytest.raises(KeyboardInterrupt):
        _load(tmp_path)
    assert os.listdir(tmp_path) == []


def test_cached_arrays_round_trip_exactly(cached):
    _, arrays, path = cached
    with h5py.File(path, "r") as f:
        for field in FIELDS:
            np.testing.assert_array_equal(f[field][()], getattr(arrays, field))
