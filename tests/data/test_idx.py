"""Tests of pipeline.data.idx: the real MNIST files, round trips and every kind of corrupt file."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.idx import IDXError, parse_idx, read_idx, read_idx_bytes, write_idx

SHARED_MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "mnist"

# Per-class counts of the standard MNIST training labels (a published, well-known fact).
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(scope="module")
def mnist_train_images():
    return read_idx(SHARED_MNIST / "train-images-idx3-ubyte.gz")


def test_real_mnist_gz(mnist_train_images):
    imgs = mnist_train_images
    labels = read_idx(SHARED_MNIST / "train-labels-idx1-ubyte.gz")
    test_imgs = read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz")
    test_labels = read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert imgs.shape == (60000, 28, 28) and imgs.dtype == np.uint8
    assert labels.shape == (60000,) and labels.dtype == np.uint8
    assert test_imgs.shape == (10000, 28, 28) and test_labels.shape == (10000,)
    assert labels[0] == 5 and test_labels[0] == 7
    assert labels.min() == 0 and labels.max() == 9
    assert np.bincount(labels).tolist() == MNIST_TRAIN_COUNTS
    # Offset/layout check: the known mean pixel (0.1307 * 255) and black borders.
    assert abs(imgs.mean() - 0.1307 * 255) < 0.05
    assert imgs[:, 0, :].mean() < 0.1 < 40 < imgs[:, 14, :].mean()  # borders dark, centre bright
    assert imgs.max() == 255
    assert imgs.flags.writeable and imgs.flags.c_contiguous


def test_raw_copy_equals_gz(tmp_path, mnist_train_images):
    raw = tmp_path / "train-images-idx3-ubyte"
    raw.write_bytes(gzip.decompress((SHARED_MNIST / "train-images-idx3-ubyte.gz").read_bytes()))
    assert np.array_equal(read_idx(raw), mnist_train_images)
    # Detection is by content, not by name: raw bytes named .gz, gzip bytes named without.
    lab_gz = (SHARED_MNIST / "train-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "raw.gz").write_bytes(gzip.decompress(lab_gz))
    (tmp_path / "zipped.idx").write_bytes(lab_gz)
    a, b = read_idx(tmp_path / "raw.gz"), read_idx(str(tmp_path / "zipped.idx"))
    assert np.array_equal(a, b) and a[0] == 5 and len(a) == 60000


DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, dtype, ndim, suffix):
    rng = np.random.default_rng(ndim)
    shape = (3, 4, 2, 5)[:ndim]
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        arr = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
        arr.flat[0], arr.flat[-1] = info.min, info.max
    else:
        arr = (rng.standard_normal(shape) * 1e3).astype(dtype)
        arr.flat[0], arr.flat[-1] = np.inf, np.nan
    path = tmp_path / f"a{suffix}"
    write_idx(path, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == shape
    assert np.array_equal(back, arr, equal_nan=info is None)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


def test_exact_encoding_and_big_endian_input(tmp_path):
    # Hand-written IDX bytes: int16, 1 dim of 2, values 1 and -2, big-endian.
    expected = b"\x00\x00\x0b\x01" + b"\x00\x00\x00\x02" + b"\x00\x01\xff\xfe"
    write_idx(tmp_path / "a", np.array([1, -2], dtype="<i2"))
    write_idx(tmp_path / "b", np.array([1, -2], dtype=">i2"))
    assert (tmp_path / "a").read_bytes() == expected == (tmp_path / "b").read_bytes()
    assert parse_idx(expected).tolist() == [1, -2]
    # compress overrides the suffix
    write_idx(tmp_path / "c.gz", np.array([1, -2], dtype=np.int16), compress=False)
    assert (tmp_path / "c.gz").read_bytes() == expected
    write_idx(tmp_path / "d", np.array([1, -2], dtype=np.int16), compress=True)
    assert gzip.decompress((tmp_path / "d").read_bytes()) == expected


def test_write_rejects_unsupported(tmp_path):
    with pytest.raises(IDXError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(IDXError, match="0-dimensional"):
        write_idx(tmp_path / "x", np.uint8(3))
    assert list(tmp_path.iterdir()) == []


def _labels_bytes(n=10) -> bytes:
    return b"\x00\x00\x08\x01" + struct.pack(">I", n) + bytes(range(n))


def _expect_error(path: Path, *fragments: str):
    with pytest.raises(IDXError) as info:
        read_idx(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


def test_truncated_payload(tmp_path):
    p = tmp_path / "trunc"
    p.write_bytes(_labels_bytes()[:-3])
    _expect_error(p, "truncated", "needs 10 bytes", "got 7 bytes")
    # the same through gzip
    pg = tmp_path / "trunc.gz"
    pg.write_bytes(gzip.compress(_labels_bytes()[:-3]))
    _expect_error(pg, "needs 10 bytes", "got 7 bytes")


def test_trailing_bytes(tmp_path):
    p = tmp_path / "trail"
    p.write_bytes(_labels_bytes() + b"\x00\x01")
    _expect_error(p, "2 trailing bytes", "exactly 10 bytes", "got 12")


def test_wrong_magic(tmp_path):
    p = tmp_path / "magic"
    p.write_bytes(b"\x01\x00" + _labels_bytes()[2:])
    _expect_error(p, "magic", "0x01 0x00", "expected 0x00 0x00")
    p.write_bytes(b"PK\x03\x04 zip file")
    _expect_error(p, "magic")


def test_bad_type_code(tmp_path):
    p = tmp_path / "code"
    data = bytearray(_labels_bytes())
    data[2] = 0x0A
    p.write_bytes(bytes(data))
    _expect_error(p, "type code 0x0A", "0x08 (uint8)", "0x0E (float64)")


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(bytes(range(256)) * 200)
    p = tmp_path / "bad.gz"
    damaged = bytearray(good)
    for i in range(20, 60):
        damaged[i] ^= 0xFF
    p.write_bytes(bytes(damaged))
    _expect_error(p, "corrupt gzip")
    p.write_bytes(good[: len(good) // 2])  # truncated gzip stream
    _expect_error(p, "corrupt gzip")


def test_empty_and_short_files(tmp_path):
    p = tmp_path / "empty"
    p.write_bytes(b"")
    _expect_error(p, "empty")
    p.write_bytes(gzip.compress(b""))
    _expect_error(p, "0 bytes")
    p.write_bytes(b"\x00\x00")
    _expect_error(p, "too short")
    p.write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x01")  # 3 dims, header cut after the first
    _expect_error(p, "header truncated", "16-byte header")
    p.write_bytes(b"\x00\x00\x08\x00")
    _expect_error(p, "dimensions")


def test_file_not_found(tmp_path):
    p = tmp_path / "nope" / "train-images-idx3-ubyte.gz"
    with pytest.raises(FileNotFoundError) as info:
        read_idx(p)
    assert str(p) in str(info.value)
    with pytest.raises(FileNotFoundError):
        read_idx_bytes(str(p))


def test_idx_error_is_value_error_and_picklable():
    import pickle

    err = IDXError("f.idx", "something wrong")
    assert isinstance(err, ValueError) and str(err) == "f.idx: something wrong"
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.problem, str(back)) == ("f.idx", "something wrong", str(err))
