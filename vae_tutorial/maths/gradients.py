"""Monte Carlo gradients of a Gaussian expectation: score function versus pathwise.

The quantity is ``∇_φ E_{q_φ(z)}[f(z)]`` with ``q_φ(z) = N(z; μ, diag σ²)`` and
``φ = (μ, log σ²)``, the gradient a VAE needs for its reconstruction term. The
difficulty is that ``φ`` moves the distribution the samples come from, so one cannot
differentiate the samples' ``f(z)`` and average. Two unbiased estimators fix that:

* **score function** (REINFORCE, Williams 1992): ``E_q[f(z) ∇_φ log q_φ(z)]``; needs
  only values of ``f``;
* **pathwise** (reparameterisation): write ``z = μ + σ ⊙ ε``, ``ε ~ N(0, I)``, so
  ``∇_φ E_ε[f(μ + σ ε)] = E_ε[∇_z f(z) · ∂z/∂φ]``; needs ``f`` differentiable.

Both functions return one single-sample estimate per draw, shape ``(n, Z)`` each for
``μ`` and ``log σ²``, so their mean is the ``n``-sample estimate and their spread
measures the estimator's variance. Given generators in the same state, both use the
same noise ``ε``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

from ..errors import ArgumentError, ArgumentTypeError, check_int
from .losses import reparameterize

__all__ = ["GradientSamples", "pathwise_gradient", "score_function_gradient"]

Objective = Callable[[Tensor], Tensor]


class GradientSamples(NamedTuple):
    """``n`` single-sample estimates of ``∇_μ`` and ``∇_{log σ²}`` of ``E_q[f(z)]``, each ``(n, Z)``.

    ``.mean()`` gives the ``n``-sample estimate, a pair of ``(Z,)`` tensors.
    """

    mu: Tensor
    logvar: Tensor

    def mean(self) -> tuple[Tensor, Tensor]:
        """The ``n``-sample estimate ``(∇_μ, ∇_{log σ²})``, each ``(Z,)``."""
        return self.mu.mean(0), self.logvar.mean(0)

    def standard_error(self) -> tuple[Tensor, Tensor]:
        """Monte Carlo standard error of :meth:`mean`, ``std / √n`` per coordinate, each ``(Z,)``."""
        n = self.mu.shape[0]
        return self.mu.std(0) / n ** 0.5, self.logvar.std(0) / n ** 0.5


def _check(f: Objective, mu: Tensor, logvar: Tensor, n: int) -> None:
    if not callable(f):
        raise ArgumentTypeError(f"f must be a function (n, Z) -> (n,), got {type(f).__name__}")
    for name, value in (("mu", mu), ("logvar", logvar)):
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise ArgumentTypeError(f"{name} must be a floating-point tensor of shape (Z,), got "
                                    f"{type(value).__name__}")
    if mu.dim() != 1 or mu.shape != logvar.shape:
        raise ArgumentError(f"mu and logvar must both have shape (Z,), got {tuple(mu.shape)} and "
                            f"{tuple(logvar.shape)}; estimate one Gaussian at a time")
    check_int("n", n)  # the type; the range below
    if not (bool(torch.isfinite(mu).all()) and bool(torch.isfinite(logvar).all())):
        raise ArgumentError("mu and logvar must be finite; got NaN or infinite values")
    if int(n) != n or n < 1:
        raise ArgumentError(f"n must be a positive integer number of samples, got {n!r}")


def _values(f: Objective, z: Tensor) -> Tensor:
    v = f(z)
    if v.shape != (z.shape[0],):
        raise ArgumentError(f"f must map samples (n, Z) = {tuple(z.shape)} to values of shape (n,) = "
                            f"({z.shape[0]},), it returned {tuple(v.shape)}; sum over the last dimension")
    return v


def score_function_gradient(f: Objective, mu: Tensor, logvar: Tensor, n: int,
                            generator: torch.Generator | None = None) -> GradientSamples:
    """Score-function (REINFORCE) estimates of ``∇_{μ, log σ²} E_{N(z; μ, σ²)}[f(z)]``.

    For each draw ``z = μ + σ ε``: ``f(z) ∇ log q(z)``, with the diagonal-Gaussian score

    * ``∂ log q / ∂μ_j = (z_j − μ_j) / σ_j² = ε_j / σ_j``,
    * ``∂ log q / ∂ log σ_j² = ½ ((z_j − μ_j)² / σ_j² − 1) = ½ (ε_j² − 1)``.

    ``f`` is only evaluated, never differentiated (it may be a black box).

    Args:
        f: ``(n, Z) -> (n,)``, applied to a batch of samples.
        mu, logvar: ``(Z,)`` parameters of ``q``.
        n: number of draws.
        generator: optional generator for reproducible draws.

    Returns:
        :class:`GradientSamples` with ``(n, Z)`` tensors.
    """
    _check(f, mu, logvar, n)
    mu, logvar = mu.detach(), logvar.detach()
    # ε drawn exactly as reparameterize draws it, so that with generators in the same
    # state both estimators see the same ε: a like-for-like comparison.
    zeros = torch.zeros(int(n), mu.shape[0], dtype=mu.dtype, device=mu.device)
    eps = reparameterize(zeros, zeros, generator)
    sigma = torch.exp(0.5 * logvar)
    with torch.no_grad():
        values = _values(f, mu + sigma * eps).unsqueeze(-1)  # (n, 1)
    return GradientSamples(mu=values * eps / sigma, logvar=values * 0.5 * (eps.pow(2) - 1))


def pathwise_gradient(f: Objective, mu: Tensor, logvar: Tensor, n: int,
                      generator: torch.Generator | None = None) -> GradientSamples:
    """Pathwise (reparameterisation) estimates of ``∇_{μ, log σ²} E_{N(z; μ, σ²)}[f(z)]``.

    With ``z = μ + σ ε`` (:func:`~vae_tutorial.maths.losses.reparameterize`) autograd gives, per draw,
    ``∂f/∂μ_j = ∂f/∂z_j`` and ``∂f/∂ log σ_j² = ∂f/∂z_j · ½ σ_j ε_j``.

    Each row of ``f``'s output must depend only on the same row of its input (true of
    any function applied sample by sample), so that one backward pass yields the ``n``
    separate estimates.

    Args, Returns: as :func:`score_function_gradient`; ``f`` must be differentiable.
    """
    _check(f, mu, logvar, n)
    n = int(n)
    mu_n = mu.detach().expand(n, -1).clone().requires_grad_(True)
    lv_n = logvar.detach().expand(n, -1).clone().requires_grad_(True)
    with torch.enable_grad():
        values = _values(f, reparameterize(mu_n, lv_n, generator))
        if not values.requires_grad:  # f ignores z (a constant): the gradient is zero
            return GradientSamples(mu=torch.zeros_like(mu_n).detach(), logvar=torch.zeros_like(lv_n).detach())
        g_mu, g_lv = torch.autograd.grad(values.sum(), (mu_n, lv_n), allow_unused=True)
    g_mu = torch.zeros_like(mu_n) if g_mu is None else g_mu
    g_lv = torch.zeros_like(lv_n) if g_lv is None else g_lv
    return GradientSamples(mu=g_mu.detach(), logvar=g_lv.detach())
