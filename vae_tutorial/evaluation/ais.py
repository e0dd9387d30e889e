"""Annealed importance sampling (AIS) and bidirectional Monte Carlo (BDMC) for ``log p_θ(x)``.

AIS (Neal 2001) estimates the normaliser ``p_θ(x) = ∫ p(z) p_θ(x|z) dz`` of the unnormalised
posterior ``f_1(z) = p(z) p_θ(x|z)`` by moving samples from a normalised start ``π_0(z)``
(the prior ``p(z)``, or the encoder's ``q_φ(z|x)``) through the *geometric path*

    ``log f_β(z) = log π_0(z) + β h(z)``,   ``h(z) = log p(z) + log p_θ(x|z) − log π_0(z)``,

for ``0 = β_0 < β_1 < … < β_T = 1``. Forward: ``z_0 ~ π_0``; for ``t = 1 … T`` add
``(β_t − β_{t−1}) h(z_{t−1})`` to ``log W`` and move ``z`` with a Markov kernel that leaves
``f_{β_t}`` invariant (here Hamiltonian Monte Carlo with a Metropolis correction). Then
``E[W] = p_θ(x)``, so by Jensen ``E[log W] ≤ log p_θ(x)``: a *stochastic lower bound*, and
``log (1/C) Σ_c W_c`` over ``C`` chains is one too (tighter).

Reverse AIS runs the same chain backwards, from ``β = 1`` to ``0``, starting at an *exact*
posterior sample ``z ~ p_θ(z|x)``; its weight ``W_rev`` has ``E[W_rev] = 1/p_θ(x)``, so
``−log W_rev`` is a *stochastic upper bound*. Exact posterior samples are available for
*simulated* data: draw ``z ~ p(z)``, then ``x ~ p_θ(x|z)``; the pair is a joint sample, so
``z`` is an exact sample of ``p_θ(z|x)`` for that ``x``. Both bounds together sandwich
``log p_θ(x)`` and the gap between them bounds the error of either: bidirectional Monte
Carlo (Grosse et al. 2015; Wu et al. 2017 for decoder-based models). The sandwich is only
for data drawn from the model; on real data only the lower bound is available.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import (
    ArgumentError,
    ArgumentTypeError,
    check_finite_parameters,
    check_float,
    check_images,
    check_int,
    check_one_latent_vae,
    check_tensor,
)
from ..maths.losses import LOG_2PI

__all__ = ["AISResult", "ais", "ais_log_likelihood", "bdmc", "hmc_step", "sigmoid_schedule", "simulate"]


@dataclass
class AISResult:
    """The outcome of one AIS run over ``N`` chains.

    ``log_weight`` ``(N,)`` is ``log W`` (forward) or ``log W_rev`` (reverse) per chain;
    ``z`` ``(N, Z)`` the final states; ``acceptance`` the mean Metropolis acceptance rate
    of the HMC moves.
    """

    log_weight: Tensor
    z: Tensor
    acceptance: float


def sigmoid_schedule(steps: int, delta: float = 4.0) -> Tensor:
    """``T + 1`` inverse temperatures ``0 = β_0 < … < β_T = 1`` on a sigmoid (Grosse et al. 2015).

    ``β̃_t = σ(δ (2t/T − 1))``, rescaled so that ``β_0 = 0`` and ``β_T = 1``: small steps
    near both ends, where ``log f_β`` changes fastest relative to its spread. Float64.
    """
    steps = check_int("steps", steps, min=1)
    delta = check_float("delta", delta, min=0, min_open=True)
    t = torch.arange(steps + 1, dtype=torch.float64)
    s = torch.sigmoid(delta * (2 * t / steps - 1))
    return (s - s[0]) / (s[-1] - s[0])


def _diag_gauss(z: Tensor, mean: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
    """``log N(z; mean, diag e^logvar)`` ``(N,)`` and its gradient in ``z`` ``(N, Z)``."""
    prec = torch.exp(-logvar)
    d = z - mean
    return -0.5 * (LOG_2PI + logvar + d * d * prec).sum(-1), -d * prec


def hmc_step(log_density: Callable[[Tensor], tuple[Tensor, Tensor]], z: Tensor, value: Tensor,
             grad: Tensor, step_size: Tensor | float, leapfrog: int,
             generator: torch.Generator | None = None):
    """One Hamiltonian Monte Carlo move per row, leaving ``exp(log_density)`` invariant.

    Momenta ``p ~ N(0, I)``, ``leapfrog`` steps of (elementwise) size ``ε`` on
    ``H(z, p) = −log f(z) + ½‖p‖²``, then accept each row with probability
    ``min(1, e^{H_0 − H_1})`` (rows whose ``H_1`` is not finite are rejected). A per-dimension
    ``ε`` is HMC with a diagonal mass matrix, equally exact.

    Args:
        log_density: ``z (N, Z) -> (log f (N,), ∇ log f (N, Z))``.
        z, value, grad: the current states and ``log f``, ``∇ log f`` there.
        step_size: ``ε``, a float or a tensor broadcastable to ``(N, Z)``.
        leapfrog: number of leapfrog steps ``L ≥ 1``.
        generator: optional generator for the momenta and the accept draws.

    Returns:
        ``(z, value, grad, accepted)`` after the move; ``accepted`` is ``(N,)`` bool.
    """
    dev = generator.device if generator is not None else z.device
    p0 = torch.randn(z.shape, generator=generator, device=dev, dtype=z.dtype).to(z.device)
    p = p0 + 0.5 * step_size * grad
    zn = z
    for step in range(leapfrog):
        zn = zn + step_size * p
        vn, gn = log_density(zn)
        if step < leapfrog - 1:
            p = p + step_size * gn
    p = p + 0.5 * step_size * gn
    h0 = -value + 0.5 * (p0 * p0).sum(-1)
    h1 = -vn + 0.5 * (p * p).sum(-1)
    u = torch.rand(z.shape[0], generator=generator, device=dev, dtype=z.dtype).to(z.device)
    log_ratio = torch.nan_to_num(h0 - h1, nan=-math.inf)
    accept = torch.isfinite(h1) & (torch.log(u) < log_ratio)
    a = accept.unsqueeze(-1)
    return torch.where(a, zn, z), torch.where(accept, vn, value), torch.where(a, gn, grad), accept


def ais(log_likelihood: Callable[[Tensor], Tensor], betas: Tensor, *, start_mean: Tensor,
        start_logvar: Tensor, step_size: Tensor | float = 0.3, leapfrog: int = 5,
        posterior_scale: Tensor | None = None, z: Tensor | None = None, reverse: bool = False,
        generator: torch.Generator | None = None) -> AISResult:
    """Forward or reverse AIS along the geometric path from ``π_0 = N(start_mean, diag e^start_logvar)``.

    The target is ``f_1(z) = p(z) p_θ(x|z)`` with ``p(z) = N(0, I)``. Forward
    (``reverse=False``): ``z_0 ~ π_0`` (or the given ``z``), ``log W = Σ_t (β_t − β_{t−1})
    h(z_{t−1})``, an HMC move at each ``β_1 … β_{T−1}`` (the move after the last
    increment would not change ``W`` and is skipped). Reverse: ``z`` must be exact samples
    of ``p_θ(z|x)``; ``log W_rev = −Σ_t (β_t − β_{t−1}) h(z)`` along the chain run from
    ``β_T`` down to ``β_0``, with moves at ``β_{T−1} … β_1``.

    The HMC step size of dimension ``d`` at ``β`` is ``ε · ((1−β)/s_{0,d}² + β/s_d²)^{−1/2}``,
    the standard deviation of the path's Gaussian approximation, with ``s_0`` the start's
    standard deviation and ``s`` = ``posterior_scale`` (a guess of the posterior's, e.g.
    the encoder's ``σ_φ(x)``); without ``posterior_scale``, ``s = s_0``. Each chain's step
    is multiplied by a fresh uniform factor in ``[0.5, 1.5)`` at every move, so that no
    trajectory length repeats half a period of the posterior. The step depends on ``x`` and
    on fresh random numbers only, never on the chain's state, so every move is exactly
    invariant.

    Args:
        log_likelihood: ``z (N, Z) -> log p_θ(x|z) (N,)`` for each row's own ``x``.
        betas: ``(T + 1,)`` increasing, from 0 to 1 (:func:`sigmoid_schedule`).
        start_mean, start_logvar: ``(N, Z)`` parameters of ``π_0``.
        step_size: relative HMC step size ``ε``.
        leapfrog: leapfrog steps per move.
        posterior_scale: optional ``(N, Z)`` guess of the posterior standard deviations.
        z: ``(N, Z)`` starting states (required for ``reverse``).
        reverse: run reverse AIS.
        generator: optional generator.

    Returns:
        :class:`AISResult`; ``log_weight`` is ``log W`` (``E[W] = p_θ(x)``) or ``log W_rev``
        (``E[W_rev] = 1/p_θ(x)``).
    """
    if not callable(log_likelihood):
        raise ArgumentTypeError(f"log_likelihood must be a function z -> log p(x|z), got "
                                f"{type(log_likelihood).__name__}")
    betas = check_tensor("betas", betas, dim=1).double()
    if betas.numel() < 2 or betas[0] != 0 or betas[-1] != 1 or not bool((betas.diff() > 0).all()):
        raise ArgumentError("betas must increase strictly from β_0 = 0 to β_T = 1 (e.g. "
                            f"vae_tutorial.evaluation.ais.sigmoid_schedule(T)), got {betas.numel()} values from "
                            f"{betas[0].item():.3g} to {betas[-1].item():.3g}")
    leapfrog = check_int("leapfrog", leapfrog, min=1)
    start_mean = check_tensor("start_mean", start_mean, dim=2)
    start_logvar = check_tensor("start_logvar", start_logvar, dim=2)
    if start_logvar.shape != start_mean.shape:
        raise ArgumentError(f"start_logvar must have the shape of start_mean {tuple(start_mean.shape)}, "
                            f"got {tuple(start_logvar.shape)}")
    start_mean, start_logvar = start_mean.detach(), start_logvar.detach()
    if isinstance(step_size, Tensor):
        step_size = step_size.detach()
    else:
        step_size = check_float("step_size", step_size, min=0, min_open=True)
    if reverse and z is None:
        raise ArgumentError("reverse AIS starts from exact posterior samples: pass z (N, Z), e.g. the codes "
                            "that simulated the data (vae_tutorial.evaluation.ais.simulate)")
    if z is None:
        dev = generator.device if generator is not None else start_mean.device
        eps = torch.randn(start_mean.shape, generator=generator, device=dev, dtype=start_mean.dtype)
        z = start_mean + torch.exp(0.5 * start_logvar) * eps.to(start_mean.device)
    else:
        z = check_tensor("z", z, dim=2)
        if z.shape != start_mean.shape:
            raise ArgumentError(f"z must have the shape of start_mean {tuple(start_mean.shape)}, "
                                f"got {tuple(z.shape)}")
        z = z.detach().to(start_mean.dtype)
    prior_mean = torch.zeros_like(start_mean)
    inv_s0 = torch.exp(-start_logvar)
    inv_s = inv_s0 if posterior_scale is None else posterior_scale.detach().to(z.dtype).pow(-2)

    def pieces(zz: Tensor):
        """``h(z)``, ``∇h(z)``, ``log π_0(z)``, ``∇ log π_0(z)``."""
        zz = zz.detach().requires_grad_(True)
        with torch.enable_grad():
            ll = log_likelihood(zz)
            g_ll, = torch.autograd.grad(ll.sum(), zz)
        lp, g_lp = _diag_gauss(zz.detach(), prior_mean, torch.zeros_like(start_logvar))
        l0, g_l0 = _diag_gauss(zz.detach(), start_mean, start_logvar)
        return ll.detach() + lp - l0, g_ll + g_lp - g_l0, l0, g_l0

    h, gh, l0, g0 = pieces(z)
    order = range(1, len(betas)) if not reverse else range(len(betas) - 1, 0, -1)
    log_w = torch.zeros(z.shape[0], dtype=torch.float64, device=z.device)
    accepted = []
    for t in order:
        delta = float(betas[t] - betas[t - 1])
        log_w = log_w + (delta if not reverse else -delta) * h.double()
        beta = float(betas[t] if not reverse else betas[t - 1])  # the distribution we now move in
        if (not reverse and t == len(betas) - 1) or (reverse and t == 1):
            break  # a move at the end leaves the weight unchanged
        cache = {}

        def log_f(zz: Tensor, beta=beta, cache=cache):
            hh, ghh, ll0, gll0 = pieces(zz)
            cache["last"] = (hh, ghh, ll0, gll0)
            return ll0 + beta * hh, gll0 + beta * ghh

        eps_t = step_size * ((1 - beta) * inv_s0 + beta * inv_s).rsqrt()
        # A random factor in [0.5, 1.5) per chain and move: a fixed trajectory length near half
        # a period of the posterior's oscillation would map z to about 2μ − z and never mix.
        dev = generator.device if generator is not None else z.device
        jitter = 0.5 + torch.rand(z.shape[0], 1, generator=generator, device=dev, dtype=z.dtype)
        eps_t = eps_t * jitter.to(z.device)
        z_new, _, _, acc = hmc_step(log_f, z, l0 + beta * h, g0 + beta * gh, eps_t, leapfrog, generator)
        hh, ghh, ll0, gll0 = cache["last"]
        a = acc.unsqueeze(-1)
        z = z_new
        h, gh = torch.where(acc, hh, h), torch.where(a, ghh, gh)
        l0, g0 = torch.where(acc, ll0, l0), torch.where(a, gll0, g0)
        accepted.append(acc.double().mean().item())
    rate = float(sum(accepted) / len(accepted)) if accepted else float("nan")
    return AISResult(log_weight=log_w, z=z, acceptance=rate)


# ----------------------------------------------------------------------------- VAE front end

def _log_likelihood_fn(model, x: Tensor, chains: int):
    xr = x.repeat(chains, *([1] * (x.dim() - 1)))  # (C·B, ...): chain c, example b at row c·B + b

    def log_likelihood(z: Tensor) -> Tensor:
        return model.log_likelihood(xr, model.decode(z.to(xr.dtype)))
    return log_likelihood


def _start(model, x: Tensor, chains: int, start: str):
    if start not in ("prior", "encoder"):
        raise ArgumentError(f"start must be 'prior' (π_0 = p(z)) or 'encoder' (π_0 = q_φ(z|x)), got {start!r}")
    with torch.no_grad():
        mu, logvar = model.encode(x)
    scale = torch.exp(0.5 * logvar).repeat(chains, 1)
    if start == "prior":
        zeros = torch.zeros_like(mu).repeat(chains, 1)
        return zeros, zeros, scale
    return mu.repeat(chains, 1), logvar.repeat(chains, 1), scale


def _prepare(model, x: Tensor, what: str, chains, steps, leapfrog) -> tuple[Tensor, int, int, int]:
    check_one_latent_vae(model, what)
    check_finite_parameters(model)
    if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[0] == 0:
        raise ArgumentError(f"{what}: x must be a non-empty batch (B, ...), got "
                            f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    x = check_images(model, x, f"{what}: x").to(next(model.parameters()).device)
    return (x, check_int("chains", chains, min=1), check_int("steps", steps, min=1),
            check_int("leapfrog", leapfrog, min=1))


def _log_mean_exp(log_w: Tensor, chains: int) -> Tensor:
    return torch.logsumexp(log_w.view(chains, -1), dim=0) - math.log(chains)


def ais_log_likelihood(model, x: Tensor, *, chains: int = 8, steps: int = 100, leapfrog: int = 5,
                       step_size: float = 0.3, start: str = "prior",
                       generator: torch.Generator | None = None) -> dict:
    """Forward AIS estimate of ``log p_θ(x)`` per example: a stochastic lower bound.

    ``C = chains`` independent chains per example along ``T = steps`` sigmoid-spaced
    temperatures (:func:`sigmoid_schedule`), ``π_0`` the prior or ``q_φ(z|x)``, HMC moves
    scaled by the encoder's ``σ_φ(x)`` (see :func:`ais`). The estimate is
    ``log (1/C) Σ_c W_c``, whose expectation is ``≤ log p_θ(x)`` for any ``C`` and ``T``
    and rises towards it as they grow. The model is put in eval mode and restored.

    Returns:
        A dict with ``"log_px"`` ``(B,)`` the estimate, ``"log_weights"`` ``(C, B)`` every chain's
        ``log W``, ``"acceptance"`` the mean HMC acceptance rate.
    """
    x, chains, steps, leapfrog = _prepare(model, x, "ais_log_likelihood", chains, steps, leapfrog)
    was = model.training
    model.eval()
    try:
        mean, logvar, scale = _start(model, x, chains, start)
        r = ais(_log_likelihood_fn(model, x, chains), sigmoid_schedule(steps), start_mean=mean,
                start_logvar=logvar, step_size=step_size, leapfrog=leapfrog, posterior_scale=scale,
                generator=generator)
    finally:
        model.train(was)
    return {"log_px": _log_mean_exp(r.log_weight, chains), "log_weights": r.log_weight.view(chains, -1),
            "acceptance": r.acceptance}


def bdmc(model, x: Tensor, z: Tensor, *, chains: int = 8, steps: int = 100, leapfrog: int = 5,
         step_size: float = 0.3, start: str = "prior", generator: torch.Generator | None = None) -> dict:
    """Bidirectional Monte Carlo: AIS lower and reverse-AIS upper bounds on ``log p_θ(x)``.

    ``x`` must be *simulated* from the model with the codes ``z`` (:func:`simulate`), so that
    each ``z_b`` is an exact sample of ``p_θ(z|x_b)``; every reverse chain of example ``b``
    starts at ``z_b``. Per example, ``lower = log (1/C) Σ_c W_c`` (``E ≤ log p_θ(x)``) and
    ``upper = −log (1/C) Σ_c W_rev,c`` (``E ≥ log p_θ(x)``, since ``E[W_rev] = 1/p_θ(x)``).
    On data not drawn from the model, ``z`` is not a posterior sample and ``upper`` is
    not a bound.

    Returns:
        A dict with ``"lower"``, ``"upper"`` ``(B,)`` and the acceptance rates
        ``"acceptance_forward"``, ``"acceptance_reverse"``.
    """
    x, chains, steps, leapfrog = _prepare(model, x, "bdmc", chains, steps, leapfrog)
    z = check_tensor("z", z, dim=2)
    if z.shape[0] != x.shape[0]:
        raise ArgumentError(f"z must hold one exact posterior sample per example, shape ({x.shape[0]}, Z), "
                            f"got {tuple(z.shape)}")
    was = model.training
    model.eval()
    try:
        mean, logvar, scale = _start(model, x, chains, start)
        if z.shape[1] != mean.shape[1]:
            raise ArgumentError(f"z must have the model's latent size {mean.shape[1]}, got {tuple(z.shape)}")
        fn, betas = _log_likelihood_fn(model, x, chains), sigmoid_schedule(steps)
        kw = {"start_mean": mean, "start_logvar": logvar, "step_size": step_size, "leapfrog": leapfrog,
                  "posterior_scale": scale, "generator": generator}
        fwd = ais(fn, betas, **kw)
        rev = ais(fn, betas, z=z.to(mean).repeat(chains, 1), reverse=True, **kw)
    finally:
        model.train(was)
    return {"lower": _log_mean_exp(fwd.log_weight, chains), "upper": -_log_mean_exp(rev.log_weight, chains),
            "acceptance_forward": fwd.acceptance, "acceptance_reverse": rev.acceptance}


@torch.no_grad()
def simulate(model, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Draw ``n`` exact joint samples ``z ~ p(z)``, ``x ~ p_θ(x|z)``; returns ``(x, z)``.

    ``x`` is ``(n, ...)`` binary for a Bernoulli decoder and ``mean + σ ε`` for a Gaussian
    one; ``z`` ``(n, Z)`` is then an exact sample of ``p_θ(z|x)`` for its own ``x``.
    """
    check_one_latent_vae(model, "simulate")
    n = check_int("n", n, min=1)
    if getattr(model, "likelihood", None) not in ("bernoulli", "gaussian"):
        raise ArgumentTypeError(f"model: simulate draws x from a Bernoulli or Gaussian decoder, got "
                                f"likelihood {getattr(model, 'likelihood', None)!r}")
    was = model.training
    model.eval()
    try:
        z = model.prior_sample(n, generator)
        params = model.decode(z)
        dev = generator.device if generator is not None else z.device
        if model.likelihood == "bernoulli":
            u = torch.rand(params.shape, generator=generator, device=dev, dtype=params.dtype).to(z.device)
            x = (u < torch.sigmoid(params)).to(params.dtype)
        else:
            mean, logvar = params
            e = torch.randn(mean.shape, generator=generator, device=dev, dtype=mean.dtype).to(z.device)
            x = mean + torch.exp(0.5 * logvar) * e
    finally:
        model.train(was)
    return x, z
