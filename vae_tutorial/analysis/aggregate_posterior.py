"""The aggregate posterior and the "ELBO surgery" split of the average KL term.

Over a data set of ``N`` points ``x_1..x_N`` (``n`` uniform on ``{1..N}``), the
*aggregate posterior* is the mixture ``q(z) = (1/N) Σ_n q_φ(z|x_n)``. The ELBO's
average KL term splits into two non-negative parts (Hoffman & Johnson 2016):

    (1/N) Σ_n KL(q_φ(z|x_n) ‖ p(z)) = I_q(n; z) + KL(q(z) ‖ p(z)),

where ``I_q(n; z) = E_{n, z~q_φ(z|x_n)}[log q_φ(z|x_n) − log q(z)]`` is the mutual
information between the index of the data point and its code, and
``KL(q(z) ‖ p(z))`` measures how far the mixture of all posteriors is from the prior.
Proof: add and subtract ``log q(z)`` inside ``E[log q_φ(z|x_n) − log p(z)]``.
Since ``q(z) ≥ q_φ(z|x_n)/N`` for every ``n``, ``I_q ≤ log N``.

Shapes: ``N`` posteriors, ``Z`` latent dims, ``M`` query points.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import ArgumentError, check_int, check_tensor
from ..maths.losses import LOG_2PI, kl_standard_normal, reparameterize

__all__ = ["elbo_surgery", "log_aggregate_posterior"]


def _posteriors(mu, logvar) -> tuple[Tensor, Tensor]:
    """``(mu, logvar)`` checked: finite ``(N, Z)`` tensors of one shape with ``N ≥ 1``, in float64."""
    mu = check_tensor("mu", mu, dim=2)
    logvar = check_tensor("logvar", logvar, dim=2)
    if mu.shape != logvar.shape or mu.shape[0] == 0 or mu.shape[1] == 0:
        raise ArgumentError(f"mu and logvar must both be (N, Z) with N, Z ≥ 1, the posterior parameters of N "
                            f"data points, got shapes {tuple(mu.shape)} and {tuple(logvar.shape)}")
    if logvar.device != mu.device:
        raise ArgumentError(f"mu and logvar must be on one device, got {mu.device} and {logvar.device}")
    return mu.double(), logvar.double()


def _log_normal_pairwise(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """``log N(z_m; μ_n, diag σ_n²)`` for every pair, shape ``(M, N)``."""
    inv_var = torch.exp(-logvar)  # (N, Z)
    sq = (z.unsqueeze(1) - mu.unsqueeze(0)).pow(2) * inv_var.unsqueeze(0)  # (M, N, Z)
    return -0.5 * (sq.sum(-1) + logvar.sum(-1).unsqueeze(0) + z.shape[-1] * LOG_2PI)


@torch.no_grad()
def log_aggregate_posterior(z: Tensor, mu: Tensor, logvar: Tensor, chunk: int = 1024) -> Tensor:
    """``log q(z) = log (1/N) Σ_n N(z; μ_n, diag σ_n²)`` at each of ``M`` points.

    Evaluated with ``logsumexp`` over the ``N`` components (the individual densities
    underflow far from a component), in chunks of ``chunk`` query points so that at
    most ``chunk · N · Z`` numbers exist at once.

    Args:
        z: ``(M, Z)`` query points.
        mu, logvar: ``(N, Z)`` parameters of the posteriors ``q_φ(z|x_n)``.
        chunk: query points per chunk.

    Returns:
        ``(M,)`` log-density of the aggregate posterior.
    """
    chunk = check_int("chunk", chunk, min=1)
    z = check_tensor("z", z, dim=2)
    mu, logvar = check_tensor("mu", mu), check_tensor("logvar", logvar)
    dtype = torch.promote_types(z.dtype, torch.promote_types(mu.dtype, logvar.dtype))
    mu, logvar = _posteriors(mu, logvar)  # computed in float64, returned in the inputs' dtype
    if z.shape[1] != mu.shape[1]:
        raise ArgumentError(f"z must be (M, Z) query points with Z = {mu.shape[1]} (the width of mu), got shape "
                            f"{tuple(z.shape)}")
    z = z.to(mu.device, torch.float64)
    out = [torch.logsumexp(_log_normal_pairwise(zc, mu, logvar), dim=1) - math.log(mu.shape[0])
           for zc in z.split(chunk)]
    return torch.cat(out).to(dtype) if out else z.new_zeros(0).to(dtype)


@torch.no_grad()
def elbo_surgery(mu: Tensor, logvar: Tensor, samples: int = 10,
                 generator: torch.Generator | None = None, chunk: int = 1024, *,
                 prior: tuple[Tensor, Tensor] | None = None) -> dict:
    """Both terms of ``E_n KL(q_φ(z|x_n) ‖ p(z)) = I_q(n; z) + KL(q(z) ‖ p(z))``.

    Draws ``samples`` codes from each ``q_φ(z|x_n)`` (``N·S`` draws from ``q(z)``,
    stratified over ``n``) and averages, over the draws,

    * ``log q_φ(z|x_n) − log q(z)`` for the mutual information ``I_q(n; z)``;
    * ``log q(z) − log p(z)`` for ``KL(q(z) ‖ p(z))``,

    with :func:`log_aggregate_posterior` for the exact mixture density. The average KL
    is also computed in closed form, independently of the draws, so that the
    decomposition can be checked: ``mutual_information + marginal_kl`` must match
    ``average_kl`` within a few standard errors. Each per-draw term is bounded above
    (``I ≤ log N`` draw by draw), so the estimates have finite variance.

    Args:
        mu, logvar: ``(N, Z)`` posterior parameters of the ``N`` data points.
        samples: draws ``S`` per posterior.
        generator: optional generator.
        chunk: query points per chunk for the mixture density.
        prior: ``None`` for ``p(z) = N(0, I)``, or ``(μ_k, log σ_k²)``, each ``(K, Z)``, of an
            equal-weight Gaussian mixture prior ``p(z) = (1/K) Σ_k N(μ_k, diag σ_k²)`` (the
            VampPrior's components, :meth:`vae_tutorial.models.priors.VampPriorVAE.prior_components`).
            ``log p(z)`` is then the same mixture density as ``log q(z)``, and ``average_kl``,
            which has no closed form, is the Monte Carlo average of the draws (so the
            decomposition holds draw by draw, and ``sum_se`` is its standard error).

    Returns:
        A dict of floats with keys ``average_kl`` (closed form for ``N(0, I)``), ``mutual_information``,
        ``marginal_kl``, their Monte Carlo standard errors ``mutual_information_se``,
        ``marginal_kl_se`` and ``sum_se`` (of their sum), ``log_n`` (the bound on the
        mutual information) and ``n``, ``samples``.
    """
    mu, logvar = _posteriors(mu, logvar)
    s = check_int("samples", samples, min=1)
    if s * mu.shape[0] < 2:
        raise ArgumentError(f"samples: the standard errors need at least 2 draws in all, got samples={s} "
                            f"for N={mu.shape[0]} posterior(s); use samples ≥ 2")
    chunk = check_int("chunk", chunk, min=1)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ArgumentError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    n, zdim = mu.shape
    if prior is not None:
        if not isinstance(prior, (tuple, list)) or len(prior) != 2:
            raise ArgumentError(f"prior must be None or a pair (mu, logvar) of (K, Z) mixture components, got "
                                f"{type(prior).__name__}")
        p_mu, p_lv = (check_tensor(name, t, dim=2).detach() for name, t in zip(("prior mu", "prior logvar"), prior))
        if p_mu.shape != p_lv.shape or p_mu.shape[0] == 0 or p_mu.shape[1] != zdim:
            raise ArgumentError(f"prior must be (mu, logvar), both (K, Z) with K ≥ 1 and Z = {zdim} (the width of "
                                f"mu), got shapes {tuple(p_mu.shape)} and {tuple(p_lv.shape)}")
    z = reparameterize(mu.unsqueeze(0).expand(s, n, zdim), logvar.unsqueeze(0).expand(s, n, zdim),
                       generator).reshape(s * n, zdim)
    own_mu, own_lv = mu.repeat(s, 1), logvar.repeat(s, 1)
    log_cond = -0.5 * ((z - own_mu).pow(2) * torch.exp(-own_lv) + own_lv + LOG_2PI).sum(-1)
    log_agg = log_aggregate_posterior(z, mu, logvar, chunk)
    if prior is None:
        log_prior = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
    else:  # the same mixture estimator as log q(z)
        log_prior = log_aggregate_posterior(z, p_mu.to(z.device), p_lv.to(z.device), chunk).double()
    info_terms = log_cond - log_agg
    marg_terms = log_agg - log_prior

    def se(t: Tensor) -> float:
        # all draws are independent; the pooled std ignores the stratification over n,
        # which can only overstate the error, so this standard error is conservative
        return float(t.std() / math.sqrt(t.numel()))

    return {
        "average_kl": float(kl_standard_normal(mu, logvar).mean() if prior is None
                            else (info_terms + marg_terms).mean()),
        "mutual_information": float(info_terms.mean()),
        "marginal_kl": float(marg_terms.mean()),
        "mutual_information_se": se(info_terms),
        "marginal_kl_se": se(marg_terms),
        "sum_se": se(info_terms + marg_terms),
        "log_n": math.log(n),
        "n": n,
        "samples": s,
    }
