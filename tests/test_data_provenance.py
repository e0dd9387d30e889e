"""Data provenance and download faults (issue 11): a data set's files are what they claim to be.

* ``$VAE_TUTORIAL_DATA`` is searched per data set; a bare folder answers only with hash-matching files;
* hashes are checked once and remembered in a stamp beside the files;
* files with no published hash pass a shape and count check;
* IDX headers that overflow, train/test files of different image sizes: errors naming the file;
* a mirror that trickles bytes fails within a deadline, with the rate shown;
* ``.part`` files of killed downloads are cleaned up.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from vae_tutorial import data
from vae_tutorial.training.data import DatasetError, load_dataset

TRAIN_IMAGES, TRAIN_LABELS = data.DATASETS["mnist"].files["train"]
TEST_IMAGES, TEST_LABELS = data.DATASETS["mnist"].files["test"]
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


pytestmark = pytest.mark.usefixtures("isolated_data")  # tests/conftest.py


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def split_files(n: int = 6, marker: int = 3, size: int = 28, split: str = "train") -> dict[str, bytes]:
    rng = np.random.default_rng(marker)
    images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    labels = np.full(n, marker, dtype=np.uint8)
    names = data.DATASETS["mnist"].files[split]
    return {names[0]: gzip.compress(idx_bytes(images)), names[1]: gzip.compress(idx_bytes(labels))}


def write(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


def publish(monkeypatch, name: str, files: dict[str, bytes]) -> None:
    """Make ``files`` the published (SHA-256) files of data set ``name`` for this test."""
    info = data.DATASETS[name]
    hashes = {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    monkeypatch.setitem(data.DATASETS, name, dataclasses.replace(info, sha256={**info.sha256, **hashes}, mirrors=()))


# ----------------------------------------------------------------------------- $VAE_TUTORIAL_DATA per data set

def test_a_bare_folder_of_one_data_set_does_not_answer_for_another(tmp_path, monkeypatch):
    files = split_files(marker=4)
    publish(monkeypatch, "fashion-mnist", files)
    write(tmp_path / "bare", files)
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "bare"))
    assert load_dataset("fashion-mnist", download=False).labels[0] == 4  # hashes match: used
    for other in ("mnist", "kmnist"):
        with pytest.raises(DatasetError, match=r"is a Fashion-MNIST file, not"):
            load_dataset(other, download=False)


def test_a_bare_folder_with_unknown_hashes_is_not_used(tmp_path, monkeypatch):
    write(tmp_path / "bare", split_files())
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "bare"))
    with pytest.raises(DatasetError, match=r"bare folder .* Move the MNIST files to .*/bare/mnist/"):
        load_dataset("mnist", download=False)
    # The same files in a folder named after the data set pass the (shape) checks.
    write(tmp_path / "bare" / "mnist", split_files(marker=6))
    assert load_dataset("mnist", download=False).labels[0] == 6


@pytest.mark.skipif(not (DEBIAN_FASHION / TEST_IMAGES).is_file(), reason="needs Debian's dataset-fashion-mnist")
def test_real_fashion_mnist_files_are_not_mnist(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SPLIT_SIZES", {"train": 60000, "test": 10000})
    bare = tmp_path / "fashion"
    shutil.copytree(DEBIAN_FASHION, bare)
    monkeypatch.setenv(data.DATA_ENV, str(bare))
    assert len(load_dataset("fashion-mnist", "test", download=False)) == 10000  # uncompressed hash matches
    for other in ("mnist", "kmnist"):
        with pytest.raises(DatasetError, match="is a Fashion-MNIST file"):
            load_dataset(other, "test")
    (bare / "mnist").mkdir()
    for f in data.DATASETS["mnist"].files["test"]:
        shutil.copy(bare / f, bare / "mnist" / f)
    with pytest.raises(DatasetError, match="mnist/t10k-images-idx3-ubyte.gz is a Fashion-MNIST file"):
        load_dataset("mnist", "test")
    assert sorted(p.name for p in (bare / "mnist").iterdir()) == sorted(
        [*data.DATASETS["mnist"].files["test"], data.STAMP_FILE])  # nothing downloaded over them


# ----------------------------------------------------------------------------- stamps

def test_hashes_are_checked_once_and_remembered_in_a_stamp(tmp_path, monkeypatch):
    folder = write(tmp_path / "root" / "mnist", split_files())
    load_dataset("mnist", root=tmp_path / "root", download=False)
    stamp = folder / data.STAMP_FILE
    assert stamp.is_file() and TRAIN_IMAGES in stamp.read_text()
    data._verified.clear()  # a new process: only the stamp remembers

    def no_hashing(path):
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(data, "_file_sha256", no_hashing)
    load_dataset("mnist", root=tmp_path / "root", download=False)
    # A file that changes (other size or time) is hashed again.
    write(folder, split_files(marker=8))
    with pytest.raises(AssertionError, match="hashed again"):
        load_dataset("mnist", root=tmp_path / "root", download=False)


def test_system_folders_get_their_stamp_in_the_user_cache(tmp_path):
    folder = write(tmp_path / "system" / "mnist", split_files())
    load_dataset("mnist", download=False)
    assert not (folder / data.STAMP_FILE).exists()
    assert list((tmp_path / "cache" / "vae_tutorial" / "stamps").glob("*.json"))


# ----------------------------------------------------------------------------- shape and count checks

def test_files_with_no_published_hash_must_have_the_right_count(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SPLIT_SIZES", {"train": 60000, "test": 10000})
    write(tmp_path / "root" / "mnist", split_files(n=6))
    with pytest.raises(DatasetError, match=r"holds 6 images, but the MNIST train split has 60000"):
        load_dataset("mnist", root=tmp_path / "root", download=False)
    monkeypatch.setattr(data, "SPLIT_SIZES", {"train": 6})
    assert len(load_dataset("mnist", root=tmp_path / "root", download=False)) == 6


def test_labels_out_of_range_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SPLIT_SIZES", {})
    files = split_files(marker=3)
    files[TRAIN_LABELS] = gzip.compress(idx_bytes(np.full(6, 12, np.uint8)))
    write(tmp_path / "root" / "mnist", files)
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte.gz holds label 12, but MNIST has 10 classes"):
        load_dataset("mnist", root=tmp_path / "root", download=False)


def test_train_and_test_files_of_different_image_sizes(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SPLIT_SIZES", {})
    write(tmp_path / "root" / "fashion-mnist", {**split_files(), **split_files(size=27, split="test")})
    assert load_dataset("fashion-mnist", "train", root=tmp_path / "root", download=False).image_shape == (1, 28, 28)
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte.gz holds images of 27x27 pixels, "
                                           r"but Fashion-MNIST images are 28x28"):
        load_dataset("fashion-mnist", "test", root=tmp_path / "root", download=False)


@pytest.mark.parametrize("shape", [(2**32 - 1, 2**32 - 1, 2**32 - 1), (2**31, 2**31, 4), (0, 28, 28)])
def test_idx_header_whose_shape_overflows_names_the_file(tmp_path, shape):
    path = tmp_path / "huge.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + np.asarray(shape, ">u4").tobytes() + bytes(10)))
    with pytest.raises(DatasetError, match=r"huge.gz is corrupt or truncated: its header promises"):
        data.read_idx(path, ndim=3)


# ----------------------------------------------------------------------------- downloads

class Trickle(BaseHTTPRequestHandler):
    """Announces 1 000 bytes and sends one every 0.2 s: each read succeeds, the whole never ends."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def trickle_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


def test_a_trickling_mirror_fails_within_the_deadline_with_the_rate_shown(tmp_path, monkeypatch, trickle_server):
    monkeypatch.setenv(data.DEADLINE_ENV, "1.0")
    t0 = time.perf_counter()
    with pytest.raises(data.DatasetNotFoundError, match=r"too slow: \d+ bytes in 1\.\d s \(\d+ B/s of 1,000 bytes\)"):
        load_dataset("mnist", root=tmp_path / "root", mirrors=[trickle_server])
    assert time.perf_counter() - t0 < 5
    assert not (tmp_path / "root" / "mnist").exists()  # no .part left, no empty folder


@pytest.mark.parametrize("value", ["0", "-3", "soon", "nan"])
def test_a_bad_deadline_setting_is_named(tmp_path, monkeypatch, value, trickle_server):
    monkeypatch.setenv(data.DEADLINE_ENV, value)
    with pytest.raises(DatasetError, match=data.DEADLINE_ENV):
        load_dataset("mnist", root=tmp_path / "root", mirrors=[trickle_server])


def test_stale_part_files_of_killed_downloads_are_removed(tmp_path, monkeypatch, trickle_server):
    folder = tmp_path / "root" / "mnist"
    folder.mkdir(parents=True)
    stale = folder / f".{TRAIN_IMAGES}.k1ll3d.part"
    live = folder / f".{TRAIN_IMAGES}.n0w.part"  # another download in progress
    stale.write_bytes(b"partial")
    live.write_bytes(b"partial")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    monkeypatch.setenv(data.DEADLINE_ENV, "0.3")
    with pytest.raises(data.DatasetNotFoundError):
        load_dataset("mnist", root=tmp_path / "root", mirrors=[trickle_server])
    assert not stale.exists() and live.exists()
