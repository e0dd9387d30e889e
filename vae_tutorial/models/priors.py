"""Learned priors: the VampPrior, a mixture of the encoder's posteriors at learned pseudo-inputs.

For a fixed encoder, the prior that maximises the average ELBO over the data is the
*aggregate posterior* ``q(z) = (1/N) Σ_n q_φ(z|x_n)``: the average KL term splits as

    (1/N) Σ_n KL(q_φ(z|x_n) ‖ p(z)) = I_q(n; z) + KL(q(z) ‖ p(z))

(:func:`vae_tutorial.analysis.aggregate_posterior.elbo_surgery`), only the second term depends on
``p``, and it is zero exactly when ``p = q``. Evaluating ``q(z)`` needs all ``N`` posteriors
(and it would let the model memorise the training set); the VampPrior of Tomczak & Welling
(2018) replaces the ``N`` data points by ``K ≪ N`` learned *pseudo-inputs* ``u_1..u_K``:

    p_λ(z) = (1/K) Σ_k q_φ(z|u_k),

a mixture of ``K`` diagonal Gaussians that the encoder computes from the pseudo-inputs, so
prior and posterior share the encoder's parameters. ``KL(q_φ(z|x) ‖ p_λ(z))`` has no closed
form; the ELBO uses the one-draw Monte Carlo estimate ``log q_φ(z|x) − log p_λ(z)`` with
``z ~ q_φ(z|x)``, and ``log p_λ`` is computed with ``logsumexp`` over the components.

Shapes: ``B`` examples, ``Z`` latent dims, ``K`` pseudo-inputs.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..analysis.aggregate_posterior import _log_normal_pairwise
from ..errors import ArgumentError, check_int, check_memory, check_tensor
from .flows import _data_shape
from ..maths.losses import ELBOTerms, _chunk_size, gaussian_log_likelihood, reparameterize
from .vae import VAE

__all__ = ["VampPriorVAE", "log_mixture_density"]


def log_mixture_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """``log (1/K) Σ_k N(z; μ_k, diag σ_k²)`` at each row of ``z``; differentiable.

    Args:
        z: ``(M, Z)`` points.
        mu, logvar: ``(K, Z)`` component parameters.

    Returns:
        ``(M,)`` log-densities, by ``logsumexp`` over the ``K`` components (each density alone
        underflows far from its component).
    """
    return torch.logsumexp(_log_normal_pairwise(z, mu, logvar), dim=1) - math.log(mu.shape[0])


class VampPriorVAE(VAE):
    """A VAE with the VampPrior ``p_λ(z) = (1/K) Σ_k q_φ(z|u_k)`` (module docstring).

    Args:
        encoder, decoder, likelihood: as for :class:`~vae_tutorial.models.vae.VAE`.
        pseudo_inputs: the number ``K`` of pseudo-inputs (initialised at random grey levels
            around 0.5), or a ``(K, ...)`` tensor of images to start from (e.g. ``K`` training
            images). They are learned as logits and used through a sigmoid, so every
            pixel stays in ``(0, 1)`` and keeps a gradient (Tomczak & Welling (2018) clip with
            a hard tanh instead, whose gradient is zero at 0 and 1: pseudo-inputs started at
            binary images would never move).

    The ELBO (``elbo_terms``) is ``log p_θ(x|z) − β[log q_φ(z|x) − log p_λ(z)]`` with one draw
    ``z ~ q_φ(z|x)``; its ``kl`` is that one-draw estimate of ``KL(q_φ(z|x) ‖ p_λ(z))``.
    :meth:`prior_sample` (hence :meth:`sample`) draws from the mixture.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, pseudo_inputs: int | Tensor = 50, *,
                 likelihood: str = "bernoulli", generator: torch.Generator | None = None):
        super().__init__(encoder, decoder, likelihood)
        shape = _data_shape(self, "VampPriorVAE")
        if isinstance(pseudo_inputs, Tensor):
            u = check_tensor("pseudo_inputs", pseudo_inputs).detach().float()
            if u.dim() < 2 or u.shape[0] < 1 or u[0].numel() != math.prod(shape):
                raise ArgumentError(f"pseudo_inputs must be (K, ...) images of shape {shape} (the decoder's "
                                    f"out_shape) with K ≥ 1, got {tuple(u.shape)}")
            u = torch.logit(u.reshape(u.shape[0], *shape).clamp(0.05, 0.95))
        else:
            k = check_int("pseudo_inputs", pseudo_inputs, min=1)
            check_memory(f"{k} pseudo-inputs of shape {shape}", "choose fewer pseudo_inputs",
                         parameters=k * math.prod(shape))
            u = 0.4 * torch.randn(k, *shape, generator=generator)  # grey levels around 0.5
        self.pseudo_logits = nn.Parameter(u)

    @property
    def num_components(self) -> int:
        return int(self.pseudo_logits.shape[0])

    def pseudo_inputs(self) -> Tensor:
        """The pseudo-inputs ``u_k = sigmoid(logits)`` as images, ``(K, ...)`` in ``(0, 1)``."""
        return torch.sigmoid(self.pseudo_logits)

    def prior_components(self) -> tuple[Tensor, Tensor]:
        """``(μ_k, log σ_k²)`` of the ``K`` components ``q_φ(z|u_k)``, each ``(K, Z)``."""
        return self.encode(self.pseudo_inputs())

    def prior_log_prob(self, z: Tensor) -> Tensor:
        """``log p_λ(z)`` for ``z (M, Z)``: ``(M,)``, differentiable in ``z``, ``u`` and ``φ``."""
        mu, logvar = self.prior_components()
        return log_mixture_density(z, mu, logvar)

    def elbo_terms(self, x: Tensor, beta: float = 1.0, *, generator: torch.Generator | None = None) -> ELBOTerms:
        """One-draw ELBO with the VampPrior (class docstring), each term ``(B,)``."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, generator)
        rec = self.log_likelihood(x, self.decode(z))
        kl = gaussian_log_likelihood(z, mu, logvar) - self.prior_log_prob(z)
        return ELBOTerms(elbo=rec - beta * kl, reconstruction=rec, kl=kl, kl_per_dim=None)

    def log_importance_weights(self, x: Tensor, k: int, *, generator: torch.Generator | None = None,
                               max_elements: int = 1 << 23):
        """Yield ``log w = log p_θ(x|z) + log p_λ(z) − log q_φ(z|x)``, ``z ~ q_φ(z|x)``, in chunks ``(c, B)``."""
        mu, logvar = self.encode(x)
        pmu, plv = self.prior_components()
        b = x.shape[0]
        step = _chunk_size(b, x[0].numel(), k, max_elements)
        for start in range(0, k, step):
            c = min(step, k - start)
            mu_c = mu.expand(c, *mu.shape).reshape(c * b, -1)
            lv_c = logvar.expand(c, *logvar.shape).reshape(c * b, -1)
            z = reparameterize(mu_c, lv_c, generator)
            xf = x.unsqueeze(0).expand(c, *x.shape).reshape(c * b, *x.shape[1:])
            log_px_z = self.log_likelihood(xf, self.decode(z)).view(c, b)
            log_pz = log_mixture_density(z, pmu, plv).view(c, b)
            yield log_px_z + log_pz - gaussian_log_likelihood(z, mu_c, lv_c).view(c, b)

    @torch.no_grad()
    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``z ~ p_λ(z)``: a uniformly chosen component ``k``, then ``z ~ q_φ(z|u_k)``; ``(n, Z)``."""
        n = check_int("n", n, min=0)
        mu, logvar = self.prior_components()
        idx = torch.randint(self.num_components, (n,), generator=generator, device=mu.device)
        return reparameterize(mu[idx], logvar[idx], generator)
