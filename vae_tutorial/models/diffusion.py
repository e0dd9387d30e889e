"""A diffusion model as a hierarchical VAE with a fixed encoder (chapter 16).

Notation (as in the book, with the conventions of Kingma et al. 2021, "Variational
Diffusion Models"): data ``x ∈ {0, 1}^D`` are mapped to ``x̃ = 2x − 1 ∈ {−1, 1}^D``.
There are ``T + 1`` latent layers ``z_0, …, z_T``, each of the data's shape, and a
*fixed* encoder, the variance-preserving Gaussian chain

* ``q(z_t | x) = N(α_t x̃, σ_t² I)`` with ``α_t² + σ_t² = 1``, and
* ``q(z_t | z_s) = N(α_{t|s} z_s, σ_{t|s}² I)`` for ``s < t``, with ``α_{t|s} = α_t / α_s``,
  ``σ_{t|s}² = σ_t² − α_{t|s}² σ_s²``.

The noise schedule is the log signal-to-noise ratio ``λ_t = log(α_t² / σ_t²)``, linear
in ``t`` from ``λ_max`` (``t = 0``, almost clean) to ``λ_min`` (``t = T``, almost pure
noise); ``α_t² = sigmoid(λ_t)``, ``σ_t² = sigmoid(−λ_t)``. The generative model is
``p(z_T) = N(0, I)``, the learned reverse steps
``p_θ(z_{t−1} | z_t) = q(z_{t−1} | z_t, x = x̂_θ(z_t; t))`` and a parameter-free Bernoulli
decoder ``p(x | z_0)``. Its negative ELBO, in nats per example, is ::

    −ELBO(x) = KL(q(z_T|x) ‖ p(z_T))                                    (prior)
             + Σ_{t=1}^T E_q[KL(q(z_{t−1}|z_t, x) ‖ p_θ(z_{t−1}|z_t))]  (diffusion)
             − E_q[log p(x | z_0)]                                       (reconstruction)

and each diffusion term is a weighted ε-prediction error,
``½ (SNR(t−1)/SNR(t) − 1) ‖ε − ε̂_θ(z_t; t)‖²`` with ``z_t = α_t x̃ + σ_t ε``.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ArgumentError, ArgumentTypeError, check_float, check_int, check_memory
from ..maths.losses import (
    ELBOTerms,
    _check_batch,
    bernoulli_log_likelihood,
    gaussian_log_likelihood,
)

__all__ = [
    "DiffusionModel",
    "diffusion_bound",
    "diffusion_kl",
    "log_snr_schedule",
    "posterior_params",
    "transition_params",
]


LOGSNR_LIMIT = 87.0
"""``|λ|`` at most this: the model computes in float32, where ``σ² = sigmoid(−λ)`` and
``α² = sigmoid(λ)`` stay normal numbers only while ``|λ| < −log(float32's smallest normal)
≈ 87.3``; past it they underflow to 0 and the bound becomes NaN (``logsnr_max=200`` did)."""


def log_snr_schedule(steps: int, logsnr_min: float = -6.0, logsnr_max: float = 6.0) -> Tensor:
    """The log-SNR ``λ_t`` for ``t = 0, …, T``: shape ``(T + 1,)``, float64, decreasing.

    ``λ_t = λ_max − (λ_max − λ_min) t / T``. Linear in log-SNR, every step multiplies the
    signal-to-noise ratio by the same factor ``e^{−Δλ}``, so every diffusion term gets the
    same weight ``½ expm1(Δλ)`` in ε-space.
    """
    steps = check_int("T (the number of diffusion steps)", steps, min=1)
    logsnr_min = check_float("logsnr_min", logsnr_min)
    logsnr_max = check_float("logsnr_max", logsnr_max)
    for name, value in (("logsnr_min", logsnr_min), ("logsnr_max", logsnr_max)):
        if abs(value) > LOGSNR_LIMIT:
            raise ArgumentError(f"{name}={value:g} is outside [-{LOGSNR_LIMIT:g}, {LOGSNR_LIMIT:g}]: in float32 "
                                f"α² = sigmoid(λ) or σ² = sigmoid(−λ) would underflow to 0 and the bound be NaN; "
                                f"choose |{name}| ≤ {LOGSNR_LIMIT:g} (the book uses −6 and 6)")
    if not logsnr_max > logsnr_min:
        raise ArgumentError(f"logsnr_max must exceed logsnr_min (the SNR must fall with t), "
                            f"got logsnr_min={logsnr_min}, logsnr_max={logsnr_max}")
    check_memory(f"a schedule of T + 1 = {steps + 1:,} log-SNR values", "choose fewer steps",
                 buffer_bytes=8 * (steps + 1))
    return torch.linspace(logsnr_max, logsnr_min, steps + 1, dtype=torch.float64)


def _alpha2_sigma2(logsnr: Tensor) -> tuple[Tensor, Tensor]:
    # α² = σ(λ), σ² = σ(−λ): both accurate for any λ, and they sum to one (variance preserving).
    return torch.sigmoid(logsnr), torch.sigmoid(-logsnr)


def transition_params(logsnr_s: Tensor, logsnr_t: Tensor) -> tuple[Tensor, Tensor]:
    """``(α_{t|s}, σ_{t|s}²)`` of one forward step ``q(z_t | z_s) = N(α_{t|s} z_s, σ_{t|s}² I)``.

    ``α_{t|s} = α_t / α_s`` and ``σ_{t|s}² = σ_t² − α_{t|s}² σ_s²``, written as
    ``σ_t² · (−expm1(λ_t − λ_s))`` so that it stays accurate for small steps. Composing the
    steps from ``z_0`` reproduces ``q(z_t | x)`` (tested).
    """
    a2_s, _ = _alpha2_sigma2(logsnr_s)
    a2_t, s2_t = _alpha2_sigma2(logsnr_t)
    return torch.sqrt(a2_t / a2_s), -s2_t * torch.expm1(logsnr_t - logsnr_s)


def posterior_params(z_t: Tensor, x_signal: Tensor, logsnr_s: Tensor, logsnr_t: Tensor
                     ) -> tuple[Tensor, Tensor]:
    """Mean and variance of ``q(z_s | z_t, x) = N(μ̃, σ̃² I)`` for ``s < t``.

    ``μ̃ = (α_{t|s} σ_s² / σ_t²) z_t + (α_s σ_{t|s}² / σ_t²) x̃`` and
    ``σ̃² = σ_{t|s}² σ_s² / σ_t²`` (Gaussian conjugacy of ``q(z_s|x) q(z_t|z_s)``).

    Args:
        z_t: ``(B, ...)`` latents at time ``t``.
        x_signal: ``(B, ...)`` data ``x̃`` in signal space (or a prediction ``x̂``).
        logsnr_s, logsnr_t: ``λ_s > λ_t``, scalars or tensors broadcastable to ``z_t``.

    Returns:
        ``(μ̃, σ̃²)``; ``σ̃²`` has the broadcast shape of the two log-SNRs.
    """
    a2_s, s2_s = _alpha2_sigma2(logsnr_s)
    _, s2_t = _alpha2_sigma2(logsnr_t)
    a_ts, s2_ts = transition_params(logsnr_s, logsnr_t)
    mean = (a_ts * s2_s / s2_t) * z_t + (torch.sqrt(a2_s) * s2_ts / s2_t) * x_signal
    return mean, s2_ts * s2_s / s2_t


def diffusion_kl(eps: Tensor, eps_hat: Tensor, logsnr_s: Tensor, logsnr_t: Tensor) -> Tensor:
    """``KL(q(z_s|z_t, x) ‖ p_θ(z_s|z_t))`` per example ``(B,)``, as a weighted ε error.

    Both Gaussians share the variance ``σ̃²``; their means differ by
    ``(α_s σ_{t|s}² / σ_t²)(x̃ − x̂)``, and with ``x̃ − x̂ = (σ_t/α_t)(ε̂ − ε)`` the KL is
    ``½ (SNR(s)/SNR(t) − 1) ‖ε − ε̂‖² = ½ expm1(λ_s − λ_t) ‖ε − ε̂‖²``.

    Args:
        eps, eps_hat: ``(B, ...)`` the noise in ``z_t = α_t x̃ + σ_t ε`` and its prediction.
        logsnr_s, logsnr_t: scalars or ``(B,)`` tensors with ``λ_s > λ_t``.
    """
    b = eps.shape[0]
    weight = 0.5 * torch.expm1(torch.as_tensor(logsnr_s - logsnr_t, dtype=eps.dtype,
                                               device=eps.device))
    return weight.reshape(-1) * (eps - eps_hat).pow(2).reshape(b, -1).sum(-1)


class _TimeEmbedding(nn.Module):
    """Sinusoidal features of the normalised log-SNR ``u ∈ [0, 1]``, ``(B,) -> (B, 2F)``."""

    def __init__(self, features: int = 16):
        super().__init__()
        self.register_buffer("freq", math.pi * torch.arange(1, features + 1, dtype=torch.float32))

    def forward(self, u: Tensor) -> Tensor:
        angles = u[:, None] * self.freq
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class DiffusionModel(nn.Module):
    """A discrete-time variational diffusion model for binary images.

    The encoder is fixed (no parameters): ``q(z_t|x) = N(α_t x̃, σ_t² I)`` with the log-SNR
    schedule :func:`log_snr_schedule`. The only learned part is the denoiser
    ``x̂_θ(z_t; t) = tanh(α_t z_t / σ_t² + ½ f_θ(z_t, λ_t))``: ``tanh(α_t z_t / σ_t²)`` is
    ``E[x̃ | z_t]`` when the pixels are independent and uniform, and the MLP ``f_θ`` (zero at
    initialisation) adds what the other pixels say. The noise prediction is
    ``ε̂_θ = (z_t − α_t x̂_θ) / σ_t``, and the reverse step is
    ``p_θ(z_{t−1}|z_t) = q(z_{t−1}|z_t, x = x̂_θ)``.

    The decoder ``p(x|z_0)`` is Bernoulli with logits ``2 α_0 z_0 / σ_0²``: the exact
    posterior of one pixel under a uniform prior, as in VDM, so that ``−ELBO`` is a bound on
    ``−log P(x)`` for the *discrete* binary image, in nats comparable with the book's VAEs.

    Args:
        shape: shape of one image, e.g. ``(1, 28, 28)``.
        steps: ``T``, the number of diffusion steps (latent layers ``z_1 … z_T`` after ``z_0``).
        hidden: width of the MLP's two hidden layers.
        logsnr_min, logsnr_max: ``λ_T`` and ``λ_0``.
        time_features: number of sine/cosine frequency pairs of the time embedding.
    """

    likelihood = "bernoulli"

    def __init__(self, shape=(1, 28, 28), steps: int = 50, hidden: int = 512,
                 logsnr_min: float = -6.0, logsnr_max: float = 6.0, time_features: int = 16):
        super().__init__()
        if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
            shape = (shape,)  # a flat image of D values, as MLPEncoder takes it
        if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) == 0:
            raise ArgumentTypeError(f"shape must be a tuple of positive sizes such as (1, 28, 28), got {shape!r}")
        self.shape = tuple(check_int(f"shape[{i}]", s, min=1) for i, s in enumerate(shape))
        self.steps = check_int("steps", steps, min=1)
        hidden = check_int("hidden", hidden, min=1)
        time_features = check_int("time_features", time_features, min=1)
        d = math.prod(self.shape)
        n_params = ((d + 1) * hidden + 2 * (2 * time_features + 1) * hidden + (hidden + 1) * hidden
                    + (hidden + 1) * d)
        schedule = 12 * (self.steps + 1)  # the T + 1 log-SNRs, made in float64 and kept in float32
        check_memory(f"a diffusion model of {d:,} pixels with hidden={hidden}, steps={self.steps}, "
                     f"time_features={time_features}",
                     "choose fewer steps" if schedule > 16 * n_params else
                     "choose a smaller hidden (or fewer time_features)",
                     parameters=n_params, buffer_bytes=schedule + 4 * time_features)
        self.register_buffer("logsnr", log_snr_schedule(steps, logsnr_min, logsnr_max).float())
        self.embed = _TimeEmbedding(time_features)
        self.inp = nn.Linear(d, hidden)
        self.time1 = nn.Linear(2 * time_features, hidden)
        self.mid = nn.Linear(hidden, hidden)
        self.time2 = nn.Linear(2 * time_features, hidden)
        self.out = nn.Linear(hidden, d)
        # Zero output: the untrained model is the "independent uniform pixels" denoiser.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    # ------------------------------------------------------------------ schedule
    @property
    def num_dims(self) -> int:
        return math.prod(self.shape)

    def _lam(self, t: Tensor | int) -> Tensor:
        t = torch.as_tensor(t, device=self.logsnr.device)
        return self.logsnr[t.long()]

    def _bcast(self, v: Tensor, like: Tensor) -> Tensor:
        return v.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype) if v.dim() else v.to(like.dtype)

    def alpha_sigma(self, t: Tensor | int) -> tuple[Tensor, Tensor]:
        """``(α_t, σ_t)`` for integer time(s) ``t`` in ``0 … T``."""
        a2, s2 = _alpha2_sigma2(self._lam(t))
        return a2.sqrt(), s2.sqrt()

    @staticmethod
    def to_signal(x: Tensor) -> Tensor:
        """``x ∈ [0, 1] -> x̃ = 2x − 1 ∈ [−1, 1]``."""
        return 2.0 * x - 1.0

    def _noise(self, like: Tensor, generator) -> Tensor:
        g_dev = generator.device if generator is not None else like.device
        return torch.randn(like.shape, generator=generator, device=g_dev, dtype=like.dtype).to(like.device)

    def _times(self, t, b: int, device) -> Tensor:
        t = torch.as_tensor(t, device=device).long()
        if t.dim() == 0:
            t = t.expand(b)
        if t.shape != (b,) or bool((t < 0).any()) or bool((t > self.steps).any()):
            raise ArgumentError(f"t must be an integer or a (B,) tensor of integers in 0 … {self.steps}")
        return t

    def q_sample(self, x: Tensor, t, generator: torch.Generator | None = None,
                 eps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``z_t = α_t x̃ + σ_t ε`` with ``ε ~ N(0, I)``: a draw from ``q(z_t|x)``; returns ``(z_t, ε)``."""
        t = self._times(t, x.shape[0], x.device)
        if eps is None:
            eps = self._noise(x, generator)
        a, s = self.alpha_sigma(t)
        return self._bcast(a, x) * self.to_signal(x) + self._bcast(s, x) * eps, eps

    # ------------------------------------------------------------------ denoiser
    def denoise(self, z: Tensor, t) -> Tensor:
        """``x̂_θ(z_t; t) ∈ (−1, 1)``, the predicted ``E[x̃ | z_t]``, shaped like ``z``."""
        t = self._times(t, z.shape[0], z.device)
        lam = self._lam(t)
        a2, s2 = _alpha2_sigma2(lam)
        u = ((lam - self.logsnr[-1]) / (self.logsnr[0] - self.logsnr[-1])).to(z.dtype)
        emb = self.embed(u)
        zf = z.reshape(z.shape[0], -1)
        h = F.silu(self.inp(zf) + self.time1(emb))
        h = F.silu(self.mid(h) + self.time2(emb))
        pixel_logit = (a2.sqrt() / s2)[:, None].to(z.dtype) * zf  # ½ log-odds of one pixel alone
        return torch.tanh(pixel_logit + 0.5 * self.out(h)).reshape(z.shape)

    def predict_eps(self, z: Tensor, t) -> Tensor:
        """``ε̂_θ(z_t; t) = (z_t − α_t x̂_θ) / σ_t``."""
        t = self._times(t, z.shape[0], z.device)
        a, s = self.alpha_sigma(t)
        return (z - self._bcast(a, z) * self.denoise(z, t)) / self._bcast(s, z)

    # ------------------------------------------------------------------ the bound, term by term
    def prior_kl(self, x: Tensor) -> Tensor:
        """``KL(q(z_T|x) ‖ N(0, I))`` per example ``(B,)``, in closed form."""
        a2, s2 = _alpha2_sigma2(self.logsnr[-1])
        xs = self.to_signal(x).reshape(x.shape[0], -1)
        per_dim = 0.5 * (a2 * xs.pow(2) + s2 - 1.0 - torch.log(s2))
        return per_dim.sum(-1)

    def reconstruction(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One-sample ``log p(x | z_0)``, ``z_0 ~ q(z_0|x)``, per example ``(B,)``."""
        z0, _ = self.q_sample(x, 0, generator)
        return self.log_likelihood(x, self.decode(z0))

    def diffusion_term(self, x: Tensor, t, generator: torch.Generator | None = None,
                       eps: Tensor | None = None) -> Tensor:
        """``KL(q(z_{t−1}|z_t, x) ‖ p_θ(z_{t−1}|z_t))`` at one draw ``z_t ~ q(z_t|x)``, ``(B,)``.

        ``t`` is an integer or a ``(B,)`` tensor of integers in ``1 … T``.
        """
        t = self._times(t, x.shape[0], x.device)
        if bool((t < 1).any()):
            raise ArgumentError(f"diffusion terms exist for t = 1 … {self.steps}, got t = 0")
        z, eps = self.q_sample(x, t, generator, eps)
        return diffusion_kl(eps, self.predict_eps(z, t), self._lam(t - 1), self._lam(t))

    def elbo_terms(self, x: Tensor, beta: float = 1.0, *, generator: torch.Generator | None = None
                   ) -> ELBOTerms:
        """Unbiased one-sample estimate of the ELBO's terms, per example ``(B,)``.

        One ``t`` is drawn uniformly from ``1 … T`` for each example and its diffusion term
        multiplied by ``T``: ``E_t[T · L_t] = Σ_t L_t``. ``kl`` is the prior KL plus that
        estimate of the diffusion sum (the KL of the fixed encoder's chain from the
        learned reverse chain); ``kl_per_dim`` is ``None`` (free bits do not apply).
        """
        _check_batch(x, "DiffusionModel.elbo_terms")
        b = x.shape[0]
        g_dev = generator.device if generator is not None else x.device
        t = torch.randint(1, self.steps + 1, (b,), generator=generator, device=g_dev).to(x.device)
        diffusion = self.steps * self.diffusion_term(x, t, generator)
        rec = self.reconstruction(x, generator)
        kl = self.prior_kl(x) + diffusion
        return ELBOTerms(elbo=rec - beta * kl, reconstruction=rec, kl=kl, kl_per_dim=None)

    def log_importance_weights(self, x: Tensor, k: int, *, generator: torch.Generator | None = None,
                               max_elements: int = 1 << 23):
        """Yield ``log w = log p_θ(x, z_{0:T}) − log q(z_{0:T}|x)`` in ``(c, B)`` chunks.

        Each sample runs the whole chain backwards: ``z_T ~ q(z_T|x)``, then
        ``z_{t−1} ~ q(z_{t−1}|z_t, x)``, costing ``T`` network evaluations per sample, so
        ``k`` samples cost ``k·T`` (``evaluate_model`` with its default ``k = 1000`` is
        expensive; :func:`diffusion_bound` is the cheap evaluation). ``E[w] = p_θ(x)``.
        """
        b = x.shape[0]
        d = self.num_dims
        step = max(1, min(k, max_elements // max(1, b * d)))
        for start in range(0, k, step):
            c = min(step, k - start)
            xf = x.unsqueeze(0).expand(c, *x.shape).reshape(c * b, *x.shape[1:])
            xs = self.to_signal(xf)
            z, _ = self.q_sample(xf, self.steps, generator)
            a2_T, s2_T = _alpha2_sigma2(self.logsnr[-1])
            log_w = (gaussian_log_likelihood(z, torch.zeros_like(z), 0.0)
                     - gaussian_log_likelihood(z, a2_T.sqrt() * xs, torch.log(s2_T)))
            for t in range(self.steps, 0, -1):
                ls, lt = self.logsnr[t - 1], self.logsnr[t]
                mean_q, var = posterior_params(z, xs, ls, lt)
                mean_p, _ = posterior_params(z, self.denoise(z, t), ls, lt)
                z_new = mean_q + var.sqrt() * self._noise(z, generator)
                # same variance in p and q: the normalisers cancel
                log_w = log_w + ((z_new - mean_q).pow(2) - (z_new - mean_p).pow(2)).reshape(
                    c * b, -1).sum(-1) / (2 * var)
                z = z_new
            log_w = log_w + self.log_likelihood(xf, self.decode(z))
            yield log_w.view(c, b)

    # ------------------------------------------------------------------ the VAE interface
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(μ, log σ²)`` of the fixed ``q(z_0|x) = N(α_0 x̃, σ_0² I)``, each ``(B, D)``."""
        a2, s2 = _alpha2_sigma2(self.logsnr[0])
        mu = a2.sqrt() * self.to_signal(x).reshape(x.shape[0], -1)
        return mu, torch.log(s2).expand_as(mu)

    def decode(self, z0: Tensor) -> Tensor:
        """Bernoulli logits of ``p(x|z_0)``: ``2 α_0 z_0 / σ_0²``, shaped like an image batch."""
        a2, s2 = _alpha2_sigma2(self.logsnr[0])
        return (2.0 * a2.sqrt() / s2 * z0).reshape(z0.shape[0], *self.shape)

    def log_likelihood(self, x: Tensor, logits: Tensor) -> Tensor:
        """``log p(x|z_0)`` per example ``(B,)`` from the decoder's logits."""
        return bernoulli_log_likelihood(logits, x)

    def mean(self, logits: Tensor) -> Tensor:
        """The mean of ``p(x|z_0)``, an image in ``[0, 1]``."""
        return torch.sigmoid(logits)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The mean of ``p(x | z_0 = E[z_0|x])``: almost ``x`` itself (there is no bottleneck)."""
        mu, _ = self.encode(x)
        return self.mean(self.decode(mu)).reshape(x.shape)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               return_chain: bool = False):
        """Ancestral sampling: ``z_T ~ N(0, I)``, ``z_{t−1} ~ p_θ(z_{t−1}|z_t)``, then the mean
        of ``p(x|z_0)``; ``(n, *shape)``. With ``return_chain`` also the list of
        ``x̂_θ(z_t; t)`` mapped to ``[0, 1]`` for ``t = T … 1``."""
        n = check_int("n", n, min=1)
        p = next(self.parameters())
        z = self._noise(torch.empty(n, *self.shape, device=p.device, dtype=p.dtype), generator)
        chain = []
        for t in range(self.steps, 0, -1):
            x_hat = self.denoise(z, t)
            if return_chain:
                chain.append((x_hat + 1) / 2)
            mean, var = posterior_params(z, x_hat, self.logsnr[t - 1], self.logsnr[t])
            z = mean + var.sqrt() * self._noise(z, generator)
        x = self.mean(self.decode(z))
        return (x, chain) if return_chain else x


@torch.no_grad()
def diffusion_bound(model: DiffusionModel, data, *, seed: int = 0, batch_size: int = 100,
                    device=None, max_examples: int | None = None) -> dict:
    """The full ``−ELBO`` of a :class:`DiffusionModel`, every one of its ``T`` terms evaluated.

    The images are binarised exactly as :func:`~vae_tutorial.evaluation.evaluate.evaluate_model`
    binarises them with the same ``seed``. For each image the prior KL is exact, each of
    the ``T`` diffusion terms and the reconstruction use one draw of ``z_t ~ q(z_t|x)``
    (``T + 1`` network evaluations per image), so ``nll_bound`` is an unbiased estimate
    of the negative ELBO.

    Returns:
        A dict of per-image means in nats, ``prior``, ``diffusion``, ``reconstruction``
        (the expected ``−log p(x|z_0)``), ``nll_bound`` (their sum, ``−ELBO``) and its
        standard error ``nll_bound_se`` over images, ``bits_per_dim``, ``per_step``
        (``(T,)`` tensor, the mean of each diffusion term ``L_t``, ``t = 1 … T``), the
        per-image ``per_example`` ``(N,)`` ``−ELBO`` values, and ``n``, ``dims``.
    """
    from ..evaluation.evaluate import _prepare

    if not isinstance(model, DiffusionModel):
        raise ArgumentError(f"diffusion_bound needs a DiffusionModel, got {type(model).__name__}")
    _, batch_size, images, _, gen = _prepare(model, data, 1, batch_size, device, seed, max_examples)
    was_training = model.training
    model.eval()
    prior, rec, steps = [], [], []
    try:
        for i in range(0, images.shape[0], batch_size):
            x = images[i:i + batch_size]
            prior.append(model.prior_kl(x).double())
            rec.append(-model.reconstruction(x, gen).double())
            steps.append(torch.stack([model.diffusion_term(x, t, gen).double()
                                      for t in range(1, model.steps + 1)], dim=1))
    finally:
        model.train(was_training)
    prior, rec, steps = torch.cat(prior).cpu(), torch.cat(rec).cpu(), torch.cat(steps).cpu()
    total = prior + rec + steps.sum(1)
    n = total.shape[0]
    dims = model.num_dims
    return {
        "prior": float(prior.mean()), "diffusion": float(steps.sum(1).mean()),
        "reconstruction": float(rec.mean()), "nll_bound": float(total.mean()),
        "nll_bound_se": float(total.std() / math.sqrt(n)) if n > 1 else float("nan"),
        "bits_per_dim": float(total.mean()) / (dims * math.log(2.0)),
        "per_step": steps.mean(0), "per_example": total, "n": n, "dims": dims,
    }
