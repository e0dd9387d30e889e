"""vae_tutorial.training.data: loading, binarisation, subsets, where files come from, and every failure path.

Nothing here touches the real user cache: every test gets its own ``$XDG_CACHE_HOME``, no
``$VAE_TUTORIAL_DATA`` and an empty system folder (the Debian test puts the real one back).
Downloads are served by an HTTP server on 127.0.0.1 that the tests start and stop.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

import vae_tutorial
from vae_tutorial.errors import ArgumentError
from vae_tutorial import data
from vae_tutorial.training.data import DatasetError, DatasetNotFoundError, load_dataset

REAL_SYSTEM_DIRS = data.SYSTEM_DATA_DIRS
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
TRAIN_IMAGES, TRAIN_LABELS = data.DATASETS["mnist"].files["train"]


pytestmark = pytest.mark.usefixtures("isolated_data")  # tests/conftest.py


def cache_of(name: str) -> Path:
    return data.cache_dir(name)


def files_under(folder: Path) -> list[Path]:
    # The provenance stamp (hashes of the files beside it) is expected; anything else is a stray.
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != data.STAMP_FILE) if folder.exists() else []


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file: magic 00 00 08 <ndim>, big-endian sizes, the bytes."""
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def tiny_split(n: int = 6, marker: int = 3) -> dict[str, bytes]:
    """Gzipped train files of ``n`` 28×28 images; every label is ``marker`` so a test can tell copies apart."""
    rng = np.random.default_rng(marker)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # the range ends are present
    labels = np.full(n, marker, dtype=np.uint8)
    return {TRAIN_IMAGES: gzip.compress(idx_bytes(images)), TRAIN_LABELS: gzip.compress(idx_bytes(labels))}


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


def sha256s(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}


# ----------------------------------------------------------------------------- digits and the data set class

def test_digits_shapes_range_labels():
    train, test = load_dataset("digits"), load_dataset("digits", "test")
    assert train.images.shape == (1500, 1, 8, 8) and test.images.shape == (297, 1, 8, 8)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert train.labels.shape == (1500,)
    for ds in (train, test):
        assert 0.0 <= ds.images.min() and ds.images.max() == 1.0
        assert sorted(ds.labels.unique().tolist()) == list(range(10))
    assert train.classes == [str(d) for d in range(10)]
    assert (train.name, train.split, train.binarize) == ("digits", "train", None)
    # Fixed split: the same images every time, and train and test together are scikit-learn's set.
    assert torch.equal(load_dataset("digits").images, train.images)
    from sklearn.datasets import load_digits
    everything = torch.tensor(load_digits().images, dtype=torch.float32) / 16
    assert torch.equal(torch.cat([train.images, test.images]).squeeze(1), everything)


def test_getitem_len_repr_and_dataloader():
    ds = load_dataset("digits", "test")
    x, y = ds[5]
    assert x.shape == (1, 8, 8) and isinstance(y, int) and y == int(ds.labels[5])
    assert torch.equal(x, ds.images[5])
    assert len(ds) == 297
    text = repr(ds)
    assert "digits" in text and "test" in text and "297" in text
    xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert xb.shape == (4, 1, 8, 8) and yb.dtype == torch.int64
    assert vae_tutorial.load_dataset is load_dataset


def test_subset_first_n_indices_and_mask():
    ds = load_dataset("digits", binarize="dynamic")
    first = ds.subset(10)
    assert len(first) == 10 and torch.equal(first.images, ds.images[:10])
    assert (first.name, first.split, first.binarize, first.classes) == ("digits", "train", "dynamic", ds.classes)
    picked = ds.subset([7, 2, 2])
    assert torch.equal(picked.labels, ds.labels[[7, 2, 2]])
    assert torch.equal(ds.subset(torch.tensor([7, 2, 2])).images, picked.images)
    assert torch.equal(ds.subset(range(3)).images, ds.images[:3])
    mask = ds.labels == 4
    assert torch.equal(ds.subset(mask).labels, ds.labels[mask])


@pytest.mark.parametrize("bad", [0, -1, 1501])
def test_subset_size_out_of_range(bad):
    with pytest.raises(ValueError, match="between 1 and 1500"):
        load_dataset("digits").subset(bad)


def test_subset_bad_indices():
    ds = load_dataset("digits", "test")
    with pytest.raises(ArgumentError, match=r"\[0, 297\)"):
        ds.subset([0, 297])
    with pytest.raises(ValueError, match="integer indices"):
        ds.subset([0.5, 1.5])
    with pytest.raises(ValueError, match="integer indices"):
        ds.subset([])


def test_static_binarization_is_fixed_and_unbiased():
    grey = load_dataset("digits")
    a, b = load_dataset("digits", binarize="static"), load_dataset("digits", binarize="static")
    assert set(a.images.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(a.images, b.images)  # one fixed sample, not a fresh one per call
    assert torch.equal(a.images[grey.images == 0], torch.zeros_like(a.images[grey.images == 0]))
    assert torch.equal(a.images[grey.images == 1], torch.ones_like(a.images[grey.images == 1]))
    # E[x] = p: 96 000 pixels, so the means agree to within a few standard errors (~0.0016).
    assert abs(a.images.mean().item() - grey.images.mean().item()) < 0.01
    x, _ = a[0]
    assert torch.equal(x, a.images[0])  # static sets are not resampled on access
    assert a.subset(5).binarize == "static"


def test_dynamic_binarization_keeps_grey_levels_and_resamples():
    grey = load_dataset("digits")
    dyn = load_dataset("digits", binarize="dynamic")
    assert dyn.binarize == "dynamic" and torch.equal(dyn.images, grey.images)
    torch.manual_seed(0)
    draws = torch.stack([dyn[0][0] for _ in range(200)])
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    grey_pixels = (grey.images[0] > 0) & (grey.images[0] < 1)
    assert grey_pixels.any()
    assert not torch.equal(draws[0], draws[1])  # fresh sample per access
    # The frequency of ones estimates p: 200 draws, so within ±0.15 of it (> 4 standard errors).
    assert torch.allclose(draws.mean(0), grey.images[0], atol=0.15)


def test_bad_binarize_lists_the_options():
    with pytest.raises(ValueError, match="'static'.*'dynamic'"):
        load_dataset("digits", binarize="yes")


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match="unknown data set 'cifar'") as err:
        load_dataset("cifar")
    for name in ("fashion-mnist", "mnist", "kmnist", "digits"):
        assert repr(name) in str(err.value)


def test_name_is_forgiving_about_case_and_underscores():
    assert load_dataset("DIGITS").name == "digits"


@pytest.mark.parametrize("split", ["valid", "Train", ""])
def test_bad_split(split):
    with pytest.raises(ValueError, match="'train', 'test'"):
        load_dataset("digits", split)


def test_registry_is_complete():
    for name, info in data.DATASETS.items():
        assert info.name == name and len(info.classes) == 10
        for split in info.files:
            for f in info.files[split]:
                assert len(info.sha256[f]) == 64 and int(info.sha256[f], 16) >= 0
                assert info.sizes[f] > 0  # every download is capped at the file's known size
    assert data.DATASETS["fashion-mnist"].classes[0] == "T-shirt/top"


# ----------------------------------------------------------------------------- the Debian copy of Fashion-MNIST

@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(),
                    reason=f"{DEBIAN_FASHION} missing: install the Debian package dataset-fashion-mnist (CI does)")
def test_fashion_mnist_from_debian_folder(monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_DATA_DIRS", REAL_SYSTEM_DIRS)
    ds = load_dataset("fashion-mnist", "test", download=False)
    assert ds.images.shape == (10000, 1, 28, 28) and ds.images.dtype == torch.float32
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    assert torch.equal(ds.labels.bincount(), torch.full((10,), 1000))
    assert ds.classes[:2] == ["T-shirt/top", "Trouser"] and len(ds.classes) == 10
    # Grey levels are k/255: the decoding kept all 256 of them, not a rounded few.
    assert ds.images[:1000].unique().numel() == 256
    assert files_under(cache_of("fashion-mnist")) == []  # read in place, nothing copied


# ----------------------------------------------------------------------------- where local files come from

def test_root_argument_folder_itself_and_uncompressed(tmp_path, monkeypatch):
    files = tiny_split(marker=3)
    raw = {name.removesuffix(".gz"): gzip.decompress(content) for name, content in files.items()}
    # A bare folder is used only for files with the data set's published hashes (here: made up).
    info = data.DATASETS["mnist"]
    monkeypatch.setitem(data.DATASETS, "mnist", dataclasses.replace(info, sha256={**info.sha256, **sha256s(files)}))
    monkeypatch.setitem(data.CONTENT_SHA256, "mnist", {name + ".gz": sha for name, sha in sha256s(raw).items()})
    write_files(tmp_path / "plain", files)
    ds = load_dataset("mnist", root=tmp_path / "plain", download=False)
    assert ds.images.shape == (6, 1, 28, 28) and ds.labels.tolist() == [3] * 6
    assert ds.images.min() == 0 and ds.images.max() == 1
    # The same files uncompressed (as torchvision's raw/ folder holds them) give the same tensors.
    write_files(tmp_path / "raw", raw)
    same = load_dataset("mnist", root=tmp_path / "raw", download=False)
    assert torch.equal(same.images, ds.images)


def test_precedence_root_env_cache_system(tmp_path, monkeypatch):
    write_files(tmp_path / "system" / "mnist", tiny_split(marker=4))
    assert load_dataset("mnist", download=False).labels[0] == 4
    write_files(cache_of("mnist"), tiny_split(marker=5))
    assert load_dataset("mnist", download=False).labels[0] == 5
    write_files(tmp_path / "env" / "mnist", tiny_split(marker=6))  # subfolder named after the set
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "env"))
    assert load_dataset("mnist", download=False).labels[0] == 6
    write_files(tmp_path / "arg" / "MNIST" / "raw", tiny_split(marker=7))  # torchvision's layout
    assert load_dataset("mnist", root=tmp_path / "arg", download=False).labels[0] == 7


# ----------------------------------------------------------------------------- broken local files

def test_corrupt_gzip_names_the_file(tmp_path):
    files = tiny_split()
    files[TRAIN_IMAGES] = b"this is not a gzip file" * 10
    write_files(tmp_path / "mnist", files)
    with pytest.raises(DatasetError, match="corrupt") as err:
        load_dataset("mnist", root=tmp_path, download=False)
    assert str(tmp_path / "mnist" / TRAIN_IMAGES) in str(err.value) and "Delete it" in str(err.value)


def test_truncated_gzip_stream_names_the_file(tmp_path):
    files = tiny_split()
    files[TRAIN_IMAGES] = files[TRAIN_IMAGES][: len(files[TRAIN_IMAGES]) // 2]
    write_files(tmp_path / "mnist", files)
    with pytest.raises(DatasetError, match="cannot be decompressed") as err:
        load_dataset("mnist", root=tmp_path, download=False)
    assert str(tmp_path / "mnist" / TRAIN_IMAGES) in str(err.value)


def test_truncated_idx_names_the_file(tmp_path):
    files = tiny_split()
    whole = gzip.decompress(files[TRAIN_IMAGES])
    files[TRAIN_IMAGES] = gzip.compress(whole[:-100])  # a valid gzip of a short IDX file
    write_files(tmp_path / "mnist", files)
    with pytest.raises(DatasetError, match=r"promises 4720 bytes .* holds 4620") as err:
        load_dataset("mnist", root=tmp_path, download=False)
    assert str(tmp_path / "mnist" / TRAIN_IMAGES) in str(err.value)


def test_bad_magic_and_wrong_rank(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x0d\x03" + bytes(12)))  # float IDX, not unsigned bytes
    with pytest.raises(DatasetError, match="magic number"):
        data.read_idx(path)
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(DatasetError, match="1-D array where 3-D was expected"):
        data.read_idx(path, ndim=3)
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8)) + b"extra"))
    with pytest.raises(DatasetError, match="promises 12 bytes .* holds 17"):
        data.read_idx(path)
    path.write_bytes(gzip.compress(idx_bytes(np.arange(4, dtype=np.uint8))))
    assert data.read_idx(path, ndim=1).tolist() == [0, 1, 2, 3]


def test_images_and_labels_of_different_lengths(tmp_path):
    files = tiny_split(n=6)
    files[TRAIN_LABELS] = tiny_split(n=5)[TRAIN_LABELS]
    write_files(tmp_path / "mnist", files)
    with pytest.raises(DatasetError, match="6 images but .* 5 labels"):
        load_dataset("mnist", root=tmp_path, download=False)


def test_corrupt_file_in_system_folder_says_reinstall(tmp_path):
    files = tiny_split()
    files[TRAIN_IMAGES] = b"junk"
    write_files(tmp_path / "system" / "fashion-mnist", files)
    with pytest.raises(DatasetError, match="apt install --reinstall dataset-fashion-mnist"):
        load_dataset("fashion-mnist", download=False)


# ----------------------------------------------------------------------------- downloads from a local server

class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.routes[path] = (body, announced length)``; anything else is a 404."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.server.requests.append(self.path)
        if self.path not in self.server.routes:
            self.send_error(404)
            return
        body, announced = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        self.wfile.write(body)  # HTTP/1.0: the connection closes after this, short or not

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)  # listening once constructed
    srv.routes, srv.requests = {}, []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()  # returns once serve_forever has stopped
    srv.server_close()
    thread.join()


def serve(srv, prefix: str, files: dict[str, bytes], extra: int = 0, cut: int = 0) -> str:
    """Serve ``files`` under ``prefix``, announcing ``extra`` bytes more than each has and
    sending ``cut`` bytes fewer."""
    for name, content in files.items():
        srv.routes[f"{prefix}/{name}"] = (content[:len(content) - cut], len(content) + extra)
    return f"{srv.url}{prefix}/"


@pytest.fixture
def tiny_mnist(monkeypatch):
    """The real "mnist" entry with the hashes and sizes of the test's tiny files; returns those files."""
    files = tiny_split()
    info = data.DATASETS["mnist"]
    monkeypatch.setitem(data.DATASETS, "mnist", dataclasses.replace(
        info, sha256={**info.sha256, **sha256s(files)}, sizes={**info.sizes, **{n: len(c) for n, c in files.items()}},
        mirrors=()))
    return files


def test_download_verifies_and_caches(server, tiny_mnist):
    base = serve(server, "/m", tiny_mnist)
    ds = load_dataset("mnist", mirrors=[base])
    assert ds.images.shape == (6, 1, 28, 28) and ds.labels.tolist() == [3] * 6
    cache = cache_of("mnist")
    assert files_under(cache) == [cache / TRAIN_IMAGES, cache / TRAIN_LABELS]  # no temporary files left
    assert (cache / TRAIN_IMAGES).read_bytes() == tiny_mnist[TRAIN_IMAGES]
    # The cached copy is used from then on: no further requests.
    before = len(server.requests)
    again = load_dataset("mnist", download=False)
    assert torch.equal(again.images, ds.images) and len(server.requests) == before


def test_mirrors_from_module_constant_and_env(server, tiny_mnist, dead_url, monkeypatch, tmp_path):
    base = serve(server, "/m", tiny_mnist)
    monkeypatch.setenv(data.MIRRORS_ENV, f"{dead_url}, {base}")
    # With a root, the download lands in root/<name>, not in the cache.
    assert len(load_dataset("mnist", root=tmp_path / "mine")) == 6
    assert files_under(tmp_path / "mine") == [tmp_path / "mine" / "mnist" / n for n in (TRAIN_IMAGES, TRAIN_LABELS)]
    assert files_under(cache_of("mnist")) == []
    monkeypatch.delenv(data.MIRRORS_ENV)
    monkeypatch.setitem(data.DATASETS, "mnist", dataclasses.replace(data.DATASETS["mnist"], mirrors=(base,)))
    assert len(load_dataset("mnist")) == 6
    assert len(files_under(cache_of("mnist"))) == 2


def test_first_mirror_404_then_second(server, tiny_mnist):
    good = serve(server, "/good", tiny_mnist)
    ds = load_dataset("mnist", mirrors=[f"{server.url}/missing/", good])
    assert len(ds) == 6
    assert server.requests[:2] == [f"/missing/{TRAIN_IMAGES}", f"/good/{TRAIN_IMAGES}"]


def test_wrong_hash_keeps_nothing(server, tiny_mnist):
    tampered = dict(tiny_mnist)
    tampered[TRAIN_IMAGES] = gzip.compress(idx_bytes(np.zeros((6, 28, 28), np.uint8)))
    base = serve(server, "/m", tampered)
    with pytest.raises(DatasetNotFoundError, match="SHA-256 mismatch") as err:
        load_dataset("mnist", mirrors=[base])
    assert hashlib.sha256(tiny_mnist[TRAIN_IMAGES]).hexdigest() in str(err.value)
    assert files_under(cache_of("mnist")) == []


def test_truncated_body_keeps_nothing(server, tiny_mnist):
    base = serve(server, "/m", tiny_mnist, cut=100)  # announces 100 bytes it never sends
    with pytest.raises(DatasetNotFoundError, match="interrupted") as err:
        load_dataset("mnist", mirrors=[base])
    size = len(tiny_mnist[TRAIN_IMAGES])
    assert f"got {size - 100} of {size} bytes" in str(err.value)
    assert not cache_of("mnist").exists()


def test_a_mirror_announcing_more_than_the_known_size_is_refused(server, tiny_mnist):
    base = serve(server, "/m", tiny_mnist, extra=1000)
    size = len(tiny_mnist[TRAIN_IMAGES])
    with pytest.raises(DatasetNotFoundError, match=f"announces {size + 1000:,} bytes, more than the file's "
                                                   f"known size of {size:,} bytes"):
        load_dataset("mnist", mirrors=[base])
    assert not cache_of("mnist").exists()


# A hostile mirror (red-team N05, and the size cap of issue 21): it paces itself with an Event, so
# the test ends as soon as the client hangs up, and a client that never hangs up fails the test
# (the headers or the stream then end, after LIMIT bytes) instead of hanging it.

class _Hostile(BaseHTTPRequestHandler):
    """``/slowhead/<file>``: the status line and then header bytes, one every 20 ms, without end;
    ``/oversized/<file>``: the right file, then more bytes without end (no Content-Length)."""

    LIMIT = 2000  # bytes: 40 s of slow headers, 2000 bytes past the end of the file

    def do_GET(self):  # noqa: N802 (http.server's naming)
        srv, name = self.server, self.path.rsplit("/", 1)[-1]
        try:
            if self.path.startswith("/slowhead/"):
                for byte in (b"HTTP/1.0 200 OK\r\n" + b"X-Pad: " + b"a" * self.LIMIT)[:self.LIMIT]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    if srv.stop.wait(0.02):
                        return
                srv.finished.set()  # the client waited for all of it: the deadline did not hold
                self.wfile.write(b"\r\n\r\n" + srv.files[name])
            else:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(srv.files[name])
                self.wfile.flush()
                for _ in range(self.LIMIT):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    if srv.stop.wait(0.001):
                        return
                srv.finished.set()
        except (BrokenPipeError, ConnectionResetError):
            srv.hung_up.set()

    def log_message(self, *args):
        pass


@pytest.fixture
def hostile(tiny_mnist):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    srv.daemon_threads = True
    srv.files, srv.stop, srv.hung_up, srv.finished = tiny_mnist, threading.Event(), threading.Event(), threading.Event()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.stop.set()  # ends a handler still writing
    srv.shutdown()
    srv.server_close()
    thread.join()


def test_slow_headers_do_not_defeat_the_deadline(hostile, monkeypatch):  # N05
    monkeypatch.setenv(data.DEADLINE_ENV, "0.5")
    with pytest.raises(DatasetNotFoundError, match=r"too slow: no complete response \(status line and headers\) "
                                                   r"past the 0\.5 s deadline") as err:
        load_dataset("mnist", mirrors=[f"{hostile.url}/slowhead/"])
    assert data.DEADLINE_ENV in str(err.value)
    assert not hostile.finished.is_set()  # the client gave up while the headers were still coming
    assert not cache_of("mnist").exists()


class _CountingOS:
    """``os`` for vae_tutorial.training.data, counting the bytes written to every file it opens."""

    def __init__(self):
        self.opened, self.writes = 0, []

    def __getattr__(self, name):
        return getattr(os, name)

    def fdopen(self, fd, mode):
        real, writes = os.fdopen(fd, mode), self.writes
        self.opened += 1

        class Counted:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                real.close()

            def write(self, chunk):
                writes.append(len(chunk))
                return real.write(chunk)

            def __getattr__(self, name):
                return getattr(real, name)

        return Counted()


def test_a_mirror_sending_more_than_the_known_size_is_refused_without_writing_past_it(
        hostile, tiny_mnist, monkeypatch):
    cache = cache_of("mnist")
    write_files(cache, {TRAIN_LABELS: tiny_mnist[TRAIN_LABELS]})  # a good copy already in the cache
    counting = _CountingOS()
    monkeypatch.setattr(data, "os", counting)
    size = len(tiny_mnist[TRAIN_IMAGES])
    with pytest.raises(DatasetNotFoundError, match=f"sent more than the file's known size of {size:,} bytes"):
        load_dataset("mnist", mirrors=[f"{hostile.url}/oversized/"])
    assert counting.opened == 1 and sum(counting.writes) <= size  # nothing past the known size reached the disk
    assert not hostile.finished.is_set()
    assert files_under(cache) == [cache / TRAIN_LABELS]  # no partial images file; the good copy is untouched
    assert (cache / TRAIN_LABELS).read_bytes() == tiny_mnist[TRAIN_LABELS]


@pytest.fixture
def dead_url():
    """A port that is bound but not listening: connecting is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    sock.close()


def assert_says_how_to_fix(message: str):
    assert data.DATA_ENV in message
    assert "dataset-fashion-mnist" in message and "/usr/share/datasets/fashion-mnist" in message
    assert str(cache_of("fashion-mnist")) in message
    assert "train-images-idx3-ubyte.gz" in message


def test_offline_error_says_where_to_put_files(dead_url):
    with pytest.raises(DatasetNotFoundError, match="every mirror failed") as err:
        load_dataset("fashion-mnist", mirrors=[dead_url, dead_url + "again/"])
    assert "unreachable" in str(err.value)
    assert_says_how_to_fix(str(err.value))
    assert not cache_of("fashion-mnist").exists()


def test_download_false_error_says_where_to_put_files(server):
    with pytest.raises(DatasetNotFoundError, match="download=False") as err:
        load_dataset("fashion-mnist", download=False, mirrors=[server.url + "/"])
    assert_says_how_to_fix(str(err.value))
    assert server.requests == []  # download=False really means no network


def test_sine_waves_shapes_factors_and_reproducibility():
    from vae_tutorial.training.data import sine_waves

    a = sine_waves(200, length=32, noise=0.0, seed=3)
    x, f = a.tensors
    assert x.shape == (200, 32) and f.shape == (200, 3)
    # noise-free sequences are exactly the sine of their factors
    t = torch.arange(32) / 32
    rebuilt = f[:, :1] * torch.sin(2 * math.pi * f[:, 1:2] * t + f[:, 2:3])
    assert torch.allclose(x, rebuilt, atol=1e-5)
    assert ((f[:, 0] >= 0.5) & (f[:, 0] <= 1.5)).all() and ((f[:, 1] >= 1) & (f[:, 1] <= 3)).all()
    assert torch.equal(sine_waves(200, 32, 0.0, seed=3).tensors[0], x)
    noisy = sine_waves(2000, length=32, noise=0.2, seed=3).tensors[0]
    clean = sine_waves(2000, length=32, noise=0.0, seed=3).tensors[0]
    assert abs((noisy - clean).std().item() - 0.2) < 0.01
    with pytest.raises(ValueError, match="noise"):
        sine_waves(10, noise=-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_binarize_is_bernoulli_with_the_same_stream(dtype):
    p = torch.rand(37, 1, 5, 5, generator=torch.Generator().manual_seed(1), dtype=dtype)
    g_fast, g_ref = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    x = data.binarize(p, g_fast)
    assert x.dtype == dtype and x.shape == p.shape
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    # same numbers as torch.bernoulli on the CPU, and the generators stay in step
    assert torch.equal(x, torch.bernoulli(p, generator=g_ref))
    assert torch.equal(g_fast.get_state(), g_ref.get_state())


def test_binarize_frequencies_match_the_grey_levels():
    p = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0]).expand(200_000, 5).contiguous()
    freq = data.binarize(p, torch.Generator().manual_seed(0)).mean(0)
    assert freq[0] == 0 and freq[-1] == 1
    assert torch.allclose(freq, p[0], atol=5e-3)  # 5e-3 is > 4 standard errors at n = 200 000
