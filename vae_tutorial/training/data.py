"""Image data sets for the book: MNIST, Fashion-MNIST, KMNIST (28×28) and scikit-learn's 8×8 digits.

:func:`load_dataset` returns an :class:`ImageDataset` whose ``.images`` tensor holds the whole
split, shape ``(N, 1, 28, 28)`` (``(N, 1, 8, 8)`` for ``"digits"``), float32 in ``[0, 1]``,
so training moves it to the device once and never touches Python per example.

Where the 28×28 files come from, in order (first hit wins, file by file):

1. ``root`` if given, else ``$VAE_TUTORIAL_DATA``: ``<folder>/<name>``, torchvision's layout
   ``<folder>/<TorchvisionName>/raw``, or the bare folder itself, which is used only for files
   whose SHA-256 is this data set's published one (a bare folder does not say which data set
   it holds);
2. the user cache, ``$XDG_CACHE_HOME/vae_tutorial/<name>`` (default ``~/.cache/vae_tutorial/<name>``);
3. folders that distributions install, ``/usr/share/datasets/<name>`` (Debian's
   ``dataset-fashion-mnist`` puts Fashion-MNIST there) and ``/usr/local/share/datasets/<name>``;
4. a download from the data set's mirrors, verified against its SHA-256 before it is kept.

Files are the original gzip-compressed IDX files (``train-images-idx3-ubyte.gz`` ...), or the
same files uncompressed. :data:`DATASETS` is the one source of truth for names, files, hashes,
mirrors and class names.

Provenance. Each file found is hashed once (SHA-256) and the result remembered in a small
stamp, ``.vae_tutorial-verified.json`` beside the files (or in the user cache when that folder
is read-only), keyed by the file's size and modification time. A file whose hash is another
data set's (Fashion-MNIST files in an ``mnist/`` folder) is refused. A file with no published
hash to match (Debian's recompressed copies) is accepted from a folder named after the data
set if its shape and count are right (60 000 train / 10 000 test images of 28×28, labels 0..9).
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import math
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from ..errors import (ArgumentError, ArgumentTypeError, DataError, VAETutorialError, check_data, check_float, check_int,
                      check_seed, check_unit_interval)

__all__ = [
    "DATASETS", "DATA_ENV", "MIRRORS_ENV", "BINARIZE_OPTIONS", "SPLITS", "DatasetError",
    "DatasetNotFoundError", "DatasetInfo", "ImageDataset", "load_dataset", "read_idx", "cache_dir",
    "sine_waves", "binarize",
]

DATA_ENV = "VAE_TUTORIAL_DATA"
"""Environment variable naming a folder that holds the data files (checked first, after ``root``)."""

MIRRORS_ENV = "VAE_TUTORIAL_MIRRORS"
"""Environment variable with base URLs (separated by spaces or commas) tried instead of a data set's mirrors."""

DEBIAN_DATASETS_DIR = Path("/usr/share/datasets")
"""Where Debian's ``dataset-*`` packages install, one subfolder per data set."""
SYSTEM_DATA_DIRS: tuple[Path, ...] = (DEBIAN_DATASETS_DIR, Path("/usr/local/share/datasets"))
"""Folders where distribution packages install data sets, one subfolder per data set."""

SPLITS = ("train", "test")
BINARIZE_OPTIONS = (None, "static", "dynamic")
STATIC_BINARIZATION_SEED = 0
"""Seed of the one fixed Bernoulli sample behind ``binarize="static"``."""
DOWNLOAD_TIMEOUT = 30.0
"""Seconds without data after which a mirror counts as unreachable."""
DOWNLOAD_DEADLINE = 600.0
"""Seconds one file's download may take in all, however slowly the bytes trickle in
(overridden by ``$VAE_TUTORIAL_DOWNLOAD_DEADLINE``)."""
DEADLINE_ENV = "VAE_TUTORIAL_DOWNLOAD_DEADLINE"
STAMP_FILE = ".vae_tutorial-verified.json"
"""Name of the stamp that remembers the SHA-256 of the data files next to it."""
STALE_PART_SECONDS = 60.0
"""A ``.part`` file untouched this long was left by a killed download and is removed."""
SPLIT_SIZES = {"train": 60000, "test": 10000}
"""Number of images of each split of the 28×28 data sets: the shape check of a file with no published hash."""
CONTENT_SHA256 = {
    # SHA-256 of the *uncompressed* IDX files (the same bytes whatever gzip wrapped them):
    # they identify Debian's recompressed Fashion-MNIST, and uncompressed copies.
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
"""Data set → file → SHA-256 of its uncompressed bytes, where known."""
DIGITS_TRAIN_SIZE = 1500
"""``"digits"``: the first 1500 of scikit-learn's 1797 images are the training split, the rest the test split."""


@dataclass(frozen=True)
class DatasetInfo:
    """Everything the loader knows about one data set.

    ``files`` maps a split to its ``(images file, labels file)``; ``sha256`` maps each file to
    the SHA-256 of the canonical download and ``sizes`` to its size in bytes (a mirror that
    announces or sends more is refused); ``mirrors`` are base URLs tried in order.
    ``source="sklearn"`` marks a data set that ships with scikit-learn (no files at all).
    """

    name: str
    title: str
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]
    files: dict[str, tuple[str, str]]
    sha256: dict[str, str]
    mirrors: tuple[str, ...] = ()
    sizes: dict[str, int] = field(default_factory=dict)
    debian_package: str | None = None
    torchvision_dir: str | None = None
    source: str = "idx"


_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        title="Fashion-MNIST",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        image_shape=(1, 28, 28),
        files=_MNIST_FILES,
        # Hashes of the files as Zalando publishes them. Debian's copies differ (their gzip header
        # lost the file name) and are not checked against these: only downloads are.
        sha256={
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
        sizes={"train-images-idx3-ubyte.gz": 26_421_880, "train-labels-idx1-ubyte.gz": 29_515,
               "t10k-images-idx3-ubyte.gz": 4_422_102, "t10k-labels-idx1-ubyte.gz": 5_148},
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"),
        debian_package="dataset-fashion-mnist",
        torchvision_dir="FashionMNIST",
    ),
    "mnist": DatasetInfo(
        name="mnist",
        title="MNIST",
        classes=tuple(str(d) for d in range(10)),
        image_shape=(1, 28, 28),
        files=_MNIST_FILES,
        sha256={
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        sizes={"train-images-idx3-ubyte.gz": 9_912_422, "train-labels-idx1-ubyte.gz": 28_881,
               "t10k-images-idx3-ubyte.gz": 1_648_877, "t10k-labels-idx1-ubyte.gz": 4_542},
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        torchvision_dir="MNIST",
    ),
    "kmnist": DatasetInfo(
        name="kmnist",
        title="Kuzushiji-MNIST",
        # Romanised readings of the ten hiragana (Clanuwat et al. 2018).
        classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        image_shape=(1, 28, 28),
        files=_MNIST_FILES,
        sha256={
            "train-images-idx3-ubyte.gz": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
            "train-labels-idx1-ubyte.gz": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
            "t10k-images-idx3-ubyte.gz": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
            "t10k-labels-idx1-ubyte.gz": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
        },
        sizes={"train-images-idx3-ubyte.gz": 18_165_135, "train-labels-idx1-ubyte.gz": 29_497,
               "t10k-images-idx3-ubyte.gz": 3_041_136, "t10k-labels-idx1-ubyte.gz": 5_120},
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        torchvision_dir="KMNIST",
    ),
    "digits": DatasetInfo(
        name="digits",
        title="scikit-learn digits (8×8)",
        classes=tuple(str(d) for d in range(10)),
        image_shape=(1, 8, 8),
        files={},
        sha256={},
        source="sklearn",
    ),
}
"""Name → :class:`DatasetInfo`: the data sets :func:`load_dataset` knows."""


class DatasetError(VAETutorialError, ValueError):
    """A data file is missing, corrupt, or failed its checksum; the message says how to fix it."""


class DatasetNotFoundError(DatasetError):
    """No local copy of a data file, and none could be (or was allowed to be) downloaded."""


# ----------------------------------------------------------------------------- the data set

class ImageDataset(Dataset):
    """A labelled image data set held as two tensors.

    Attributes:
        images: ``(N, C, H, W)`` float32 in ``[0, 1]`` (``(N, 1, 28, 28)`` or ``(N, 1, 8, 8)``);
            0/1 after static binarisation, grey levels for ``binarize="dynamic"``.
        labels: ``(N,)`` int64 class indices into ``classes``.
        classes: class names, ``classes[labels[i]]`` names image ``i``.
        name, split: e.g. ``"fashion-mnist"``, ``"train"``.
        binarize: ``None``, ``"static"`` or ``"dynamic"``. With ``"dynamic"`` every access
            ``ds[i]`` draws a fresh ``x ~ Bernoulli(images[i])``; :func:`vae_tutorial.fit`
            resamples the whole tensor once per epoch instead.

    ``ds[i]`` is ``(image (C, H, W), label int)``.
    """

    def __init__(self, images: Tensor, labels: Tensor, *, classes: Sequence[str], name: str,
                 split: str, binarize: str | None = None):
        if images.dim() != 4:
            raise DataError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise DataError(f"labels must have shape ({images.shape[0]},) to match the images, "
                             f"got {tuple(labels.shape)}")
        _check_binarize(binarize)
        self.images = images
        self.labels = labels
        self.classes = list(classes)
        self.name = name
        self.split = split
        self.binarize = binarize

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        x = self.images[index]
        if self.binarize == "dynamic":
            x = torch.bernoulli(x)
        return x, int(self.labels[index])

    def subset(self, n_or_indices: int | Sequence[int] | Tensor) -> "ImageDataset":
        """The first ``n`` examples (an int), or those at the given indices (list, range, tensor).

        Keeps ``classes``, ``name``, ``split`` and ``binarize``; the first-``n`` form is a view (no copy).
        """
        if isinstance(n_or_indices, (int, np.integer)) and not isinstance(n_or_indices, bool):
            n = int(n_or_indices)
            if not 0 < n <= len(self):
                raise ArgumentError(f"subset size must be between 1 and {len(self)} (the size of this "
                                 f"{self.split} split), got {n}")
            images, labels = self.images[:n], self.labels[:n]
        else:
            index = torch.as_tensor(n_or_indices)
            if index.dim() != 1 or index.numel() == 0 or index.is_floating_point() or index.is_complex():
                raise ArgumentError("subset takes an int n (the first n examples) or a non-empty 1-D "
                                 f"list/tensor of integer indices, got {str(n_or_indices)[:80]}")
            if index.dtype == torch.bool and index.numel() != len(self):
                raise ArgumentError(f"a boolean subset mask must have one entry per example ({len(self)}), "
                                    f"got {index.numel()}; or pass integer indices")
            if index.dtype != torch.bool:
                index = index.long()
                if int(index.min()) < 0 or int(index.max()) >= len(self):
                    raise ArgumentError(f"subset indices must lie in [0, {len(self)}), got "
                                     f"min {int(index.min())}, max {int(index.max())}")
            images, labels = self.images[index], self.labels[index]
        return ImageDataset(images, labels, classes=self.classes, name=self.name, split=self.split,
                            binarize=self.binarize)

    def __repr__(self) -> str:
        shape = "×".join(str(s) for s in self.image_shape)
        return (f"ImageDataset({self.name!r}, split={self.split!r}, n={len(self)}, image_shape={shape}, "
                f"classes={len(self.classes)}, binarize={self.binarize!r})")


# ----------------------------------------------------------------------------- loading

def load_dataset(name: str, split: str = "train", root: str | os.PathLike | None = None,
                 download: bool = True, binarize: str | None = None, *,
                 mirrors: Sequence[str] | None = None) -> ImageDataset:
    """Load one split of a data set as an :class:`ImageDataset`.

    Args:
        name: ``"fashion-mnist"``, ``"mnist"``, ``"kmnist"`` (60 000 train / 10 000 test images,
            ``(1, 28, 28)``) or ``"digits"`` (scikit-learn's 8×8 digits, ``(1, 8, 8)``, always
            offline: the first 1500 images are ``"train"``, the other 297 ``"test"``).
        split: ``"train"`` or ``"test"``.
        root: a folder to look in first (the folder itself, ``root/<name>`` or torchvision's
            ``root/<TorchvisionName>/raw``); default ``$VAE_TUTORIAL_DATA``. Downloads go to
            ``root/<name>`` when a root is given, else to :func:`cache_dir`.
        download: fetch missing files from the mirrors (SHA-256 checked). ``False`` raises
            :class:`DatasetNotFoundError` instead.
        binarize: ``None`` (grey levels), ``"static"`` (one fixed Bernoulli sample per pixel,
            seed ``STATIC_BINARIZATION_SEED``, in the spirit of Larochelle & Murray 2011's
            binarised MNIST: ``.images`` become 0/1) or ``"dynamic"`` (grey levels kept,
            a fresh sample ``x ~ Bernoulli(images)`` per access / per epoch of ``fit``).
        mirrors: base URLs tried instead of the data set's own (default ``$VAE_TUTORIAL_MIRRORS``,
            else ``DATASETS[name].mirrors``).

    Returns:
        An :class:`ImageDataset` with ``.images`` ``(N, 1, H, W)`` float32 in ``[0, 1]`` and
        ``.labels`` ``(N,)`` int64.
    """
    info = _info(name)
    if split not in SPLITS:
        raise ArgumentError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")
    _check_binarize(binarize)

    if info.source == "sklearn":
        images, labels = _load_digits(split)
    else:
        image_file, label_file = info.files[split]
        image_path = _locate(info, image_file, root, download, mirrors)
        label_path = _locate(info, label_file, root, download, mirrors)
        images_u8 = read_idx(image_path, ndim=3)
        labels_u8 = read_idx(label_path, ndim=1)
        if images_u8.shape[1:] != info.image_shape[1:]:
            raise DatasetError(f"{info.title} {split}: {image_path} holds images of "
                               f"{'x'.join(map(str, images_u8.shape[1:]))} pixels, but {info.title} images are "
                               f"{'x'.join(map(str, info.image_shape[1:]))}; this is not the {info.title} "
                               "file. Delete it and load again to re-download it.")
        if images_u8.shape[0] != labels_u8.shape[0]:
            raise DatasetError(f"{info.title} {split}: {image_file} holds {images_u8.shape[0]} images but "
                               f"{label_file} holds {labels_u8.shape[0]} labels; the two files come from "
                               "different releases. Delete both and load again to re-download them.")
        if not (_hash_verified(info, image_file, image_path) and _hash_verified(info, label_file, label_path)):
            _check_counts(info, split, image_path, images_u8.shape[0], label_path, labels_u8)
        # astype makes the one (writable) copy; the division then runs in place.
        images = torch.from_numpy(images_u8.astype(np.float32)).unsqueeze(1).div_(255.0)
        labels = torch.from_numpy(labels_u8.astype(np.int64))

    if binarize == "static":
        images = _static_binarization(images)
    return ImageDataset(images, labels, classes=info.classes, name=info.name, split=split, binarize=binarize)


def _check_counts(info: DatasetInfo, split: str, image_path: Path, n_images: int,
                  label_path: Path, labels_u8: np.ndarray) -> None:
    """The shape check of files with no published hash: image count and label range."""
    expected = SPLIT_SIZES.get(split)
    if expected is not None and n_images != expected:
        raise DatasetError(f"{image_path} holds {n_images} images, but the {info.title} {split} split has "
                           f"{expected}; it is not (all of) the {info.title} file. Delete it and load again "
                           "to re-download it.")
    if labels_u8.size and int(labels_u8.max()) >= len(info.classes):
        raise DatasetError(f"{label_path} holds label {int(labels_u8.max())}, but {info.title} has "
                           f"{len(info.classes)} classes; it is not the {info.title} labels file.")


def _info(name: str) -> DatasetInfo:
    key = str(name).strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise ArgumentError(f"unknown data set {name!r}; available: {', '.join(map(repr, DATASETS))}")
    return DATASETS[key]


def _check_binarize(binarize) -> None:
    if binarize not in BINARIZE_OPTIONS:
        raise ArgumentError(f"binarize must be one of {', '.join(map(repr, BINARIZE_OPTIONS))}, got {binarize!r}")


def _static_binarization(images: Tensor) -> Tensor:
    """One fixed sample ``x = 1[u < p]``, ``u ~ U(0, 1)``, i.e. ``x ~ Bernoulli(p)`` per pixel (same shape, 0/1)."""
    # A seeded PCG64 stream does not depend on platform or thread count, so every reader (with the
    # pinned NumPy) gets the same binarised set; it is also about twice as fast as torch.bernoulli here.
    u = np.random.default_rng(STATIC_BINARIZATION_SEED).random(tuple(images.shape), dtype=np.float32)
    return torch.from_numpy(u < images.numpy()).to(images.dtype)


def binarize(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One dynamic binarisation: ``x ~ Bernoulli(p)`` per pixel, drawn as ``x = 1[u < p]``, ``u ~ U(0, 1)``.

    Args:
        images: ``(N, ...)`` grey levels ``p`` in ``[0, 1]``, any floating dtype and device.
        generator: optional ``torch.Generator`` on the device of ``images``.

    Returns:
        0/1 tensor of the same shape, dtype and device. On the CPU it holds exactly the
        numbers ``torch.bernoulli(images, generator=generator)`` gives (PyTorch draws its
        Bernoulli variates as ``u < p`` too, and both leave the generator in the same state:
        tested), in about a third of the time, which is a tenth of a small MLP's epoch.

    Raises :class:`~vae_tutorial.errors.DataError` for grey levels outside [0, 1] (0..255
    pixels would all become 1); ``fit`` has checked its data already and skips this pass.
    """
    check_unit_interval(images, "binarize")
    u = torch.rand(images.shape, generator=generator, dtype=images.dtype, device=images.device)
    return u.lt_(images)


def _load_digits(split: str) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # pixels are 0..16
    labels = torch.tensor(digits.target, dtype=torch.int64)
    part = slice(0, DIGITS_TRAIN_SIZE) if split == "train" else slice(DIGITS_TRAIN_SIZE, None)
    return images[part].contiguous(), labels[part].contiguous()


# ----------------------------------------------------------------------------- IDX files

_IDX_DTYPE_UBYTE = 0x08


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file (gzip-compressed if its name ends in ``.gz``).

    The format (LeCun et al.): magic ``00 00 08 <ndim>``, then ``ndim`` big-endian uint32 sizes,
    then the bytes. Returns a uint8 array of those sizes, e.g. ``(60000, 28, 28)`` or ``(60000,)``.
    Raises :class:`DatasetError` naming the file if it is not a complete IDX file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error) as e:
        raise _corrupt(path, f"it cannot be decompressed ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != _IDX_DTYPE_UBYTE:
        raise _corrupt(path, f"it does not start with an unsigned-byte IDX magic number "
                             f"(got {data[:4].hex() or 'an empty file'})")
    dims = data[3]
    if ndim is not None and dims != ndim:
        raise _corrupt(path, f"it holds a {dims}-D array where {ndim}-D was expected")
    header = 4 + 4 * dims
    if len(data) < header:
        raise _corrupt(path, "its header is truncated")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=dims, offset=4))
    expected = header + math.prod(shape)  # Python ints: a huge header cannot overflow
    if len(data) != expected:
        raise _corrupt(path, f"its header promises {expected} bytes for shape {shape}, "
                             f"but it holds {len(data)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _corrupt(path: Path, why: str) -> DatasetError:
    if any(_is_within(path, d) for d in SYSTEM_DATA_DIRS):
        info = DATASETS.get(path.parent.name)
        if info is not None and info.debian_package:
            fix = f"Reinstall the package that provides it: sudo apt install --reinstall {info.debian_package}."
        else:
            fix = "Replace it with a good copy (it is in a system folder: you may need sudo), or delete it."
    else:
        fix = "Delete it and load the data set again to re-download it (or copy a good file there)."
    return DatasetError(f"The data file {path} is corrupt or truncated: {why}. {fix}")


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------- finding files

def cache_dir(name: str | None = None) -> Path:
    """The user cache, ``$XDG_CACHE_HOME/vae_tutorial`` (default ``~/.cache/vae_tutorial``), or its ``<name>`` subfolder."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(base) / "vae_tutorial"
    return path / name if name else path


def _user_root(root) -> Path | None:
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV, "").strip()
    return Path(env).expanduser() if env else None


def _search_dirs(info: DatasetInfo, root) -> list[Path]:
    dirs = []
    user = _user_root(root)
    if user is not None:
        dirs.append(user / info.name)
        if info.torchvision_dir:
            dirs.append(user / info.torchvision_dir / "raw")
        dirs.append(user)  # the bare folder: only files with this data set's published hash
    dirs.append(cache_dir(info.name))
    dirs += [d / info.name for d in SYSTEM_DATA_DIRS]
    return dirs


def _locate(info: DatasetInfo, filename: str, root, download: bool, mirrors) -> Path:
    """Path of ``filename`` (gzipped, or the same file uncompressed), downloading it if need be."""
    searched = _search_dirs(info, root)
    user = _user_root(root)
    refused = []
    for folder in searched:
        for candidate in (folder / filename, folder / filename.removesuffix(".gz")):
            if candidate.is_file():
                bare = user is not None and folder == user
                why = _provenance(info, filename, candidate, bare)
                if why is None:
                    return candidate
                refused.append(why)
    if refused:  # never download over (or next to) a file that claims to be this one
        raise DatasetError(refused[0])
    if not download:
        raise DatasetNotFoundError(_not_found_message(info, filename, searched, "download=False was given"))

    target_dir = user / info.name if user is not None else cache_dir(info.name)
    _clean_stale_parts(target_dir, filename)
    if mirrors is None:
        env = os.environ.get(MIRRORS_ENV, "").replace(",", " ").split()
        mirrors = env or info.mirrors
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + filename
        try:
            return _download(url, target_dir / filename, info.sha256[filename], info.sizes.get(filename))
        except _MirrorFailure as e:
            failures.append(f"{url}: {e}")
    raise DatasetNotFoundError(_not_found_message(
        info, filename, searched,
        "every mirror failed:\n    " + "\n    ".join(failures or ["(no mirrors configured)"])))


# ----------------------------------------------------------------------------- provenance

_verified: dict[tuple, tuple[str, str | None]] = {}  # (path, size, mtime) → hashes, for this process


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _content_sha256(path: Path) -> str | None:
    try:
        raw = path.read_bytes()
        return hashlib.sha256(gzip.decompress(raw) if path.suffix == ".gz" else raw).hexdigest()
    except (OSError, EOFError, zlib.error):
        return None  # read_idx will name the corruption


def _stamp_path(folder: Path) -> Path:
    # Never write into a distribution's folder (even as root): the package manager owns it.
    if os.access(folder, os.W_OK) and not any(_is_within(folder, d) for d in SYSTEM_DATA_DIRS):
        return folder / STAMP_FILE
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "stamps" / f"{key}.json"


def _hashes(path: Path) -> tuple[str, str | None]:
    """``(SHA-256 of the file, SHA-256 of its uncompressed bytes)``, remembered in a stamp beside it."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _verified:
        return _verified[key]
    stamp = _stamp_path(path.parent)
    try:
        entries = json.loads(stamp.read_text())
        if not isinstance(entries, dict):
            entries = {}
    except (OSError, ValueError):
        entries = {}
    entry = entries.get(path.name)
    if (isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns
            and isinstance(entry.get("sha256"), str)):
        result = (entry["sha256"], entry.get("content_sha256"))
    else:
        result = (_file_sha256(path), _content_sha256(path))
        entries[path.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": result[0],
                              "content_sha256": result[1]}
        try:  # a stamp is an optimisation: a read-only disk only costs a re-hash next time
            stamp.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=stamp.parent, prefix=stamp.name + ".", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(entries, f, indent=1)
            os.replace(tmp, stamp)
        except OSError:
            pass
    _verified[key] = result
    return result


def _hash_verified(info: DatasetInfo, filename: str, path: Path) -> bool:
    """Does ``path`` carry ``info``'s published SHA-256 (of the file, or of its uncompressed bytes)?"""
    sha, content = _hashes(path)
    return sha == info.sha256.get(filename) or content == CONTENT_SHA256.get(info.name, {}).get(filename)


def _provenance(info: DatasetInfo, filename: str, path: Path, bare: bool) -> str | None:
    """``None`` if ``path`` may be used as ``info``'s ``filename``, else why not (a message)."""
    if _hash_verified(info, filename, path):
        return None
    sha, content = _hashes(path)
    for other in DATASETS.values():
        if other.name == info.name:
            continue
        if sha in other.sha256.values() or content in CONTENT_SHA256.get(other.name, {}).values():
            return (f"{path} is a {other.title} file, not {info.title}: its SHA-256 is {other.title}'s. "
                    f"Put the {info.title} files in a folder of their own "
                    f"({(path.parent if bare else path.parent.parent) / info.name} "
                    f"or {cache_dir(info.name)}).")
    if bare:
        return (f"{path} lies in the bare folder {path.parent} and its SHA-256 is not {info.title}'s published "
                f"one, so it cannot be told apart from another data set's file. Move the {info.title} files "
                f"to {path.parent / info.name}/ (a folder named after the data set) to use them.")
    return None  # a folder named after the data set: the shape and count checks decide


def _clean_stale_parts(folder: Path, filename: str, min_age: float = STALE_PART_SECONDS) -> None:
    """Delete ``.<filename>.*.part`` files that a killed download left (untouched for ``min_age`` s)."""
    if not folder.is_dir():
        return
    now = time.time()
    for part in folder.glob(f".{filename}.*.part"):
        try:
            if now - part.stat().st_mtime >= min_age:
                part.unlink()
        except OSError:
            pass


def _not_found_message(info: DatasetInfo, filename: str, searched: Sequence[Path], why: str) -> str:
    needed = ", ".join(f for pair in info.files.values() for f in pair)
    lines = [
        f"No local copy of the {info.title} file {filename!r}, and it could not be downloaded: {why}.",
        "Looked in:", *(f"    {d}" for d in searched),
        "To fix it, either:",
        f"  * put the files ({needed}) in a folder and point ${DATA_ENV} at it "
        f"(export {DATA_ENV}=/path/to/folder), or pass root=... to load_dataset;",
        f"  * or copy them to {cache_dir(info.name)};",
    ]
    if info.debian_package:
        lines.append(f"  * or install the Debian/Ubuntu package: sudo apt install {info.debian_package} "
                     f"(it puts them in {DEBIAN_DATASETS_DIR / info.name});")
    if info.mirrors:
        lines.append(f"  * or connect to the internet and load again (mirrors: {', '.join(info.mirrors)}).")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- downloading

class _MirrorFailure(Exception):
    """One mirror could not deliver a verified file; the next one is tried."""


class _Deadline:
    """Ends a download when its deadline passes, whatever the download is waiting for.

    A socket timeout bounds each read, not their sum: a mirror that sends its status line,
    its headers or its body a byte at a time, each byte within the timeout, would hold the
    download as long as it liked. So every connection the download opens (redirects
    included) is registered here, and a timer shuts them all down when the deadline passes:
    the read that is waiting returns at once, and the mirror is reported as too slow.
    Connecting is bounded too: no connection attempt may outlast the time left.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.monotonic()
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []  # duplicates: shut down at the deadline, closed at the end
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "_Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def left(self) -> float:
        return max(self.seconds - (time.monotonic() - self.start), 0.0)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _connect(self, address, timeout=None, source_address=None, **kwargs) -> socket.socket:
        """``socket.create_connection``, bounded by the time left and watched until the end."""
        left = self.left()
        timeout = left if timeout is None or not isinstance(timeout, (int, float)) else min(timeout, left)
        if timeout <= 0:
            raise TimeoutError("the download deadline passed before connecting")
        sock = socket.create_connection(address, timeout, source_address, **kwargs)
        with self._lock:
            if self.expired:
                sock.close()
                raise TimeoutError("the download deadline passed while connecting")
            # a duplicate descriptor: shutting it down ends the connection, and it stays ours
            # to close (the original may be closed, and its number reused, at any time)
            self._sockets.append(sock.dup())
        return sock

    def open(self, url: str, timeout: float):
        """``urllib.request.urlopen(url)`` with every connection watched by this deadline."""
        deadline = self

        class Watched:
            def do_open(self, http_class, req, **kwargs):
                def connection(host, **conn_kwargs):
                    conn = http_class(host, **conn_kwargs)
                    conn._create_connection = deadline._connect
                    return conn
                return super().do_open(connection, req, **kwargs)

        handlers = [type("WatchedHTTP", (Watched, urllib.request.HTTPHandler), {})(),
                    type("WatchedHTTPS", (Watched, urllib.request.HTTPSHandler), {})()]
        return urllib.request.build_opener(*handlers).open(url, timeout=timeout)

    def too_slow(self, received: int, announced, in_body: bool) -> "_MirrorFailure":
        longer = f"past the {self.seconds:g} s deadline (set ${DEADLINE_ENV} to allow longer)"
        if not in_body:
            return _MirrorFailure(f"too slow: no complete response (status line and headers) {longer}")
        elapsed = max(time.monotonic() - self.start, 1e-9)
        return _MirrorFailure(f"too slow: {received} bytes in {elapsed:.1f} s ({received / elapsed:,.0f} B/s"
                              f"{f' of {int(announced):,} bytes' if announced else ''}), {longer}")


def _download(url: str, dest: Path, sha256: str, size: int | None = None) -> Path:
    """Fetch ``url`` into ``dest``, keeping it only if its SHA-256 is ``sha256``.

    Bytes go to a temporary file next to ``dest`` that is renamed only after the hash matches,
    so an interrupted or wrong download never leaves a file behind. The whole download
    (connecting, the headers and the body) must end within the deadline
    (:func:`_download_deadline`), and a file of known ``size`` is refused as soon as a mirror
    announces or sends more: nothing past ``size`` is ever written.
    """
    print(f"Downloading {url} to {dest.parent}", file=sys.stderr)
    created = not dest.parent.exists()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as e:
        raise DatasetError(f"cannot write the download to {dest.parent} ({e}); point ${DATA_ENV} or "
                           "root=... at a writable folder, or place the files there by hand") from None
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        received = 0
        announced, in_body = None, False
        deadline = _Deadline(_download_deadline())
        too_big = f"more than the file's known size of {size:,} bytes; refused" if size is not None else ""
        try:
            with deadline, os.fdopen(fd, "wb") as out, \
                    deadline.open(url, timeout=min(DOWNLOAD_TIMEOUT, deadline.seconds)) as response:
                # headers cut short by the deadline end early, as if complete: they are not
                in_body = not deadline.expired
                announced = response.headers.get("Content-Length")
                if size is not None and announced is not None and int(announced) > size:
                    raise _MirrorFailure(f"announces {int(announced):,} bytes, {too_big}")
                # read1 returns what one socket read delivers; never more than one byte past the
                # known size, so an oversized answer is caught before anything past it is written
                while chunk := response.read1(1 << 20 if size is None else min(1 << 20, size - received + 1)):
                    if size is not None and received + len(chunk) > size:
                        raise _MirrorFailure(f"sent {too_big}")
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if deadline.left() <= 0:
                        raise deadline.too_slow(received, announced, True)
                if deadline.expired:  # the timer ended the headers or the body early
                    raise deadline.too_slow(received, announced, in_body)
                out.flush()
                os.fsync(out.fileno())
        except _MirrorFailure:
            raise
        except (OSError, ValueError, http.client.HTTPException) as e:  # URLError is an OSError
            if deadline.expired or deadline.left() <= 0:  # the timer may not have fired yet
                raise deadline.too_slow(received, announced, in_body) from None
            if isinstance(e, urllib.error.HTTPError):
                raise _MirrorFailure(f"HTTP {e.code} {e.reason}") from None
            if isinstance(e, urllib.error.URLError):
                raise _MirrorFailure(f"unreachable ({e.reason})") from None
            if isinstance(e, ValueError):  # a malformed mirror URL or Content-Length
                raise _MirrorFailure(str(e)) from None
            # reset, timeout, truncated chunked body
            raise _MirrorFailure(f"download interrupted after {received} bytes ({e or type(e).__name__})") from None
        # http.client returns a short body without complaint when the server closes early.
        if announced is not None and received != int(announced):
            raise _MirrorFailure(f"download interrupted: got {received} of {announced} bytes")
        if digest.hexdigest() != sha256:
            raise _MirrorFailure(f"SHA-256 mismatch (expected {sha256}, got {digest.hexdigest()}); "
                                 "the file was discarded")
        os.replace(tmp, dest)
        return dest
    finally:
        tmp.unlink(missing_ok=True)
        if created and not dest.exists():
            try:
                dest.parent.rmdir()  # a failed first download leaves no empty folder either
            except OSError:
                pass


def _download_deadline() -> float:
    raw = os.environ.get(DEADLINE_ENV, "").strip()
    if not raw:
        return DOWNLOAD_DEADLINE
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise DatasetError(f"${DEADLINE_ENV}={raw!r} must be a positive number of seconds")
    return value


def sine_waves(n: int, length: int = 64, noise: float = 0.1, seed: int = 0,
               freq_range: tuple[float, float] = (1.0, 3.0)) -> TensorDataset:
    """A toy sequence data set (a stand-in for audio): noisy sine waves.

    ``x_t = A sin(2π f t / T + φ) + ε_t`` for ``t = 0..T−1`` with, per sequence,
    ``A ~ U(0.5, 1.5)``, ``f ~ U(freq_range)`` cycles per window, ``φ ~ U(0, 2π)`` and
    ``ε_t ~ N(0, noise²)``.

    Returns:
        ``TensorDataset(x, factors)`` with ``x`` of shape ``(n, length)`` and ``factors``
        ``(n, 3)`` holding ``(A, f, φ)``; float32; the same for the same ``seed``.
    """
    n = check_int("n", n, min=1)
    length = check_int("length", length, min=2)
    noise = check_float("noise", noise, min=0.0)
    seed = check_seed(seed)
    g = torch.Generator().manual_seed(seed)
    amp = 0.5 + torch.rand(n, 1, generator=g)
    lo, hi = freq_range
    freq = lo + (hi - lo) * torch.rand(n, 1, generator=g)
    phase = 2 * math.pi * torch.rand(n, 1, generator=g)
    t = torch.arange(length, dtype=torch.float32) / length
    x = amp * torch.sin(2 * math.pi * freq * t + phase) + noise * torch.randn(n, length, generator=g)
    return TensorDataset(x, torch.cat([amp, freq, phase], dim=1))


# ----------------------------------------------------------------------------- the tensors of a data set

def _brief(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def dataset_tensors(data) -> tuple[Tensor, Tensor | None]:
    """``(images, labels)`` tensors from a data set of ``(image, label)`` pairs.

    Uses ``data.images``/``data.labels`` when present (our data sets, with no copy),
    the tensors of a ``TensorDataset``, a bare tensor, or else stacks the items.
    """
    if isinstance(data, Tensor):
        return data, None
    if isinstance(data, np.ndarray):
        if data.dtype.kind not in "biuf":
            raise ArgumentTypeError(f"the data must be numbers (images), got a NumPy array of dtype {data.dtype}")
        return torch.from_numpy(np.ascontiguousarray(data)), None
    if isinstance(data, (str, bytes, os.PathLike)):
        raise ArgumentTypeError(f"the data must be a data set or a tensor of images, got the {type(data).__name__} "
                                f"{_brief(data)}; load a data set first, e.g. vt.load_dataset('digits')")
    if isinstance(data, dict):
        raise ArgumentTypeError(f"the data must be a data set or a tensor of images, got a dict with keys "
                                f"{_brief(list(data))}; pass the images tensor itself, e.g. data['images']")
    if hasattr(data, "images"):
        return data.images, getattr(data, "labels", None)
    if hasattr(data, "tensors"):
        t = data.tensors
        return t[0], (t[1] if len(t) > 1 else None)
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise ArgumentTypeError(f"the data must be a data set of (image, label) pairs or a tensor, "
                                f"got {type(data).__name__}")
    if len(data) == 0:
        raise DataError("the data set is empty; there is nothing to train or evaluate on")
    items = [data[i] for i in range(len(data))]
    if isinstance(items[0], (tuple, list)):
        return torch.stack([torch.as_tensor(a[0]) for a in items]), torch.as_tensor([int(a[1]) for a in items])
    return torch.stack([torch.as_tensor(a) for a in items]), None


# tensor → (its _version, ...) of the last check: a data set passed to fit again (the CLI trains
# one epoch per call; benchmarks time repeated calls) is not scanned again unless it was modified.
# (Keyed by id() with a weak reference to confirm identity: tensors cannot be dict keys by value.)
_checked: dict[int, tuple] = {}


def _memo_get(memo: dict, t: Tensor, key):
    hit = memo.get(id(t))
    return hit[2] if hit is not None and hit[0]() is t and hit[1] == key else None


def _memo_put(memo: dict, t: Tensor, key, value) -> None:
    if len(memo) > 32:  # forget dead entries (and, at worst, everything: it is only a cache)
        for k in [k for k, v in memo.items() if v[0]() is None] or list(memo):
            del memo[k]
    memo[id(t)] = (weakref.ref(t), key, value)


def _check_data_once(images, labels, likelihood, num_classes, name: str) -> None:
    if not isinstance(images, Tensor):
        raise ArgumentTypeError(f"{name} must hold a tensor of images, got {type(images).__name__}")
    key = (images._version, likelihood, num_classes,
           None if labels is None or num_classes is None else (id(labels), labels._version))
    if _memo_get(_checked, images, key):
        return
    check_data(images, labels, likelihood=likelihood, num_classes=num_classes, name=name)
    _memo_put(_checked, images, key, True)
