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

from .data import binarize
from .device import get_device
from .losses import elbo, estimate_log_likelihood
from .train import dataset_tensors

__all__ = ["edge_energy", "mean_se", "per_example_bounds"]


def mean_se(values: Tensor) -> tuple[float, float]:
    """``(mean, standard error)`` of a 1-D tensor of per-example values.

    ``SE = s / √n`` with ``s`` the sample standard deviation (``n − 1`` in the
    denominator). For a paired comparison pass the per-example differences.
    """
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if v.numel() < 2:
        raise ValueError("need at least two values for a standard error")
    return float(v.mean()), float(v.std(unbiased=True) / math.sqrt(v.numel()))


@torch.no_grad()
def per_example_bounds(model, data, k: int, *, seed: int = 0, batch_size: int = 100,
                       device=None) -> dict[str, Tensor]:
    """Per-example test bounds of a trained model, as float64 tensors ``(N,)`` on the CPU.

    Returns ``{"elbo": ELBO(x), "log_px": IWAE bound with k samples}``: one-sample
    ``E_q[log p_θ(x|z)] − KL(q_φ(z|x) ‖ p(z))`` and ``log (1/k) Σ_i p_θ(x, z_i)/q_φ(z_i|x)``,
    both in nats. A data set with ``binarize == "dynamic"`` is binarised once with
    ``seed`` (as :func:`~vae_tutorial.evaluate.evaluate_model` does), so two models
    scored with the same seed see the same binary images: their differences pair up.
    Labels are passed to a conditional model.
    """
    device = torch.device(device) if device is not None else get_device()
    images, labels = dataset_tensors(data)
    dtype = next(model.parameters()).dtype
    images = images.to(device=device, dtype=dtype)
    gen = torch.Generator(device=device).manual_seed(seed)
    if getattr(data, "binarize", None) == "dynamic":
        images = binarize(images, gen)
    conditional = hasattr(model, "num_classes")
    labels = labels.to(device) if (conditional and labels is not None) else None
    model.to(device)
    was_training = model.training
    model.eval()
    e, ll = [], []
    for i in range(0, images.shape[0], batch_size):
        x = images[i:i + batch_size]
        y = labels[i:i + batch_size] if labels is not None else None
        e.append(elbo(model, x, 1.0, y=y, generator=gen).elbo.double().cpu())
        ll.append(estimate_log_likelihood(model, x, k, y=y, generator=gen).double().cpu())
    model.train(was_training)
    return {"elbo": torch.cat(e), "log_px": torch.cat(ll)}


def edge_energy(images: Tensor) -> Tensor:
    """Mean squared intensity gradient of each image, ``(B,)``: a measure of sharpness.

    With horizontal and vertical finite differences ``Δ_h = x[i, j+1] − x[i, j]`` and
    ``Δ_v = x[i+1, j] − x[i, j]``, returns the mean over pixels of ``Δ_h² + Δ_v²``
    (each mean over its own valid positions). A blurred image has smaller differences
    between neighbours, hence less edge energy; images ``(B, C, H, W)`` in [0, 1].
    """
    x = torch.as_tensor(images, dtype=torch.float64)
    if x.dim() != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")
    dh = (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean(dim=(1, 2, 3))
    dv = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean(dim=(1, 2, 3))
    return dh + dv
