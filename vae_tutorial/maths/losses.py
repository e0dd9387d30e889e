"""The maths of a VAE: KL terms, the reparameterisation trick, log-likelihoods and bounds.

Notation (as in the book):

* ``q_φ(z|x) = N(z; μ, diag σ²)`` is the encoder (approximate posterior), with
  ``logvar = log σ²``;
* ``p_θ(x|z)`` is the decoder (likelihood);
* ``p(z) = N(0, I)`` is the prior.

Shapes: ``B`` batch, ``D`` data dims, ``Z`` latent dims, ``K`` importance samples.
Every per-example quantity has shape ``(B,)`` and is *summed* over data or latent
dimensions, never averaged over pixels (averaging over pixels silently rescales the
reconstruction term, the accidental β of errata E9).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ArgumentError, ArgumentTypeError, DataError, check_images, check_unit_interval

LOG_2PI = math.log(2.0 * math.pi)

__all__ = [
    "ELBOTerms",
    "bernoulli_log_likelihood",
    "continuous_bernoulli_log_likelihood",
    "discretized_logistic_log_likelihood",
    "elbo",
    "estimate_log_likelihood",
    "gaussian_log_likelihood",
    "iwae_bound",
    "kl_normal",
    "kl_standard_normal",
    "reparameterize",
]


def _flat(t: Tensor) -> Tensor:
    """``(B, ...) -> (B, D)``; works on non-contiguous inputs."""
    return t.reshape(t.shape[0], -1)


def kl_standard_normal_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL( N(μ, σ²) ‖ N(0, 1) ) for each latent dimension, shape ``(B, Z)``.

    ``½ (μ² + σ² − 1 − log σ²)``, written with ``expm1`` so that it stays accurate
    (and exactly 0) when ``logvar`` is near 0.
    """
    return 0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar)


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """Closed-form ``KL(q_φ(z|x) ‖ p(z))`` for a diagonal Gaussian against ``N(0, I)``.

    ``KL = −½ Σ_j (1 + log σ_j² − μ_j² − σ_j²)``, summed over the ``Z`` latent
    dimensions. It is ≥ 0, and 0 only at ``μ = 0, σ = 1``.

    Args:
        mu: ``(B, Z)`` posterior means μ.
        logvar: ``(B, Z)`` posterior log-variances log σ².

    Returns:
        ``(B,)`` KL per example, in nats.
    """
    return kl_standard_normal_per_dim(mu, logvar).sum(dim=-1)


def kl_normal(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """Closed-form KL between two diagonal Gaussians, ``KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²))``.

    ``KL = ½ Σ_j [ log σ_p² − log σ_q² + (σ_q² + (μ_q − μ_p)²) / σ_p² − 1 ]``.
    With ``μ_p = 0, log σ_p² = 0`` it equals :func:`kl_standard_normal`.

    Args:
        mu_q, logvar_q: ``(B, Z)`` parameters of q.
        mu_p, logvar_p: ``(B, Z)`` (or broadcastable) parameters of p.

    Returns:
        ``(B,)`` KL per example, in nats.
    """
    mu_q, logvar_q, mu_p, logvar_p = torch.broadcast_tensors(mu_q, logvar_q, mu_p, logvar_p)
    diff = logvar_q - logvar_p
    per_dim = 0.5 * (torch.expm1(diff) - diff + (mu_q - mu_p).pow(2) * torch.exp(-logvar_p))
    return per_dim.sum(dim=-1)


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw ``z ~ q_φ(z|x)`` as a differentiable function of ``(μ, log σ²)``.

    ``z = μ + σ ⊙ ε`` with ``σ = exp(½ log σ²)`` and ``ε ~ N(0, I)``: the randomness
    sits in ε, so gradients flow to μ and log σ² (the pathwise estimator).

    Args:
        mu, logvar: ``(..., Z)`` tensors of the same shape.
        generator: optional ``torch.Generator`` for reproducible noise; it may live on
            a different device than ``mu`` (the noise is then moved).

    Returns:
        ``z`` with the shape, dtype and device of ``mu``.
    """
    if generator is not None and generator.device != mu.device:
        eps = torch.randn(mu.shape, generator=generator, device=generator.device, dtype=mu.dtype)
        eps = eps.to(mu.device)
    else:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def bernoulli_log_likelihood(logits: Tensor, x: Tensor) -> Tensor:
    """``log p_θ(x|z)`` for a factorised Bernoulli decoder, from logits.

    ``Σ_d [x_d ℓ_d − softplus(ℓ_d)]`` with ``ℓ = logits``: the same number as
    ``Σ x log σ(ℓ) + (1 − x) log(1 − σ(ℓ))`` but never takes ``log`` of a
    saturated sigmoid, so it is finite for any finite logits.

    Args:
        logits: ``(B, ...)`` decoder logits.
        x: ``(B, ...)`` data in [0, 1], same number of elements per example.

    Returns:
        ``(B,)`` log-likelihood per example, summed over the ``D`` data dimensions.

    Raises:
        DataError: if ``x`` leaves [0, 1] (e.g. 0..255 pixels), where the formula still
            returns finite but meaningless numbers. The check is one reduction over ``x``;
            ``fit`` and ``evaluate_model`` check the whole data set once and skip it.
    """
    check_unit_interval(x, "bernoulli_log_likelihood")
    logits, x = _flat(logits), _flat(x)
    if logits.shape == x.shape and not x.requires_grad:
        return _BernoulliLogLikelihood.apply(logits, x)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=-1)


class _BernoulliLogLikelihood(torch.autograd.Function):
    """``Σ_d [x_d ℓ_d − softplus(ℓ_d)]`` with its gradient ``∂/∂ℓ = x − σ(ℓ)`` written out.

    The same number as ``−binary_cross_entropy_with_logits(ℓ, x).sum(−1)``, in fewer
    passes over the ``(B, D)`` logits: two forward (softplus, then ``x·ℓ`` subtracted
    and summed) and three backward, where PyTorch's general loss makes about seven.
    On a CPU this is a few per cent of a small MLP's training step, and of every
    decoder pass of an importance-sampled evaluation. softplus returns ℓ itself for
    ℓ > 20, where the exact value differs by less than e⁻²⁰ per pixel.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, x: Tensor) -> Tensor:
        ctx.save_for_backward(logits, x)
        return torch.addcmul(F.softplus(logits), x, logits, value=-1.0).sum(dim=-1).neg_()

    @staticmethod
    def backward(ctx, grad: Tensor):
        logits, x = ctx.saved_tensors
        scale = grad.unsqueeze(-1)
        if torch.is_grad_enabled():  # create_graph=True: no in-place ops on recorded tensors
            return (x - torch.sigmoid(logits)) * scale, None
        return torch.sigmoid(logits).sub_(x).mul_(scale.neg()), None


def gaussian_log_likelihood(x: Tensor, mean: Tensor, logvar: Tensor | float) -> Tensor:
    """Diagonal Gaussian log density ``log N(x; mean, diag exp(logvar))``.

    ``−½ Σ_d [log 2π + log σ_d² + (x_d − m_d)² / σ_d²]``, including the ``log 2π``
    constant so that values are real log densities (comparable in nats).

    Args:
        x: ``(B, ...)`` points.
        mean: ``(B, ...)`` means (broadcastable to ``x``).
        logvar: log-variances, a tensor broadcastable to ``x`` or a float.

    Returns:
        ``(B,)`` log density per example, summed over dimensions.
    """
    logvar = torch.as_tensor(logvar, dtype=x.dtype, device=x.device)
    x, mean, logvar = torch.broadcast_tensors(x, mean, logvar)
    per_dim = LOG_2PI + logvar + (x - mean).pow(2) * torch.exp(-logvar)
    return -0.5 * _flat(per_dim).sum(dim=-1)


def continuous_bernoulli_log_norm(logits: Tensor) -> Tensor:
    """Elementwise ``log C(λ)``, the continuous Bernoulli normaliser (Loaiza-Ganem & Cunningham 2019).

    With ``λ = σ(ℓ)``, ``C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ) = ℓ / tanh(ℓ/2)``, so
    ``log C = log|ℓ| + log1p(e^{−|ℓ|}) − log1p(−e^{−|ℓ|})``, stable for large ``|ℓ|``.
    Near ``ℓ = 0`` that expression cancels, so a Taylor series
    ``log 2 + ℓ²/12 − 7ℓ⁴/1440`` is used instead.
    """
    a = logits.abs()
    small = a < 1e-2
    safe = torch.where(small, torch.ones_like(a), a)  # keeps the unused branch finite for autograd
    e = torch.exp(-safe)
    exact = torch.log(safe) + torch.log1p(e) - torch.log1p(-e)
    a2 = a * a
    taylor = math.log(2.0) + a2 / 12.0 - 7.0 * a2 * a2 / 1440.0
    return torch.where(small, taylor, exact)


def continuous_bernoulli_log_likelihood(logits: Tensor, x: Tensor) -> Tensor:
    """``log p_θ(x|z)`` for a factorised continuous Bernoulli decoder.

    The Bernoulli term plus the log normaliser: ``Σ_d [x_d ℓ_d − softplus(ℓ_d) + log C(σ(ℓ_d))]``.
    Unlike the Bernoulli "likelihood" on grey levels, this is a normalised density
    on ``[0, 1]`` (errata E10), so it can be compared across models in nats.

    Args:
        logits: ``(B, ...)`` decoder logits.
        x: ``(B, ...)`` data in [0, 1].

    Returns:
        ``(B,)`` log density per example.

    Raises:
        DataError: if ``x`` leaves [0, 1], the support of the density.
    """
    check_unit_interval(x, "continuous_bernoulli_log_likelihood")
    return bernoulli_log_likelihood(logits, x) + _flat(continuous_bernoulli_log_norm(logits)).sum(dim=-1)


def _log_sigmoid_difference(upper: Tensor, lower: Tensor) -> Tensor:
    """``log(σ(u) − σ(l))`` for ``u > l``, without cancellation.

    ``σ(u) − σ(l) = σ(u) · σ(−l) · (1 − e^{−(u − l)})``, so the log is a sum of three
    terms that are each accurate in float32, even far in either tail where ``σ(u)``
    and ``σ(l)`` round to the same number. ``l = −∞`` (or ``u = +∞``) gives the
    one-sided ``log σ(u)`` (or ``log σ(−l)``).
    """
    return F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(lower - upper))


def discretized_logistic_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor | float,
                                        levels: int = 256) -> Tensor:
    """``log P_θ(x|z)`` for grey levels under a factorised discretised logistic.

    A probability *mass* function on the ``L = levels`` grey levels
    ``c_k = k / (L − 1)``, ``k = 0 … L − 1`` (Salimans et al. 2017, one mixture
    component): with bin half-width ``h = 1 / (2(L − 1))`` and ``F`` the logistic
    CDF with location ``m`` and scale ``s``,

    ``P(x = c_k) = F(c_k + h) − F(c_k − h)``, except that the first bin takes all the
    mass below (``F(h)``) and the last all the mass above (``1 − F(1 − h)``), so
    the ``L`` probabilities sum to exactly one. Unlike a density on ``[0, 1]`` it
    is bounded by 1, also on the levels 0 and 1, so ``−log P`` in nats (or bits
    per dimension) compares with any other model of the same ``L`` levels.

    Args:
        x: ``(B, ...)`` grey levels in ``[0, 1]``; each value is rounded to the
            nearest level ``c_k`` (data stored as ``k/255`` map to themselves).
        mean: ``(B, ...)`` locations ``m`` (unconstrained; broadcastable to ``x``).
        log_scale: ``log s``, a tensor broadcastable to ``x`` or a float.
        levels: number of grey levels ``L ≥ 2`` (256 for 8-bit images).

    Returns:
        ``(B,)`` log-probability per example in nats, summed over dimensions.
    """
    if int(levels) != levels or levels < 2:
        raise ArgumentError(f"levels must be an integer ≥ 2, got {levels!r}")
    log_scale = torch.as_tensor(log_scale, dtype=mean.dtype, device=mean.device)
    x, mean, log_scale = torch.broadcast_tensors(x, mean, log_scale)
    k = torch.round(x * (levels - 1)).clamp(0, levels - 1)
    inv_s = torch.exp(-log_scale)
    centred = k / (levels - 1) - mean
    half = 0.5 / (levels - 1)
    upper = torch.where(k == levels - 1, torch.full_like(centred, math.inf), (centred + half) * inv_s)
    lower = torch.where(k == 0, torch.full_like(centred, -math.inf), (centred - half) * inv_s)
    return _flat(_log_sigmoid_difference(upper, lower)).sum(dim=-1)


def discretized_logistic_mean(mean: Tensor, log_scale: Tensor | float, levels: int = 256) -> Tensor:
    """The mean grey level ``E[x] = Σ_k c_k P(x = c_k)`` of the discretised logistic, elementwise.

    Computed as ``Σ_{k=1}^{L−1} P(x ≥ c_k) / (L − 1)`` with
    ``P(x ≥ c_k) = σ((m − c_k + h) / s)``, one level at a time, so memory stays at the
    size of ``mean`` (a ``(…, L)`` tensor of probabilities would be 256 times larger).
    Lies in ``[0, 1]`` even when the location ``m`` does not.
    """
    log_scale = torch.as_tensor(log_scale, dtype=mean.dtype, device=mean.device)
    inv_s = torch.exp(-log_scale)
    half = 0.5 / (levels - 1)
    total = torch.zeros_like(mean * inv_s)
    for k in range(1, levels):
        total = total + torch.sigmoid((mean - k / (levels - 1) + half) * inv_s)
    return total / (levels - 1)


@dataclass
class ELBOTerms:
    """Per-example terms of the (β-weighted) ELBO, each of shape ``(B,)``.

    ``elbo = reconstruction − beta * kl``; ``reconstruction`` is the one-sample
    estimate of ``E_q[log p_θ(x|z)]`` and ``kl`` is ``KL(q_φ(z|x) ‖ p(z))`` in closed
    form. ``kl_per_dim`` ``(B, Z)`` keeps the KL of each latent dimension (free bits,
    active units); it is ``None`` for a deterministic autoencoder.
    """

    elbo: Tensor
    reconstruction: Tensor
    kl: Tensor
    kl_per_dim: Tensor | None = None


def _cond(y: Tensor | None) -> tuple:
    return () if y is None else (y,)


def elbo(model, x: Tensor, beta: float = 1.0, *, y: Tensor | None = None,
         generator: torch.Generator | None = None) -> ELBOTerms:
    """One-sample estimate of ``ELBO(x) = E_q[log p_θ(x|z)] − β KL(q_φ(z|x) ‖ p(z))``.

    With ``β = 1`` this is a lower bound on ``log p_θ(x)``; the gap is
    ``KL(q_φ(z|x) ‖ p_θ(z|x))``. Training minimises ``−ELBO`` averaged over a batch.

    Args:
        model: a :class:`~vae_tutorial.models.vae.VAE` (or anything with ``encode``,
            ``decode`` and ``log_likelihood``). A model with an
            ``elbo_terms(x, beta, *cond, generator=)`` method computes its own terms
            (hierarchical and autoregressive models do). For an
            :class:`~vae_tutorial.models.vae.Autoencoder` the code is deterministic, the
            KL is 0 and the "ELBO" is just the reconstruction log-likelihood.
        x: ``(B, ...)`` data batch.
        beta: weight of the KL term (β-VAE); ``1.0`` gives the ELBO.
        y: ``(B,)`` labels, for a conditional model.
        generator: optional generator for the reparameterisation noise.

    Returns:
        :class:`ELBOTerms` with per-example tensors of shape ``(B,)``.
    """
    _check_batch(x, "elbo")
    x = check_images(model, x, "elbo: x")
    if callable(getattr(model, "elbo_terms", None)):
        # A model whose bound is not "one Gaussian z" (hierarchical latents, an
        # autoregressive decoder, a diffusion chain) computes its own terms; fit,
        # evaluate_model and the checks then treat it like any other VAE.
        return model.elbo_terms(x, beta, *_cond(y), generator=generator)
    mu, logvar = model.encode(x, *_cond(y))
    if logvar is None:  # deterministic autoencoder: no posterior, no KL
        rec = model.log_likelihood(x, model.decode(mu, *_cond(y)))
        kl = torch.zeros_like(rec)
        return ELBOTerms(elbo=rec, reconstruction=rec, kl=kl, kl_per_dim=None)
    z = reparameterize(mu, logvar, generator)
    rec = model.log_likelihood(x, model.decode(z, *_cond(y)))
    kl_dims = kl_standard_normal_per_dim(mu, logvar)
    kl = kl_dims.sum(dim=-1)
    return ELBOTerms(elbo=rec - beta * kl, reconstruction=rec, kl=kl, kl_per_dim=kl_dims)


def _check_batch(x: Tensor, where: str) -> None:
    # A shape test only (no pass over the data): cheap enough for every training step.
    if not isinstance(x, Tensor) or x.dim() == 0 or x.shape[0] == 0:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise DataError(f"{where} needs a non-empty batch x of shape (B, ...) with B ≥ 1, got {shape}")


def _chunk_size(batch: int, data_dims: int, k: int, max_elements: int) -> int:
    return max(1, min(k, max_elements // max(1, batch * data_dims)))


def iwae_log_weights(model, x: Tensor, k: int, *, y: Tensor | None = None,
                     generator: torch.Generator | None = None,
                     max_elements: int = 1 << 23):
    """Yield log importance weights ``log w = log p_θ(x|z) + log p(z) − log q_φ(z|x)``.

    Samples ``z_1..z_K ~ q_φ(z|x)`` in chunks of shape ``(c, B)`` so that at most
    about ``max_elements`` decoder outputs exist at once. A model with its own
    ``log_importance_weights(x, k, *cond, generator=, max_elements=)`` method (e.g. a
    hierarchical VAE, whose ``z`` is several layers) yields its chunks instead.
    """
    if callable(getattr(model, "log_importance_weights", None)):
        yield from model.log_importance_weights(x, k, *_cond(y), generator=generator,
                                                max_elements=max_elements)
        return
    mu, logvar = model.encode(x, *_cond(y))
    if logvar is None:
        raise ArgumentTypeError("iwae_bound needs a VAE: the model's encoder returned no log-variance")
    b = x.shape[0]
    data_dims = x[0].numel()
    step = _chunk_size(b, data_dims, k, max_elements)
    for start in range(0, k, step):
        c = min(step, k - start)
        mu_c = mu.unsqueeze(0).expand(c, *mu.shape)
        lv_c = logvar.unsqueeze(0).expand(c, *logvar.shape)
        z = reparameterize(mu_c, lv_c, generator)  # (c, B, Z)
        zf = z.reshape(c * b, -1)
        xf = x.unsqueeze(0).expand(c, *x.shape).reshape(c * b, *x.shape[1:])
        yf = () if y is None else (y.unsqueeze(0).expand(c, b).reshape(-1),)
        log_px_z = model.log_likelihood(xf, model.decode(zf, *yf)).view(c, b)
        log_pz = gaussian_log_likelihood(zf, torch.zeros_like(zf), 0.0).view(c, b)
        log_qz = gaussian_log_likelihood(zf, mu_c.reshape(c * b, -1), lv_c.reshape(c * b, -1)).view(c, b)
        yield log_px_z + log_pz - log_qz


def iwae_bound(model, x: Tensor, k: int, *, y: Tensor | None = None,
               generator: torch.Generator | None = None, max_elements: int = 1 << 23) -> Tensor:
    """Importance-weighted bound (Burda et al. 2016) with ``k`` samples.

    ``L_k(x) = log (1/K) Σ_k p_θ(x, z_k) / q_φ(z_k|x)``, ``z_k ~ q_φ(z|x)``, computed
    with ``logsumexp``. ``L_1`` is the ELBO, ``E[L_k] ≤ E[L_{k+1}] ≤ log p_θ(x)``.
    Samples are processed in chunks, with a running ``logsumexp``, so ``k = 5000``
    fits in memory.

    Args:
        model: a VAE (``encode``, ``decode``, ``log_likelihood``).
        x: ``(B, ...)`` data.
        k: number of importance samples ``K ≥ 1``.
        y: labels for a conditional model.
        generator: optional generator for reproducible samples.
        max_elements: rough cap on decoder outputs held at once.

    Returns:
        ``(B,)`` bound per example, in nats.
    """
    if (isinstance(k, bool) or not isinstance(k, numbers.Real) or not float(k).is_integer()
            or k < 1):
        raise ArgumentError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    _check_batch(x, "iwae_bound")
    x = check_images(model, x, "iwae_bound: x")
    total = None
    for log_w in iwae_log_weights(model, x, k, y=y, generator=generator, max_elements=max_elements):
        chunk = torch.logsumexp(log_w, dim=0)
        total = chunk if total is None else torch.logaddexp(total, chunk)
    return total - math.log(k)


@torch.no_grad()
def estimate_log_likelihood(model, x: Tensor, k: int = 1000, *, y: Tensor | None = None,
                            generator: torch.Generator | None = None,
                            max_elements: int = 1 << 23) -> Tensor:
    """The book's test log-likelihood: ``log p_θ(x) ≈ L_k(x)`` with a large ``k``.

    Runs :func:`iwae_bound` without gradients and with the model in eval mode
    (restoring its previous mode afterwards).

    Returns:
        ``(B,)`` estimate of ``log p_θ(x)`` in nats (a lower bound in expectation).
    """
    was_training = model.training
    model.eval()
    try:
        return iwae_bound(model, x, k, y=y, generator=generator, max_elements=max_elements)
    finally:
        model.train(was_training)
