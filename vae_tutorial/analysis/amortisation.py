"""Inference suboptimality: the approximation gap and the amortisation gap.

For one data point ``x`` let ``q_φ(z|x)`` be the encoder's diagonal Gaussian and
``q*(z|x)`` the best diagonal Gaussian for that ``x`` alone, the one that maximises
``ELBO(q) = E_q[log p_θ(x|z)] − KL(q ‖ p(z))``. Then (Cremer, Li & Duvenaud 2018)

    log p_θ(x) ≥ ELBO(q*) ≥ ELBO(q_φ),

    log p_θ(x) − ELBO(q_φ) = [log p_θ(x) − ELBO(q*)]  +  [ELBO(q*) − ELBO(q_φ)]
                              approximation gap          amortisation gap

The approximation gap is the price of the Gaussian family (``KL(q* ‖ p_θ(z|x))``); the
amortisation gap is the price of one encoder network serving every ``x`` instead of
a separate optimisation per example.

This module finds ``q*`` by gradient ascent on the ELBO over ``(μ, log σ²)`` of each
example (the decoder is frozen), evaluates ELBOs of arbitrary Gaussians, and estimates
``log p_θ(x)`` with an importance-weighted bound whose proposal mixes ``q_φ`` and ``q*``.
Shapes: ``B`` examples, ``Z`` latent dims, ``K`` importance samples.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import Tensor

from ..errors import (
    ArgumentError,
    check_finite_parameters,
    check_float,
    check_images,
    check_int,
    check_one_latent_vae,
    check_seed,
    check_tensor,
)
from ..maths.losses import (
    _check_batch,
    gaussian_log_likelihood,
    kl_standard_normal,
    reparameterize,
)

__all__ = ["gaussian_elbo", "inference_gaps", "mixture_iwae_bound", "optimal_gaussian"]


def _model_and_data(model, x: Tensor, what: str) -> Tensor:
    """Check ``model`` (a one-code VAE with finite weights) and ``x`` (its image shape),
    before any work; ``x`` is returned on the model's device, in its dtype."""
    check_one_latent_vae(model, what)
    check_finite_parameters(model)
    _check_batch(x, what)
    x = check_images(model, x, f"{what}: x")
    p = next(model.parameters())
    return x.to(p.device)


def _gaussian(model, x: Tensor, mu, logvar, what: str, name: str = "mu, logvar") -> tuple[Tensor, Tensor]:
    """``(μ, log σ²)`` of one Gaussian per example: finite ``(B, Z)`` tensors, with B the batch of
    ``x`` and Z the model's ``latent_dim``, on the model's device."""
    names = [n.strip() for n in name.split(",")]
    mu = check_tensor(names[0], mu, dim=2)
    logvar = check_tensor(names[1], logvar, dim=2)
    want = (x.shape[0], int(model.latent_dim))
    if tuple(mu.shape) != want or tuple(logvar.shape) != want:
        raise ArgumentError(f"{what}: {names[0]} and {names[1]} must be (B, Z) = {want} (the batch of x and the "
                            f"model's latent_dim), got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    p = next(model.parameters())
    return mu.to(p.device, p.dtype), logvar.to(p.device, p.dtype)


@contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def gaussian_elbo(model, x: Tensor, mu: Tensor, logvar: Tensor, samples: int = 1,
                  generator: torch.Generator | None = None) -> Tensor:
    """ELBO of an arbitrary diagonal Gaussian ``q = N(μ, diag e^{log σ²})`` for ``x``.

    ``E_q[log p_θ(x|z)] − KL(q ‖ p(z))``: the reconstruction term is averaged over
    ``samples`` reparameterised draws, the KL is in closed form. Differentiable in
    ``μ`` and ``log σ²``. With the encoder's own ``(μ, log σ²)`` and ``samples = 1`` it
    is the same number as :func:`vae_tutorial.maths.losses.elbo` given the same noise.

    Args:
        model: a VAE (``decode``, ``log_likelihood``).
        x: ``(B, ...)`` data.
        mu, logvar: ``(B, Z)`` parameters of q.
        samples: number ``S`` of draws for the reconstruction term.
        generator: optional generator for the noise.

    Returns:
        ``(B,)`` ELBO per example, in nats.
    """
    s = check_int("samples", samples, min=1)
    x = _model_and_data(model, x, "gaussian_elbo")
    mu, logvar = _gaussian(model, x, mu, logvar, "gaussian_elbo")
    return _gaussian_elbo(model, x, mu, logvar, s, generator)


def _gaussian_elbo(model, x: Tensor, mu: Tensor, logvar: Tensor, s: int, generator) -> Tensor:
    # the arguments were checked by the public callers, once (optimal_gaussian calls this per step)
    b = x.shape[0]
    z = reparameterize(mu.unsqueeze(0).expand(s, *mu.shape),
                       logvar.unsqueeze(0).expand(s, *logvar.shape), generator)  # (S, B, Z)
    xf = x.unsqueeze(0).expand(s, *x.shape).reshape(s * b, *x.shape[1:])
    rec = model.log_likelihood(xf, model.decode(z.reshape(s * b, -1))).view(s, b).mean(0)
    return rec - kl_standard_normal(mu, logvar)


def optimal_gaussian(model, x: Tensor, mu0: Tensor, logvar0: Tensor, *, steps: int = 500,
                     lr: float = 1e-2, samples: int = 16,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Per-example ``q*(z|x)``: maximise :func:`gaussian_elbo` over ``(μ, log σ²)`` with Adam.

    Starts from ``(mu0, logvar0)`` (usually the encoder's output, so ``q*`` is at least
    as good as ``q_φ`` up to Monte Carlo noise) and takes ``steps`` Adam steps on the
    sum over the batch of ELBOs, each estimated with ``samples`` draws. The examples'
    parameters do not interact (each ELBO depends on its own row only, and Adam
    scales each coordinate separately), so this is ``B`` independent optimisations run
    together. The learning rate decays to 0 on a cosine schedule so that the last
    iterates average out the Monte Carlo noise of the gradients. The model's
    parameters are not changed and receive no gradient.

    Args:
        model: a trained VAE.
        x: ``(B, ...)`` data.
        mu0, logvar0: ``(B, Z)`` starting point.
        steps, lr, samples: optimisation settings.
        generator: optional generator for the noise.

    Returns:
        ``(μ*, log σ*²)``, each ``(B, Z)``, detached.
    """
    steps = check_int("steps", steps, min=1)  # steps ≤ 0 would return the start and report no gap
    lr = check_float("lr", lr, min=0, min_open=True)
    samples = check_int("samples", samples, min=1)
    x = _model_and_data(model, x, "optimal_gaussian")
    mu0, logvar0 = _gaussian(model, x, mu0, logvar0, "optimal_gaussian", "mu0, logvar0")
    mu = mu0.detach().clone().requires_grad_(True)
    logvar = logvar0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([mu, logvar], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    with _eval_mode(model), torch.enable_grad():
        for _ in range(steps):
            loss = -_gaussian_elbo(model, x, mu, logvar, samples, generator).sum()
            # only (μ, log σ²) get gradients: the decoder stays as trained
            g_mu, g_lv = torch.autograd.grad(loss, [mu, logvar])
            mu.grad, logvar.grad = g_mu, g_lv
            opt.step()
            sched.step()
    return mu.detach(), logvar.detach()


@torch.no_grad()
def mixture_iwae_bound(model, x: Tensor, proposals: list[tuple[Tensor, Tensor]], k: int, *,
                       generator: torch.Generator | None = None,
                       max_elements: int = 1 << 23) -> Tensor:
    """Importance-weighted bound on ``log p_θ(x)`` with a mixture of Gaussian proposals.

    With ``M`` proposals ``q_m = N(μ_m, diag σ_m²)`` and ``r(z) = (1/M) Σ_m q_m(z)``,
    ``k/M`` codes are drawn from each ``q_m`` (stratified sampling) and

        L = log (1/k) Σ_i p_θ(x|z_i) p(z) / r(z_i).

    ``(1/k) Σ_i w_i`` is an unbiased estimate of ``p_θ(x)`` (each stratum averages
    ``p_θ(x, z)/r(z)`` under ``q_m``, and the strata average to ``r``), so ``L`` is a
    lower bound in expectation, like the IWAE bound. A mixture is a safe proposal:
    ``r ≥ q_m / M`` everywhere, so a weight is never more than ``M`` times the smallest
    of the components' weights ``p_θ(x, z)/q_m(z)``: a broad component tames the heavy
    tail of the weights of a narrow one. With one proposal, the
    encoder's ``(μ, log σ²)`` and the same noise this is :func:`vae_tutorial.maths.losses.iwae_bound`.

    Args:
        model: a VAE (``decode``, ``log_likelihood``).
        x: ``(B, ...)`` data.
        proposals: list of ``M`` pairs ``(μ_m, log σ_m²)``, each ``(B, Z)``.
        k: total number of samples, a multiple of ``M``.
        generator: optional generator.
        max_elements: rough cap on decoder outputs held at once.

    Returns:
        ``(B,)`` bound per example, in nats.
    """
    if not isinstance(proposals, (list, tuple)):
        raise ArgumentError(f"proposals must be a list of (mu, logvar) pairs, got {type(proposals).__name__}")
    m = len(proposals)
    k = check_int("k", k, min=1)
    if m < 1 or k < m or k % m:
        raise ArgumentError(f"k must be a positive multiple of the number of proposals ({m}), got {k!r}")
    max_elements = check_int("max_elements", max_elements, min=1)
    x = _model_and_data(model, x, "mixture_iwae_bound")
    checked = []
    for i, pair in enumerate(proposals):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ArgumentError(f"proposals[{i}] must be a pair (mu, logvar), got {type(pair).__name__}")
        checked.append(_gaussian(model, x, *pair, "mixture_iwae_bound",
                                 f"proposals[{i}] mu, proposals[{i}] logvar"))
    proposals = checked
    b, d = x.shape[0], x[0].numel()
    per = k // m
    step = max(1, min(per, max_elements // max(1, b * d)))
    total = None
    with _eval_mode(model):
        for mu, logvar in proposals:
            for start in range(0, per, step):
                c = min(step, per - start)
                z = reparameterize(mu.unsqueeze(0).expand(c, *mu.shape),
                                   logvar.unsqueeze(0).expand(c, *logvar.shape), generator)
                zf = z.reshape(c * b, -1)
                xf = x.unsqueeze(0).expand(c, *x.shape).reshape(c * b, *x.shape[1:])
                log_px_z = model.log_likelihood(xf, model.decode(zf)).view(c, b)
                log_pz = gaussian_log_likelihood(zf, torch.zeros_like(zf), 0.0).view(c, b)
                log_q = torch.stack([
                    gaussian_log_likelihood(zf, mu_j.repeat(c, 1), lv_j.repeat(c, 1)).view(c, b)
                    for mu_j, lv_j in proposals])  # (M, c, B)
                log_r = torch.logsumexp(log_q, dim=0) - math.log(m)
                chunk = torch.logsumexp(log_px_z + log_pz - log_r, dim=0)
                total = chunk if total is None else torch.logaddexp(total, chunk)
    return total - math.log(k)


def inference_gaps(model, x: Tensor, *, steps: int = 500, lr: float = 1e-2, samples: int = 16,
                   eval_samples: int = 1000, k: int = 5000, seed: int = 0) -> dict:
    """Split the ELBO's gap ``log p_θ(x) − ELBO(q_φ)`` into approximation and amortisation.

    1. ``q_φ``: the encoder's ``(μ, log σ²)``;
    2. ``q*``: :func:`optimal_gaussian` started at ``q_φ``;
    3. both ELBOs with ``eval_samples`` fresh draws each (closed-form KL);
    4. ``log p_θ(x)`` by :func:`mixture_iwae_bound` with proposals ``q_φ`` and ``q*``
       and ``k`` samples, a lower bound that is tight when ``k`` is large.

    Returns:
        A dict of ``(B,)`` float64 tensors on the CPU, with keys ``log_px``, ``elbo_optimal``,
        ``elbo_amortised``, ``approximation_gap = log_px − elbo_optimal``,
        ``amortisation_gap = elbo_optimal − elbo_amortised``; and ``mu``, ``logvar``
        ``(B, Z)`` of ``q*``.
    """
    steps = check_int("steps", steps, min=1)
    lr = check_float("lr", lr, min=0, min_open=True)
    samples = check_int("samples", samples, min=1)
    eval_samples = check_int("eval_samples", eval_samples, min=1)
    k = check_int("k", k, min=2)  # two proposals, k/2 draws from each
    if k % 2:
        raise ArgumentError(f"k must be even (k/2 draws from each of the two proposals q_φ and q*), got {k}")
    seed = check_seed(seed)
    x = _model_and_data(model, x, "inference_gaps")
    device = x.device
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad(), _eval_mode(model):
        mu_a, lv_a = model.encode(x)
    mu_o, lv_o = optimal_gaussian(model, x, mu_a, lv_a, steps=steps, lr=lr, samples=samples,
                                  generator=gen)
    with torch.no_grad(), _eval_mode(model):
        elbo_a = gaussian_elbo(model, x, mu_a, lv_a, eval_samples, gen)
        elbo_o = gaussian_elbo(model, x, mu_o, lv_o, eval_samples, gen)
    log_px = mixture_iwae_bound(model, x, [(mu_a, lv_a), (mu_o, lv_o)], k, generator=gen)
    out = {"log_px": log_px, "elbo_optimal": elbo_o, "elbo_amortised": elbo_a}
    out = {name: v.detach().double().cpu() for name, v in out.items()}
    out["approximation_gap"] = out["log_px"] - out["elbo_optimal"]
    out["amortisation_gap"] = out["elbo_optimal"] - out["elbo_amortised"]
    out["mu"], out["logvar"] = mu_o.cpu(), lv_o.cpu()
    return out
