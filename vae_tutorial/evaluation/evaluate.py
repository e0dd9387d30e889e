"""Evaluation: test ELBO, IWAE log-likelihood in nats and bits/dim, active units, reconstruction error."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..training.data import binarize
from ..training.device import resolve_device
from ..errors import DataError, check_finite_parameters, check_images, check_int, check_model, check_seed, unchecked_data
from ..maths.losses import elbo, estimate_log_likelihood
from ..training.data import _check_data_once, dataset_tensors

__all__ = ["active_units", "bits_per_dim", "evaluate_model", "per_example_bounds", "reconstruction_error",
           "ACTIVE_UNIT_THRESHOLD"]

ACTIVE_UNIT_THRESHOLD = 0.01
"""A latent dimension is active when ``Var_x(E_q[z_j])`` exceeds this (Burda et al. 2016)."""


def bits_per_dim(nll_nats: float | Tensor, num_dims: int) -> float | Tensor:
    """Convert a negative log-likelihood in nats per example to bits per data dimension.

    ``bits/dim = NLL / (D · ln 2)``.
    """
    return nll_nats / (num_dims * math.log(2.0))


@torch.no_grad()
def posterior_mean_variance(model, x: Tensor, y: Tensor | None = None, batch_size: int = 1024) -> Tensor:
    """``Var_x(μ_φ(x))`` for each latent dimension, shape ``(Z,)``.

    Needs at least two examples (the variance of one sample is undefined): raises
    :class:`~vae_tutorial.errors.DataError` otherwise, rather than returning NaN.
    """
    if x.shape[0] < 2:
        raise DataError(f"the variance of the posterior means needs at least 2 examples, got {x.shape[0]}")
    mus = []
    for i in range(0, x.shape[0], batch_size):
        cond = () if y is None else (y[i:i + batch_size],)
        mu, _ = model.encode(x[i:i + batch_size], *cond)
        mus.append(mu.double())
    return torch.cat(mus).var(dim=0, unbiased=True)


def active_units(model, x: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD, y: Tensor | None = None) -> int:
    """Number of latent dimensions ``j`` with ``Var_x(E_{q_φ(z|x)}[z_j]) > threshold``.

    A dimension whose posterior mean does not move with ``x`` carries no information:
    it has collapsed to the prior (posterior collapse). Needs at least two examples.
    """
    return int((posterior_mean_variance(model, x, y) > threshold).sum())


@torch.no_grad()
def reconstruction_error(model, x: Tensor, y: Tensor | None = None, batch_size: int = 1024) -> Tensor:
    """Squared error between ``x`` and its reconstruction through ``μ_φ(x)``, summed per example: ``(B,)``."""
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size]
        cond = () if y is None else (y[i:i + batch_size],)
        rec = model.reconstruct(xb, *cond)
        out.append((rec - xb).pow(2).reshape(xb.shape[0], -1).sum(-1))
    return torch.cat(out)


def _prepare(model, data, k, batch_size, device, seed, max_examples):
    """Validate the arguments once; return ``k``, ``batch_size``, the (binarised) images and
    labels on the device, and the generator that drew the binarisation."""
    check_model(model)
    check_finite_parameters(model)
    k = check_int("k", k, min=1)
    batch_size = check_int("batch_size", batch_size, min=1)
    seed = check_seed(seed)
    if max_examples is not None:
        max_examples = check_int("max_examples", max_examples, min=1)
    device = resolve_device(device)
    images, labels = dataset_tensors(data)
    if max_examples is not None:
        images = images[:max_examples]
        labels = labels[:max_examples] if labels is not None else None
    conditional = hasattr(model, "num_classes")
    if conditional and labels is None:
        raise DataError("a ConditionalVAE needs a data set with labels")
    check_images(model, images, "the evaluation data")
    _check_data_once(images, labels, getattr(model, "likelihood", None),
                     getattr(model, "num_classes", None) if conditional else None, "the evaluation data")
    dtype = next(model.parameters()).dtype
    images = images.to(device=device, dtype=dtype)
    gen = torch.Generator(device=device).manual_seed(seed)
    if getattr(data, "binarize", None) == "dynamic":
        images = binarize(images, gen)
    labels = labels.to(device) if (conditional and labels is not None) else None
    model.to(device)
    return k, batch_size, images, labels, gen


def _bounds(model, images, labels, k, batch_size, gen) -> dict[str, Tensor]:
    """Per-example ``elbo``, ``reconstruction``, ``kl`` and ``log_px`` (float64, on the device)."""
    parts = {"elbo": [], "reconstruction": [], "kl": [], "log_px": []}
    was_training = model.training
    model.eval()
    try:
        with unchecked_data():  # checked once, in _prepare
            for i in range(0, images.shape[0], batch_size):
                x = images[i:i + batch_size]
                y = labels[i:i + batch_size] if labels is not None else None
                t = elbo(model, x, 1.0, y=y, generator=gen)
                ll = estimate_log_likelihood(model, x, k, y=y, generator=gen)
                for name, v in zip(parts, (t.elbo, t.reconstruction, t.kl, ll)):
                    parts[name].append(v.double())
    finally:
        model.train(was_training)
    return {name: torch.cat(v) for name, v in parts.items()}


@torch.no_grad()
def per_example_bounds(model, data, k: int = 1000, *, seed: int = 0, batch_size: int = 100,
                       device=None, max_examples: int | None = None) -> dict[str, Tensor]:
    """Per-example test bounds of a trained model, as float64 tensors ``(N,)`` on the CPU.

    Returns ``elbo`` (one-sample ``E_q[log p_θ(x|z)] − KL(q_φ(z|x) ‖ p(z))``), its
    ``reconstruction`` and ``kl`` terms, and ``log_px``, the IWAE bound
    ``log (1/k) Σ_i p_θ(x, z_i)/q_φ(z_i|x)``, all in nats. The draws are those of
    :func:`evaluate_model` with the same ``seed`` (whose results are these values' means), so
    two models scored with the same seed see the same binary images and their per-example
    differences pair up. Same arguments and errors as :func:`evaluate_model`.
    """
    k, batch_size, images, labels, gen = _prepare(model, data, k, batch_size, device, seed, max_examples)
    return {name: v.cpu() for name, v in _bounds(model, images, labels, k, batch_size, gen).items()}


@torch.no_grad()
def evaluate_model(model, data, *, k: int = 1000, batch_size: int = 100, device=None, seed: int = 0,
                   max_examples: int | None = None) -> dict:
    """The book's evaluation of a trained VAE on a data set.

    Returns a dict with per-example means over the data set:
    ``elbo``, ``reconstruction``, ``kl`` (nats, β = 1), ``nll`` (−IWAE bound with ``k``
    samples, nats), ``bits_per_dim``, ``active_units``, ``recon_error`` (summed squared
    error), plus ``n``, ``k`` and ``dims``. A data set with ``binarize == "dynamic"``
    is binarised once with ``seed`` so that the number is reproducible.

    ``active_units`` is ``None`` for a single example: a variance over one point is
    undefined (it would be NaN, and "0 active units" would be wrong).

    Raises:
        ArgumentError, ArgumentTypeError: ``k``, ``batch_size``, ``max_examples`` not
            positive integers, ``seed`` out of range, ``model`` not a VAE.
        DataError: empty data, NaN/inf pixels, pixels outside what the likelihood
            needs, labels out of range (checked once, before any batch).
    """
    k, batch_size, images, labels, gen = _prepare(model, data, k, batch_size, device, seed, max_examples)
    per_example = _bounds(model, images, labels, k, batch_size, gen)
    n = images.shape[0]
    e, r, kl, ll = (float(per_example[name].mean()) for name in ("elbo", "reconstruction", "kl", "log_px"))
    dims = images[0].numel()
    return {
        "elbo": e, "reconstruction": r, "kl": kl, "nll": -ll,
        "bits_per_dim": bits_per_dim(-ll, dims),
        "active_units": active_units(model, images, y=labels) if n >= 2 else None,
        "recon_error": float(reconstruction_error(model, images, labels).mean()),
        "n": n, "k": k, "dims": dims,
    }
