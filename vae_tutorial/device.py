"""Device selection and seeding, so the same notebook runs on a laptop CPU, a GPU or Colab."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["get_device", "seed_everything"]


def get_device() -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU.

    ``$VAE_TUTORIAL_DEVICE`` (e.g. ``cpu`` or ``cuda:1``) overrides the choice.
    """
    wanted = os.environ.get("VAE_TUTORIAL_DEVICE", "").strip()
    if wanted:
        try:
            device = torch.device(wanted)
        except RuntimeError as e:
            raise ValueError(f"$VAE_TUTORIAL_DEVICE={wanted!r} is not a device name ({e}); "
                             "use e.g. 'cpu', 'cuda' or 'mps'") from None
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; return a CPU ``torch.Generator`` seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
