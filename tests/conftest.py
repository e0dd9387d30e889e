"""Fixtures shared by the test modules."""
from __future__ import annotations

import pytest


@pytest.fixture
def fashion_mnist_present():
    """Skip a test that needs the Fashion-MNIST files when they are not on this machine."""
    from vae_tutorial.training.data import DatasetError, load_dataset

    try:
        load_dataset("fashion-mnist", "test", download=False)
    except DatasetError:
        pytest.skip("Fashion-MNIST files are not on this machine (install dataset-fashion-mnist; CI does)")


@pytest.fixture
def isolated_data(tmp_path, monkeypatch):
    """A private cache and system folder; no data, mirror or deadline variables; no proxy for
    127.0.0.1; no remembered verifications. Tiny fake splits stand in for the real ones (the
    count check of files with no published hash is tested on its own)."""
    from vae_tutorial import data

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in (data.DATA_ENV, data.MIRRORS_ENV, data.DEADLINE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setattr(data, "SYSTEM_DATA_DIRS", (tmp_path / "system",))
    monkeypatch.setattr(data, "_verified", {})
    monkeypatch.setattr(data, "SPLIT_SIZES", {})
