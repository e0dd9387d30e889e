"""Comparing trained models honestly: per-example bounds, paired standard errors, sharpness.

A difference of two test-set means is only meaningful next to its standard error. When
two models are scored on the *same* test images, the per-example differences remove the
variation between images (some garments are simply harder to code than others), so the
paired standard error is far smaller than either model's own.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .evaluate import per_example_bounds  # noqa: F401  (one implementation, re-exported here)
from ..errors import ArgumentError, check_tensor

__all__ = ["edge_energy", "mean_se"]  # per_example_bounds is documented in evaluate


def mean_se(values: Tensor) -> tuple[float, float]:
    """``(mean, standard error)`` of a 1-D tensor of per-example values.

    ``SE = s / √n`` with ``s`` the sample standard deviation (``n − 1`` in the
    denominator). For a paired comparison pass the per-example differences.
    """
    v = check_tensor("values", values).to(torch.float64).reshape(-1)  # NaN refused: no silent (nan, nan)
    if v.numel() < 2:
        raise ArgumentError(f"values: need at least two values for a standard error, got {v.numel()}")
    return float(v.mean()), float(v.std(unbiased=True) / math.sqrt(v.numel()))


def edge_energy(images: Tensor) -> Tensor:
    """Mean squared intensity gradient of each image, ``(B,)``: a measure of sharpness.

    With horizontal and vertical finite differences ``Δ_h = x[i, j+1] − x[i, j]`` and
    ``Δ_v = x[i+1, j] − x[i, j]``, returns the mean over pixels of ``Δ_h² + Δ_v²``
    (each mean over its own valid positions). A blurred image has smaller differences
    between neighbours, hence less edge energy; images ``(B, C, H, W)`` in [0, 1].
    """
    x = check_tensor("images", images).to(torch.float64)
    if x.dim() != 4:
        raise ArgumentError(f"images: expected images (B, C, H, W), got shape {tuple(x.shape)}; add the "
                            "channel dimension (x[:, None]) or a batch one (x[None])")
    if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] < 2 or x.shape[3] < 2:
        raise ArgumentError(f"images: edge energy needs a non-empty batch of images at least 2 × 2 pixels "
                            f"(neighbours to differ from), got shape {tuple(x.shape)}")
    dh = (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean(dim=(1, 2, 3))
    dv = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean(dim=(1, 2, 3))
    return dh + dv
