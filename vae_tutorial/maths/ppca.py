"""Probabilistic PCA: a latent-variable model whose evidence ``log p(x)`` is exact.

The linear-Gaussian model of Tipping & Bishop (1999) is a VAE with a linear decoder
and no approximations anywhere:

* prior ``p(z) = N(0, I_Z)``;
* decoder ``p_θ(x|z) = N(x; W z + b, σ² I_D)`` with ``θ = (W, b, σ²)``;
* evidence ``p_θ(x) = N(x; b, W Wᵀ + σ² I_D)``;
* posterior ``p_θ(z|x) = N(z; M⁻¹ Wᵀ (x − b), σ² M⁻¹)`` with ``M = Wᵀ W + σ² I_Z``.

So the book can compute ``log p_θ(x)``, the ELBO of any Gaussian
``q(z) = N(μ, diag σ_q²)`` and the gap ``KL(q ‖ p_θ(z|x))`` exactly, and check the
identity ``log p_θ(x) = ELBO + KL(q ‖ p_θ(z|x))`` to rounding error.

Shapes: ``B`` batch, ``D`` data dims, ``Z`` latent dims. Inputs ``(B, ...)`` are
flattened to ``(B, D)``. Use ``float64`` for identities checked to many digits.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import ArgumentError, ArgumentTypeError, check_int, check_tensor
from .losses import LOG_2PI, gaussian_log_likelihood, kl_standard_normal, reparameterize

__all__ = ["LinearGaussian"]


def _describe(x) -> str:
    if isinstance(x, Tensor):
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return type(x).__name__


class LinearGaussian:
    """Probabilistic PCA ``p(z) = N(0, I)``, ``p_θ(x|z) = N(Wz + b, σ² I)``.

    Args:
        weight: ``W``, shape ``(D, Z)`` with ``Z < D``.
        bias: ``b``, shape ``(D,)``.
        noise_var: ``σ² > 0``, the observation noise variance (a float or 0-d tensor).

    All methods take ``x`` as ``(B, ...)`` with ``D`` elements per example and
    return per-example tensors ``(B,)`` (or ``(B, Z)`` for means).
    """

    def __init__(self, weight: Tensor, bias: Tensor, noise_var: float | Tensor):
        weight = check_tensor("weight W", weight)  # NaN/inf refused: every exact quantity would be NaN
        if weight.dim() != 2:
            raise ArgumentError(f"weight W must be a (D, Z) matrix, got shape {tuple(weight.shape)}")
        d, z = weight.shape
        bias = check_tensor("bias b", bias).to(weight.device, weight.dtype)
        if bias.shape != (d,):
            raise ArgumentError(f"bias b must have shape ({d},) to match W of shape {(d, z)}, "
                                f"got {tuple(bias.shape)}")
        noise_var = torch.as_tensor(noise_var, dtype=weight.dtype, device=weight.device)
        if noise_var.dim() != 0 or not bool(noise_var > 0) or not bool(torch.isfinite(noise_var)):
            raise ArgumentError(f"noise_var σ² must be a finite positive scalar, got {noise_var}")
        self.weight, self.bias, self.noise_var = weight, bias, noise_var

    # ------------------------------------------------------------------ construction

    @classmethod
    def fit(cls, x: Tensor, latent_dim: int) -> "LinearGaussian":
        """Maximum-likelihood PPCA in closed form (Tipping & Bishop 1999, eqs. 7–8).

        With the sample covariance's eigenvalues ``λ_1 ≥ … ≥ λ_D`` and eigenvectors
        ``U``: ``σ² = mean(λ_{Z+1..D})``, ``W = U_Z (Λ_Z − σ² I)^{1/2}``, ``b = mean(x)``.
        The free rotation of W is fixed to the identity, so ``Wᵀ W`` is diagonal and the
        exact posterior has a *diagonal* covariance (a diagonal-Gaussian q can match it).

        Args:
            x: ``(N, ...)`` data, ``N ≥ 2``; computed in ``x``'s dtype (use float64).
            latent_dim: ``Z``, with ``1 ≤ Z < D``.
        """
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 2:
            raise ArgumentTypeError(f"x must be a floating-point tensor (N, ...) of data, got "
                                    f"{_describe(x)}")
        latent_dim = check_int("latent_dim", latent_dim)  # the type; the range below
        if not bool(torch.isfinite(x).all()):
            raise ArgumentError("x holds NaN or infinite values; clean the data before fitting PPCA")
        x = x.reshape(x.shape[0], -1)
        n, d = x.shape
        if not 1 <= latent_dim < d:
            raise ArgumentError(f"latent_dim must satisfy 1 ≤ Z < D = {d}, got {latent_dim}")
        if n < 2:
            raise ArgumentError(f"fit needs at least 2 examples, got {n}")
        bias = x.mean(0)
        xc = x - bias
        cov = xc.T @ xc / n
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        evals, evecs = evals.flip(0), evecs.flip(1)
        noise_var = evals[latent_dim:].mean().clamp_min(torch.finfo(x.dtype).tiny)
        scale = (evals[:latent_dim] - noise_var).clamp_min(0).sqrt()
        return cls(evecs[:, :latent_dim] * scale, bias, noise_var)

    # ------------------------------------------------------------------ basics

    @property
    def data_dim(self) -> int:
        """``D``."""
        return self.weight.shape[0]

    @property
    def latent_dim(self) -> int:
        """``Z``."""
        return self.weight.shape[1]

    def __repr__(self) -> str:
        return (f"LinearGaussian(D={self.data_dim}, Z={self.latent_dim}, "
                f"σ²={self.noise_var.item():.4g}, dtype={self.weight.dtype})")

    def _flat(self, x: Tensor) -> Tensor:
        x = check_tensor("x", x).to(self.weight.device, self.weight.dtype)
        if x.dim() == 0 or x[0].numel() != self.data_dim:
            raise ArgumentError(f"x must be (B, ...) with D = {self.data_dim} elements per example, "
                                f"got shape {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1)

    def _m(self) -> Tensor:
        """``M = Wᵀ W + σ² I_Z``, shape ``(Z, Z)``."""
        eye = torch.eye(self.latent_dim, dtype=self.weight.dtype, device=self.weight.device)
        return self.weight.T @ self.weight + self.noise_var * eye

    def decode(self, z: Tensor) -> Tensor:
        """Mean of ``p_θ(x|z)``: ``W z + b``, ``(B, Z) -> (B, D)``."""
        return z @ self.weight.T + self.bias

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """``log p_θ(x|z) = log N(x; Wz + b, σ² I)``, shape ``(B,)``.

        ``z`` is ``(B, Z)``; ``x`` is ``(B, ...)`` or a single ``(1, ...)`` example
        scored against every ``z``.
        """
        return gaussian_log_likelihood(self._flat(x), self.decode(z), self.noise_var.log())

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Ancestral sampling: ``z ~ p(z)``, ``x ~ p_θ(x|z)``; returns ``(x (n, D), z (n, Z))``."""
        n = check_int("n", n, min=1)
        dt, dev = self.weight.dtype, self.weight.device
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=dt).to(dev)
        eps = torch.randn(n, self.data_dim, generator=generator, dtype=dt).to(dev)
        return self.decode(z) + self.noise_var.sqrt() * eps, z

    # ------------------------------------------------------------------ exact quantities

    def marginal_covariance(self) -> Tensor:
        """``C = W Wᵀ + σ² I_D``, the covariance of ``p_θ(x)``, shape ``(D, D)``."""
        eye = torch.eye(self.data_dim, dtype=self.weight.dtype, device=self.weight.device)
        return self.weight @ self.weight.T + self.noise_var * eye

    def log_marginal(self, x: Tensor) -> Tensor:
        """Exact evidence ``log p_θ(x) = log N(x; b, W Wᵀ + σ² I)``, shape ``(B,)``.

        Uses the Woodbury identity and the matrix determinant lemma, so the cost is
        ``O(B D Z + Z³)`` rather than ``O(D³)``:
        ``C⁻¹ = (I − W M⁻¹ Wᵀ) / σ²`` and ``log det C = (D − Z) log σ² + log det M``.
        """
        r = self._flat(x) - self.bias
        chol = torch.linalg.cholesky(self._m())
        proj = torch.cholesky_solve((r @ self.weight).unsqueeze(-1), chol).squeeze(-1)  # M⁻¹ Wᵀ r
        quad = (r.pow(2).sum(-1) - (r @ self.weight * proj).sum(-1)) / self.noise_var
        logdet = (self.data_dim - self.latent_dim) * self.noise_var.log() \
            + 2 * chol.diagonal().log().sum()
        return -0.5 * (self.data_dim * LOG_2PI + logdet + quad)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Exact posterior ``p_θ(z|x) = N(M⁻¹ Wᵀ (x − b), σ² M⁻¹)``.

        Returns:
            ``(mean (B, Z), covariance (Z, Z))``; the covariance does not depend on ``x``.
        """
        r = self._flat(x) - self.bias
        m = self._m()
        mean = torch.linalg.solve(m, (r @ self.weight).T).T
        return mean, self.noise_var * torch.linalg.inv(m)

    def elbo(self, x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
        """ELBO of ``q(z) = N(μ, diag exp(logvar))`` in closed form, shape ``(B,)``.

        ``ELBO = E_q[log p_θ(x|z)] − KL(q ‖ p(z))`` with
        ``E_q[log p_θ(x|z)] = log N(x; Wμ + b, σ² I) − Σ_j σ_{q,j}² ‖w_j‖² / (2σ²)``
        (``w_j`` the j-th column of W): the expected squared error is the error at the
        mean plus the spread of ``Wz`` under q.

        Args:
            x: ``(B, ...)`` data; mu, logvar: ``(B, Z)`` parameters of q.
        """
        x = self._flat(x)
        mu, logvar = self._q(mu, logvar, x.shape[0])
        spread = (logvar.exp() * self.weight.pow(2).sum(0)).sum(-1) / (2 * self.noise_var)
        expected_loglik = gaussian_log_likelihood(x, self.decode(mu), self.noise_var.log()) - spread
        return expected_loglik - kl_standard_normal(mu, logvar)

    def elbo_monte_carlo(self, x: Tensor, mu: Tensor, logvar: Tensor, n_samples: int,
                         generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Monte Carlo ELBO ``(1/S) Σ_s log p_θ(x|z_s) − KL(q ‖ p(z))``, ``z_s ~ q``.

        The KL is in closed form; only the reconstruction term is sampled (with
        :func:`~vae_tutorial.maths.losses.reparameterize`, as a VAE does).

        Returns:
            ``(estimate (B,), standard_error (B,))``.
        """
        n_samples = check_int("n_samples", n_samples)  # the type; the range below
        x = self._flat(x)
        mu, logvar = self._q(mu, logvar, x.shape[0])
        if int(n_samples) < 2:
            raise ArgumentError(f"n_samples must be ≥ 2 to give a standard error, got {n_samples}")
        s = int(n_samples)
        z = reparameterize(mu.expand(s, *mu.shape), logvar.expand(s, *logvar.shape), generator)
        b = x.shape[0]
        rec = self.log_likelihood(x.expand(s, *x.shape).reshape(s * b, -1), z.reshape(s * b, -1)).view(s, b)
        est = rec.mean(0) - kl_standard_normal(mu, logvar)
        return est, rec.std(0) / math.sqrt(s)

    def posterior_kl(self, x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
        """``KL(q ‖ p_θ(z|x))`` for ``q = N(μ, diag exp(logvar))``, exactly, shape ``(B,)``.

        With the posterior ``N(m, Σ)``, ``Σ⁻¹ = M / σ²``:
        ``½ [tr(Σ⁻¹ S) + (m − μ)ᵀ Σ⁻¹ (m − μ) − Z + log det Σ − Σ_j log σ_{q,j}²]``.
        This is the ELBO's gap: ``log p_θ(x) − ELBO``.
        """
        x = self._flat(x)
        mu, logvar = self._q(mu, logvar, x.shape[0])
        mean, _ = self.posterior(x)
        prec = self._m() / self.noise_var  # Σ⁻¹
        diff = mean - mu
        trace = (logvar.exp() * prec.diagonal()).sum(-1)
        maha = ((diff @ prec) * diff).sum(-1)
        logdet_post = -torch.linalg.slogdet(prec)[1]
        return 0.5 * (trace + maha - self.latent_dim + logdet_post - logvar.sum(-1))

    def _q(self, mu: Tensor, logvar: Tensor, b: int) -> tuple[Tensor, Tensor]:
        dt, dev = self.weight.dtype, self.weight.device
        mu = check_tensor("mu", mu).to(dev, dt)
        logvar = check_tensor("logvar", logvar).to(dev, dt)
        want = (b, self.latent_dim)
        try:
            mu, logvar = torch.broadcast_to(mu, want), torch.broadcast_to(logvar, want)
        except RuntimeError:
            raise ArgumentError(f"mu and logvar must broadcast to (B, Z) = {want}, "
                                f"got {tuple(mu.shape)} and {tuple(logvar.shape)}") from None
        return mu, logvar
