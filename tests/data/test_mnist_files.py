"""Tests of pipeline.data.mnist_files: search order, verification and download (127.0.0.1 only)."""

from __future__ import annotations

import gzip
import os
import pickle
import socket
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from pipeline.data import mnist_files as mf
from pipeline.data.idx import write_idx
from pipeline.data.idx_specs import FILE_KEYS, SPECS, DatasetCorruptError, DatasetNotFoundError
from pipeline.data.mnist_files import candidate_dirs, find_dataset_files, load_idx_dataset

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
SHARED_MNIST = SHARED / "mnist"
MNIST = SPECS["mnist"]
NAMES = MNIST.filenames()
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


# --------------------------------------------------------------------------- helpers

def link_files(dest: Path, src: Path = SHARED_MNIST, skip=()) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for n in NAMES:
        if n not in skip:
            os.symlink(src / (n + ".gz"), dest / (n + ".gz"))
    return dest


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No default location holds the dataset: shared copy, /usr/share, env and cache all moved."""
    monkeypatch.setattr(mf, "PROJECT_ROOT", tmp_path / "proj" / "root")
    monkeypatch.setattr(mf, "SYSTEM_DATASET_DIRS", (tmp_path / "sys",))
    monkeypatch.delenv("CNNVIS_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    return tmp_path


@pytest.fixture
def serve():
    """serve(directory) -> (base_url, list of requested paths); servers stop at teardown."""
    servers = []

    def start(directory: Path):
        requests: list[str] = []

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                requests.append(self.path)
                super().do_GET()

        srv = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(directory)))
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/", requests

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/"


def check_mnist(d):
    assert d.train_images.shape == (60000, 28, 28) and d.train_images.dtype == np.uint8
    assert d.test_images.shape == (10000, 28, 28) and d.test_images.dtype == np.uint8
    assert d.train_labels.dtype == np.int64 and d.test_labels.dtype == np.int64
    assert d.train_labels[0] == 5 and d.test_labels[0] == 7
    assert np.bincount(d.train_labels).tolist() == MNIST_TRAIN_COUNTS


# --------------------------------------------------------------------------- specs and loading

@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_spec_hashes_match_shared_sums(name):
    spec = SPECS[name]
    sums = dict(line.split()[::-1] for line in (SHARED / spec.dirname / "SHA256SUMS.raw").read_text().splitlines()
                if line.strip())
    assert {spec.files[k]: spec.sha256[k] for k in FILE_KEYS} == sums
    assert len(spec.classes) == 10


def test_load_mnist_from_shared():
    d = load_idx_dataset("mnist", data_dir=SHARED_MNIST, download=False)
    check_mnist(d)


def test_load_fashion_mnist_default_search(monkeypatch):
    monkeypatch.delenv("CNNVIS_DATA_DIR", raising=False)
    spec = SPECS["fashion_mnist"]
    assert spec.classes[0] == "T-shirt/top" and spec.classes[9] == "Ankle boot"
    found = find_dataset_files(spec)
    assert found is not None and found["train_images"].parent.resolve() == (SHARED / "fashion-mnist").resolve()
    d = load_idx_dataset("fashion-mnist", download=False)
    assert d.train_images.shape == (60000, 28, 28) and d.test_images.shape == (10000, 28, 28)
    # Fashion-MNIST is balanced; the first training item is an ankle boot.
    assert np.bincount(d.train_labels).tolist() == [6000] * 10
    assert np.bincount(d.test_labels).tolist() == [1000] * 10
    assert d.train_labels[0] == 9


def test_unknown_name():
    with pytest.raises(ValueError, match="fashion_mnist") as info:
        load_idx_dataset("cifar10")
    assert "mnist" in str(info.value) and "cifar10" in str(info.value)


# --------------------------------------------------------------------------- search order

def test_candidate_order(monkeypatch, tmp_path):
    monkeypatch.setattr(mf, "PROJECT_ROOT", tmp_path / "proj")
    monkeypatch.setattr(mf, "SYSTEM_DATASET_DIRS", (Path("/usr/share/datasets"),))
    monkeypatch.setenv("CNNVIS_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    got = candidate_dirs(MNIST, data_dir=tmp_path / "explicit")
    assert got == [
        tmp_path / "explicit", tmp_path / "explicit" / "mnist",
        tmp_path / "env" / "mnist", tmp_path / "env",
        tmp_path / "shared" / "datasets" / "mnist",
        Path("/usr/share/datasets/mnist"),
        tmp_path / "xdg" / "cnnvis" / "datasets" / "mnist",
    ]
    assert candidate_dirs(MNIST, cache_dir=tmp_path / "c")[-1] == tmp_path / "c"
    monkeypatch.delenv("CNNVIS_DATA_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert candidate_dirs(MNIST)[-1] == Path.home() / ".cache" / "cnnvis" / "datasets" / "mnist"


def test_env_var_beats_shared_copy(monkeypatch, tmp_path):
    # The real shared copy is still findable; the env dir must win over it.
    link_files(tmp_path / "env" / "mnist")
    monkeypatch.setenv("CNNVIS_DATA_DIR", str(tmp_path / "env"))
    assert find_dataset_files(MNIST)["train_labels"] == tmp_path / "env" / "mnist" / "train-labels-idx1-ubyte.gz"
    # the env var may also point straight at the files
    monkeypatch.setenv("CNNVIS_DATA_DIR", str(tmp_path / "env" / "mnist"))
    assert find_dataset_files(MNIST)["test_images"].parent == tmp_path / "env" / "mnist"
    # an incomplete env dir is skipped
    link_files(tmp_path / "partial", skip=NAMES[:1])
    monkeypatch.setenv("CNNVIS_DATA_DIR", str(tmp_path / "partial"))
    assert find_dataset_files(MNIST)["test_images"].parent.resolve() == SHARED_MNIST.resolve()


def test_explicit_data_dir_beats_env_and_raw_beats_gz(monkeypatch, tmp_path):
    link_files(tmp_path / "env")
    monkeypatch.setenv("CNNVIS_DATA_DIR", str(tmp_path / "env"))
    explicit = link_files(tmp_path / "explicit" / "mnist")
    raw = explicit / "t10k-labels-idx1-ubyte"
    raw.write_bytes(gzip.decompress((SHARED_MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    found = find_dataset_files(MNIST, data_dir=tmp_path / "explicit")  # parent of mnist/ works too
    assert found["train_images"].parent == explicit and found["test_labels"] == raw


def test_explicit_data_dir_without_files_is_an_error(isolated, serve, monkeypatch):
    # Even with the files in CNNVIS_DATA_DIR and a working mirror, an explicit empty dir fails at once.
    link_files(isolated / "env")
    monkeypatch.setenv("CNNVIS_DATA_DIR", str(isolated / "env"))
    url, requests = serve(SHARED_MNIST)
    empty = isolated / "empty"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        load_idx_dataset("mnist", data_dir=empty, mirrors=[url], cache_dir=isolated / "cache")
    msg = str(info.value)
    assert str(empty) in msg and "data.data_dir" in msg and "train-images-idx3-ubyte" in msg
    assert "dataset.data_dir" not in msg  # the key Hydra accepts is data.data_dir (dataset= is the group)
    assert requests == [] and not (isolated / "cache").exists()


def test_download_false_does_not_touch_network(isolated, serve):
    url, requests = serve(SHARED_MNIST)
    with pytest.raises(DatasetNotFoundError) as info:
        load_idx_dataset("mnist", download=False, mirrors=[url])
    assert requests == []
    assert "download=False" in str(info.value)
    assert info.value.searched == candidate_dirs(MNIST)


# --------------------------------------------------------------------------- corrupt files

def test_flipped_byte_is_detected(monkeypatch, tmp_path):
    d = link_files(tmp_path / "d", skip=["train-labels-idx1-ubyte"])
    raw = bytearray(gzip.decompress((SHARED_MNIST / "train-labels-idx1-ubyte.gz").read_bytes()))
    raw[8] ^= 1  # first label 5 -> 4: still a valid IDX file, only the hash can tell
    bad = d / "train-labels-idx1-ubyte"
    bad.write_bytes(bytes(raw))
    with pytest.raises(DatasetCorruptError) as info:
        load_idx_dataset("mnist", data_dir=d, download=False)
    msg = str(info.value)
    assert str(bad) in msg and MNIST.sha256["train_labels"] in msg and "sha256" in msg
    assert "Delete it" in msg and info.value.path == bad
    # verify=False reads the damaged file as it is
    assert load_idx_dataset("mnist", data_dir=d, verify=False).train_labels[0] == 4


def test_damaged_gzip_is_corrupt_not_missing(tmp_path):
    d = link_files(tmp_path / "d", skip=["t10k-labels-idx1-ubyte"])
    gz = bytearray((SHARED_MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes())
    gz[len(gz) // 2] ^= 0xFF
    bad = d / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(bytes(gz))
    with pytest.raises(DatasetCorruptError) as info:
        load_idx_dataset("mnist", data_dir=d)
    assert str(bad) in str(info.value)


def _tiny_dataset(d: Path, n_train=5, n_test=3, train_labels=None):
    d.mkdir(parents=True, exist_ok=True)
    write_idx(d / "train-images-idx3-ubyte", np.zeros((n_train, 28, 28), np.uint8))
    write_idx(d / "train-labels-idx1-ubyte",
              np.arange(n_train, dtype=np.uint8) if train_labels is None else train_labels)
    write_idx(d / "t10k-images-idx3-ubyte", np.zeros((n_test, 28, 28), np.uint8))
    write_idx(d / "t10k-labels-idx1-ubyte", np.arange(n_test, dtype=np.uint8))
    return d


def test_consistency_checks_without_verify(tmp_path):
    d = _tiny_dataset(tmp_path / "ok")
    arr = load_idx_dataset("mnist", data_dir=d, verify=False)
    assert arr.train_images.shape == (5, 28, 28) and arr.train_labels.tolist() == [0, 1, 2, 3, 4]
    d = _tiny_dataset(tmp_path / "count", train_labels=np.zeros(4, np.uint8))
    with pytest.raises(DatasetCorruptError, match="4 labels but 5 images"):
        load_idx_dataset("mnist", data_dir=d, verify=False)
    d = _tiny_dataset(tmp_path / "range", train_labels=np.array([0, 1, 10, 2, 3], np.uint8))
    with pytest.raises(DatasetCorruptError, match="label 10 out of range"):
        load_idx_dataset("mnist", data_dir=d, verify=False)
    d = _tiny_dataset(tmp_path / "shape")
    write_idx(d / "t10k-images-idx3-ubyte", np.zeros((3, 28, 27), np.uint8))
    with pytest.raises(DatasetCorruptError, match=r"expected uint8 \[N, 28, 28\]"):
        load_idx_dataset("mnist", data_dir=d, verify=False)
    # with verify=True the hand-made files fail on their hashes
    with pytest.raises(DatasetCorruptError, match="sha256"):
        load_idx_dataset("mnist", data_dir=_tiny_dataset(tmp_path / "ok2"))


# --------------------------------------------------------------------------- download

def test_download_verify_load_and_reuse(isolated, serve):
    url, requests = serve(SHARED_MNIST)
    cache = isolated / "cache"
    d = load_idx_dataset("mnist", mirrors=[closed_port_url(), url], cache_dir=cache, timeout=5)
    check_mnist(d)
    assert sorted(p.name for p in cache.iterdir()) == sorted(n + ".gz" for n in NAMES)
    assert sorted(requests) == sorted("/" + n + ".gz" for n in NAMES)
    # second call: found in the cache, no request
    load_idx_dataset("mnist", mirrors=[url], cache_dir=cache)
    assert len(requests) == 4


def test_download_into_default_user_cache(isolated, serve):
    url, _ = serve(SHARED_MNIST)
    d = load_idx_dataset("mnist", mirrors=[url.rstrip("/")])  # a mirror without trailing slash works
    assert d.test_labels[0] == 7
    cache = isolated / "xdg" / "cnnvis" / "datasets" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(n + ".gz" for n in NAMES)


def test_corrupt_mirror_leaves_nothing(isolated, serve, tmp_path):
    served = link_files(tmp_path / "served", skip=["train-images-idx3-ubyte"])
    # valid gzip whose content has one extra byte: only the sha256 check can catch it
    good = (SHARED_MNIST / "train-images-idx3-ubyte.gz").read_bytes()
    (served / "train-images-idx3-ubyte.gz").write_bytes(good + gzip.compress(b"\x00"))
    url, requests = serve(served)
    cache = isolated / "cache"
    with pytest.raises(DatasetNotFoundError) as info:
        load_idx_dataset("mnist", mirrors=[url], cache_dir=cache)
    msg = str(info.value)
    assert "sha256 mismatch" in msg and url + "train-images-idx3-ubyte.gz" in msg
    assert MNIST.sha256["train_images"] in msg
    assert list(cache.iterdir()) == []  # neither the bad file nor a temp file
    assert requests == ["/train-images-idx3-ubyte.gz"]  # the bad mirror was abandoned


def test_bad_file_falls_back_to_next_mirror_and_resumes(isolated, serve, tmp_path):
    served = link_files(tmp_path / "served", skip=["train-labels-idx1-ubyte"])
    raw = bytearray(gzip.decompress((SHARED_MNIST / "train-labels-idx1-ubyte.gz").read_bytes()))
    raw[8] ^= 1
    (served / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    bad_url, bad_requests = serve(served)
    good_url, good_requests = serve(SHARED_MNIST)
    d = load_idx_dataset("mnist", mirrors=[bad_url, good_url], cache_dir=isolated / "cache")
    check_mnist(d)
    assert bad_requests == ["/train-images-idx3-ubyte.gz", "/train-labels-idx1-ubyte.gz"]
    # train-images from the first mirror was verified and kept: not fetched again
    assert "/train-images-idx3-ubyte.gz" not in good_requests and len(good_requests) == 3


def test_unreachable_mirror_reports_everything(isolated):
    bad = closed_port_url()
    cache = isolated / "cache"
    with pytest.raises(DatasetNotFoundError) as info:
        load_idx_dataset("mnist", mirrors=[bad], cache_dir=cache, timeout=5)
    err = info.value
    assert isinstance(err, FileNotFoundError)
    msg = str(err)
    searched = candidate_dirs(MNIST, cache_dir=cache)
    assert err.searched == searched and len(searched) >= 3
    positions = [msg.index(str(p) + ":") for p in searched]
    assert positions == sorted(positions)  # listed in search order
    assert "data.data_dir=" in msg and "dataset.data_dir" not in msg and "CNNVIS_DATA_DIR" in msg
    for n in NAMES:
        assert n in msg
    assert bad + "train-images-idx3-ubyte.gz" in msg and "cannot connect" in msg
    assert err.failures and err.failures[0][0].startswith(bad)
    assert list(cache.iterdir()) == []
    assert str(pickle.loads(pickle.dumps(err))) == msg


def test_http_404_is_reported(isolated, serve, tmp_path):
    (tmp_path / "nothing").mkdir()
    url, _ = serve(tmp_path / "nothing")
    with pytest.raises(DatasetNotFoundError, match="HTTP error 404"):
        load_idx_dataset("fashion_mnist", mirrors=[url], cache_dir=isolated / "cache")
