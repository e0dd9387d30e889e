"""Fixtures shared by the test modules."""
from __future__ import annotations

import pytest


@pytest.fixture
def fashion_mnist_present():
    """Skip a test that needs the Fashion-MNIST files when they are not on this machine."""
    from vae_tutorial.data import DatasetError, load_dataset

    try:
        load_dataset("fashion-mnist", "test", download=False)
    except DatasetError:
        pytest.skip("Fashion-MNIST files are not on this machine (install dataset-fashion-mnist; CI does)")
