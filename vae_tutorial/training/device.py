"""Device selection and seeding, so the same notebook runs on a laptop CPU, a GPU or Colab."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from ..errors import ArgumentTypeError, DeviceError, check_seed

__all__ = ["get_device", "seed_everything", "resolve_device", "check_available"]


def get_device() -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU.

    ``$VAE_TUTORIAL_DEVICE`` (e.g. ``cpu`` or ``cuda:1``) overrides the choice.
    """
    wanted = os.environ.get("VAE_TUTORIAL_DEVICE", "").strip()
    if wanted:
        try:
            device = torch.device(wanted)
        except RuntimeError as e:
            raise DeviceError(f"$VAE_TUTORIAL_DEVICE={wanted!r} is not a device name ({e}); "
                              "use e.g. 'cpu', 'cuda' or 'mps'") from None
        check_available(device, f"$VAE_TUTORIAL_DEVICE={wanted}")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_available(device: torch.device, origin: str = "device") -> None:
    """Raise :class:`~vae_tutorial.errors.DeviceError` if this machine cannot use ``device``.

    Catches ``cuda`` on a CPU-only PyTorch (or an index past the last GPU), ``mps`` off
    Apple silicon and ``meta`` (which would leave a moved model without its weights) before
    any tensor is moved, instead of a long traceback later or a model destroyed.
    """
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{origin}: this PyTorch sees no CUDA GPU; use 'cpu' "
                              "(or unset $VAE_TUTORIAL_DEVICE)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{origin}: there are only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if not (mps is not None and mps.is_available()):
            raise DeviceError(f"{origin}: Apple MPS is not available here; use 'cpu' "
                              "(or unset $VAE_TUTORIAL_DEVICE)")
    elif device.type == "meta":
        # a tensor on 'meta' has a shape and no data: moving a model there destroys its weights
        raise DeviceError(f"{origin}: the 'meta' device holds shapes, not numbers, so nothing can be trained, "
                          "evaluated or sampled on it; use 'cpu' or a GPU")
    elif device.type != "cpu" and not _backend_available(device.type):
        raise DeviceError(f"{origin}: the {device.type!r} backend is not available here; use 'cpu'")


def _backend_available(kind: str) -> bool:
    module = getattr(torch, kind, None)
    is_available = getattr(module, "is_available", None)
    try:
        return bool(is_available()) if callable(is_available) else False
    except Exception:  # a backend probe must never crash device selection
        return False


def resolve_device(device=None, name: str = "device") -> torch.device:
    """``device`` (a ``torch.device``, a string, or ``None`` for :func:`get_device`) checked as available."""
    if device is None:
        return get_device()
    if not isinstance(device, (str, torch.device)):
        raise ArgumentTypeError(f"{name} must be a string such as 'cpu' or a torch.device, got {device!r}")
    try:
        device = torch.device(device)
    except RuntimeError as e:
        raise DeviceError(f"{name}={device!r} is not a device name ({e}); use e.g. 'cpu', 'cuda' or 'mps'") from None
    check_available(device, f"{name}={device}")
    return device


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; return a CPU ``torch.Generator`` seeded with ``seed``.

    ``seed`` must be an integer in ``[0, 2**32 − 1]`` (NumPy's limit).
    """
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
