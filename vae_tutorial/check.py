"""Homework checks: run your version of a building block against the package's reference.

Use it from an exercise cell::

    from vae_tutorial import check

    def my_kl(mu, logvar):
        ...

    check.kl_standard_normal(my_kl)   # prints PASS or FAIL (with the failing input), returns a bool

Each check runs your function on random inputs and on edge cases (extreme logits ±50,
``log σ²`` far from 0, a batch of one, float64, non-contiguous tensors) and compares
it with the reference in :mod:`vae_tutorial.maths.losses`. It prints ``PASS``, or ``FAIL``
with the first failing input, what was expected, what your function returned and,
for common mistakes, a hint. It never raises: an exception in your function is
reported as a failure.

Your function takes the arguments of the reference, in the same order:

========================================  ===========================================
check                                     your function
========================================  ===========================================
``kl_standard_normal(fn)``                ``fn(mu, logvar) -> (B,)``
``kl_normal(fn)``                         ``fn(mu_q, logvar_q, mu_p, logvar_p) -> (B,)``
``reparameterize(fn)``                    ``fn(mu, logvar) -> z`` (shape of ``mu``)
``bernoulli_log_likelihood(fn)``          ``fn(logits, x) -> (B,)``
``gaussian_log_likelihood(fn)``           ``fn(x, mean, logvar) -> (B,)``
``continuous_bernoulli_log_likelihood``   ``fn(logits, x) -> (B,)``
``elbo(fn)``                              ``fn(model, x) -> (B,)`` per-example ELBO
``iwae_bound(fn)``                        ``fn(model, x, k) -> (B,)``
========================================  ===========================================

Stochastic functions (``reparameterize``, ``elbo``, ``iwae_bound``) are judged by the
law of what they return, so a correct answer passes whatever generator it uses (the
global one, its own ``torch.Generator``, ``torch.distributions`` ``rsample``) and in
whatever order it draws its noise (all at once, per row, transposed, in chunks); the
check seeds the global generator before calling your function only so that a run is
reproducible. What each check asks for:

* ``reparameterize``: shape, dtype, fresh noise per call, the exact gradients
  ``∂z/∂μ = 1`` and ``∂z/∂ log σ² = ½ σ ε``, and the law of ``ε = (z − μ)/σ`` on
  2·10⁵ × 5 draws (five columns with ``log σ²`` from −20 to 20), per column and pooled:
  z-tests of the mean, the mean square (standard error √(2/n)), P(−1 < ε < 1) = 0.6827
  and E ε⁴ = 3, and a Kolmogorov–Smirnov test of the whole distribution function (so a
  noise that matches N(0, 1) in a few moments, such as a two-level noise, fails); then
  independence: no correlation between neighbouring dimensions or examples, nor between
  their squares, no row repeating another (up to sign), no two columns sharing their noise.
* ``elbo``: **one specific estimator**, the book's ``vt.elbo``: one sample
  ``z = μ + σ ε`` per example and the KL in closed form, ``log p_θ(x|z) − KL``. Other
  unbiased estimators of the ELBO (the KL estimated from the sample as
  ``log q_φ(z|x) − log p(z)``, an average over several z) fail, with a hint that says they
  are valid estimators but not the one the exercise asks for. The cases: exact values where
  the noise does not matter (``log σ² = −30``, so ``z = μ``), and there the exact gradient
  with respect to the encoder's and decoder's parameters; on a tanh MLP VAE and on a
  linear-Gaussian decoder (Z = 2), each example repeated 50 000 times in one batch, z-tests
  of the average and the variance of your values over the copies against the exact mean and
  variance of the estimator (Gauss–Hermite quadrature over ε; 40 and 80 nodes agree to
  5e-6); the gradient at moderate σ = (0.61, 1.28): on the linear-Gaussian model, the
  batch-mean gradient with respect to the encoder's output bias (μ and log σ²) over
  4 × 50 000 rows, z-tested against its exact expectation ∂ELBO/∂(μ, log σ²) and standard
  error (quadrature, exact here), so σ detached in the sample fails; the law of the noise,
  read back from your values on a model whose ELBO is an increasing function of ε_1
  (2·10⁵ draws, the same tests as for ``reparameterize``); and two calls on the same batch
  must differ (re-seeding inside the function fails).
* ``iwae_bound``: exact values on a linear-Gaussian model whose encoder is the exact
  posterior (every weight is ``p(x)``, so ``L_k = log p(x)`` for any noise), also for
  28 × 28 data with ``log w ≈ −220 … −260``, the scale of real images, where
  ``exp(log w)`` underflows to 0 in float32; then, with the encoder shifted by
  α = (1.2, 0.9) posterior standard deviations, every log-weight is
  ``log p(x) − ‖α‖²/2 − αᵀε`` (log-normal weights), so the exact mean and variance of
  ``L̂_k`` follow from a k-dimensional quadrature; k = 3, 2, 1, 50 000 copies of 2 examples;
  the gradient at k = 1 with log σ² = (−1, 0.5): ``E ∇_φ L̂_1 = ∇_φ ELBO`` in closed form,
  tested as for ``elbo`` (the standard error is the larger of the full pathwise estimator's
  and the sticking-the-landing one's, so both pass; z detached or the bound computed under
  ``torch.no_grad()`` fail); and fresh noise at every call.

Significance: every z-test rejects at ``|z| > 6`` (two-sided probability 2.0e-9), and the
Kolmogorov–Smirnov tests at ``√n · sup|F_n − Φ| > 3.22``, whose probability is at most
``2 e^{−2·3.22²}`` = 2.0e-9 for every n (the Dvoretzky–Kiefer–Wolfowitz inequality). A check
runs at most 34 such tests (``reparameterize`` 34, ``elbo`` 31, ``iwae_bound`` 16), so a
correct answer fails with probability below 7e-8 (by the union bound; the z-tested
statistics are averages of 5·10⁴ or more independent terms; the most skewed, the mean of
ε⁴ over 2·10⁵ draws, has skewness 0.02, which at most doubles its tail at 6). Exact
repeats (rows, columns, calls) fail only when they cannot happen by chance: more than 1 %
of the rows or of a pair of columns, or two whole calls identical. Over 300 independent
runs of correct answers the z-scores had standard deviations 0.94–1.07 and no
``|z| > 4.9``; over 200 more runs the statistics added for issue 18 (noise law, gradients)
had standard deviations 0.90–1.09 and no ``|z| > 3.8``, and ``√n · sup|F_n − Φ|`` stayed
below 2.0. Each check takes about a second of CPU or less (0.4–0.8 s measured).

Smallest errors each check detects, measured as FAIL in 20 of 20 runs with independent
generators (one step below, δ = 0.005 failed ``reparameterize`` in 18 of 20 runs, a 1 %
admixture in 5; δ = +0.01 ``elbo`` in 17, t = 0.02 in 17, a 2 % admixture in 4;
δ = 0.015 ``iwae_bound`` in 11, t = 0.025 in 16 (σ) and 17 (z)), and how far the
catalogued mistakes (issues 10 and 18) land, in standard errors (SE) of the test that
reports them:

====================  ========================================================================
check                 smallest error reliably detected; catalogued mistakes
====================  ========================================================================
``reparameterize``    noise standard deviation 1 + δ: ``|δ| ≥ 0.007`` (sd 1.03: 43 SE pooled, 19 SE
                      per column); a 1.5 % admixture of a two-level noise (Kolmogorov–Smirnov,
                      pooled); σ² = exp(log σ²) as σ, no σ: ``|ε|`` up to 10⁵; uniform or ±1
                      noise: 227 / 607 SE; two-level noise with N(0, 1)'s mean, variance,
                      ``P(|ε| < 1)`` and E ε⁴: ``√n · sup|F_n − Φ|`` = 267 (threshold 3.22); noise
                      clamped to ±3: 11 SE (E ε⁴); ``|ε|`` of neighbouring examples moving together:
                      811 SE; shared, repeated or mirrored noise: detected exactly
``elbo``              any error when σ ≈ 0 (sign, KL formula, mean over pixels): 1e-4 relative;
                      noise scale (1 + δ) σ: ``|δ| ≥ 0.013``; a 3 % admixture of a two-level
                      noise; a mean error present only when σ ≠ 0 (e.g. σ for σ² inside the KL):
                      ≈ 0.05 nats (SE of the means 0.005–0.015); z = μ: zero spread; σ² as σ:
                      35 SE (mean), 90 SE (spread); 0.1 σ: 199 SE; the gradient through σ in
                      the sample scaled by 1 − t: ``t ≥ 0.025``; σ detached (t = 1): 300 SE;
                      two calls with the same noise: detected exactly
``iwae_bound``        any error on the exact posterior (− log k, sign, k − 1 samples then
                      − log k: off by log((k − 1)/k)): 1e-4 relative; exp then log at real-image
                      scale: −inf, detected exactly; L_{k−1} instead of L_k at k = 3: 35 SE
                      (mean), 52 SE (spread); mean of log w: 152 SE; one z reused: 88 SE; noise
                      scale (1 + δ) σ when sampling z: ``|δ| ≥ 0.02``; a mean error: ≈ 0.05 nats
                      (SE 0.0045–0.0067); the gradient through σ, or through z, in the samples
                      scaled by 1 − t: ``t ≥ 0.03``; z detached: 252 SE; ``torch.no_grad()``,
                      two calls with the same noise: detected exactly
====================  ========================================================================

The global random state is restored afterwards.
"""
from __future__ import annotations

import copy
import math
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .maths import losses
from .errors import ArgumentTypeError
from .models.vae import VAE, MLPDecoder, MLPEncoder
from .maths.ppca import LinearGaussian

__all__ = [
    "bernoulli_log_likelihood",
    "continuous_bernoulli_log_likelihood",
    "elbo",
    "gaussian_log_likelihood",
    "iwae_bound",
    "kl_normal",
    "kl_standard_normal",
    "reparameterize",
]


# ----------------------------------------------------------------------------- plumbing

class _StudentError(Exception):
    """The student's function raised; carries a one-line summary of where and what."""


@dataclass
class _Failure:
    what: str  # one line: what went wrong
    details: list[str]  # expected vs got, ...
    hint: str | None = None


def _call(fn, *args):
    try:
        return fn(*args)
    # any error in student code is a FAIL, not a crash; a sys.exit() in it too (it would end the
    # notebook's kernel or the grader), but Ctrl-C still interrupts
    except (Exception, SystemExit) as e:  # noqa: BLE001
        frames = traceback.extract_tb(e.__traceback__)
        where = f" (line {frames[-1].lineno} in {frames[-1].name})" if frames else ""
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        raise _StudentError(f"{last}{where}") from None


class _seeded:
    """``with _seeded(s):`` seeds the global generator and restores its state afterwards."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        self._fork = torch.random.fork_rng(devices=[])
        self._fork.__enter__()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        return self._fork.__exit__(*exc)


def _short(t: Tensor, n: int = 6) -> str:
    flat = t.detach().reshape(-1)
    vals = ", ".join(f"{v:.6g}" for v in flat[:n].tolist())
    return f"[{vals}{', …' if flat.numel() > n else ''}]"


def _describe(name: str, v) -> str:
    if isinstance(v, Tensor):
        layout = "" if v.is_contiguous() else ", non-contiguous"
        return f"{name}: shape {tuple(v.shape)}, {str(v.dtype).replace('torch.', '')}{layout}, values {_short(v)}"
    if isinstance(v, torch.nn.Module):
        p = next(v.parameters())
        return f"{name}: {type(v).__name__} ({getattr(v, 'likelihood', '')}, {str(p.dtype).replace('torch.', '')})"
    return f"{name}: {v!r}"


def _as_output(got) -> Tensor:
    """Accept a tensor, or an ELBOTerms-like object with ``.elbo``."""
    if hasattr(got, "elbo") and isinstance(got.elbo, Tensor):
        got = got.elbo
    if not isinstance(got, Tensor):
        raise ArgumentTypeError(f"return a torch.Tensor, got {type(got).__name__}")
    return got


# ----------------------------------------------------------------------------- blocks

@dataclass(frozen=True)
class _Mistake:
    """A known wrong answer: ``alt(inputs, expected)`` is what that mistake returns."""

    hint: str
    alt: Callable[[dict, Tensor], Tensor]


@dataclass(frozen=True)
class _Block:
    name: str
    reference: Callable
    reduced: str  # what the result is summed over ("latent dimensions", "pixels")
    formula: str  # the hint shown when values differ for no recognised reason
    overflow: str  # the hint shown when the result is not finite but should be
    mistakes: tuple[_Mistake, ...] = ()


@dataclass(frozen=True)
class _Case:
    block: str
    label: str
    make: Callable[[], dict]  # fresh, seeded inputs, in the function's argument order
    judge: str = "values"  # "values", "seeded", "moments", "reparameterize", "gradient", "noise" or "fresh"
    rtol: float = 1e-4
    atol: float = 1e-4
    note: str | None = None  # the hint shown if the student's function raises on this case
    exact: Callable[[dict], _Moments | _GradLaw] | None = None  # "moments", "gradient": a correct answer's law
    reps: int = 0  # "moments", "gradient": copies of each example in the batch given to the function
    grads: bool = False  # "seeded" elbo: also compare the gradients with the reference's


def _reduced_numel(inputs: dict) -> int:
    """Elements summed per example: those of the first tensor argument."""
    for v in inputs.values():
        if isinstance(v, Tensor):
            return v[0].numel()
    return 1


def _neg(inputs, expected):
    return -expected


def _mean_not_sum(inputs, expected):
    return expected / _reduced_numel(inputs)


_SIGN = _Mistake("the sign is flipped: return the quantity itself, not its negative (a loss is −ELBO; "
                 "a log-likelihood is −BCE)", _neg)
_MEAN = _Mistake("did you average instead of summing? Sum over the data/latent dimensions: averaging over "
                 "pixels silently rescales the term (the accidental β of errata E9)", _mean_not_sum)


def _kl_sigma_not_var(i, e):  # used σ = exp(½ log σ²) where σ² belongs
    mu, lv = i["mu"], i["logvar"]
    return (0.5 * (mu.pow(2) + torch.exp(0.5 * lv) - 1 - lv)).sum(-1)


def _kl_swapped(i, e):
    return losses.kl_normal(i["mu_p"], i["logvar_p"], i["mu_q"], i["logvar_q"])


def _gauss_no_const(i, e):
    return e + 0.5 * _reduced_numel(i) * losses.LOG_2PI


def _gauss_std_for_var(i, e):  # logvar treated as log σ
    return losses.gaussian_log_likelihood(i["x"], i["mean"], 2 * torch.as_tensor(i["logvar"]))


def _cb_no_norm(i, e):
    return losses.bernoulli_log_likelihood(i["logits"], i["x"])


def _elbo_plus_kl(i, e):
    t = losses.elbo(i["model"], i["x"])
    return t.reconstruction + t.kl


def _elbo_mean_pixels(i, e):
    t = losses.elbo(i["model"], i["x"])
    return t.reconstruction / i["x"][0].numel() - t.kl


def _elbo_logvar_as_logstd(i, e):  # σ = exp(log σ²) in the noise (invisible when σ ≈ 0) and in the KL
    mu, lv = i["model"].encode(i["x"])
    kl = (0.5 * (mu.pow(2) + torch.exp(2 * lv) - 1 - 2 * lv)).sum(-1)
    return losses.elbo(i["model"], i["x"]).reconstruction - kl


def _iwae_no_log_k(i, e):
    return e + math.log(i["k"])


def _iwae_one_missing(i, e):  # exact on the exact-posterior model, where every log w = log p(x)
    return e + math.log((i["k"] - 1) / i["k"])


def _iwae_mean_log_w(i, e):
    lw = torch.cat(list(losses.iwae_log_weights(i["model"], i["x"], i["k"])))
    return lw.mean(0)


_BLOCKS = {b.name: b for b in [
    _Block("kl_standard_normal", losses.kl_standard_normal, "latent dimensions",
           "KL(q‖p) = −½ Σ_j (1 + log σ_j² − μ_j² − σ_j²) with σ² = exp(log σ²), summed over the "
           "latent dimensions (μ² inside the sum, the whole bracket summed); it is ≥ 0 and 0 at μ=0, σ=1",
           "exp(logvar) overflows only for logvar > 88 (float32): check for log(0) or division by σ",
           (_SIGN, _MEAN, _Mistake("σ² = exp(log σ²): you seem to have used σ = exp(½ log σ²)",
                                   _kl_sigma_not_var))),
    _Block("kl_normal", losses.kl_normal, "latent dimensions",
           "KL(q‖p) = ½ Σ_j [log σ_p² − log σ_q² + (σ_q² + (μ_q − μ_p)²)/σ_p² − 1], summed over the "
           "latent dimensions",
           "divide by σ_p² = exp(logvar_p), never take log of a variance you exponentiated",
           (_SIGN, _MEAN, _Mistake("you computed KL(p‖q): the KL is not symmetric; the first two "
                                   "arguments are q's", _kl_swapped))),
    _Block("reparameterize", losses.reparameterize, "", "z = μ + σ ⊙ ε with σ = exp(½ log σ²) and "
           "ε ~ N(0, I) of the shape of μ (torch.randn_like(mu))", "σ = exp(½ log σ²) is finite here"),
    _Block("bernoulli_log_likelihood", losses.bernoulli_log_likelihood, "pixels",
           "log p(x|z) = Σ_d [x_d ℓ_d − softplus(ℓ_d)] with ℓ the logits, summed over all pixels of an "
           "example (F.binary_cross_entropy_with_logits(..., reduction='none') is its negative)",
           "work with the logits: x·ℓ − softplus(ℓ) (or −F.binary_cross_entropy_with_logits); "
           "sigmoid then log gives log(0) = −inf once the sigmoid saturates",
           (_SIGN, _MEAN)),
    _Block("gaussian_log_likelihood", losses.gaussian_log_likelihood, "pixels",
           "log N(x; m, σ²) = −½ Σ_d [log 2π + log σ_d² + (x_d − m_d)²/σ_d²], summed over all dimensions "
           "of an example; logvar may be a tensor or a float",
           "divide by σ² as exp(−logvar) and keep logvar in log space",
           (_SIGN, _MEAN,
            _Mistake("did you forget the −½ log 2π constant per dimension?", _gauss_no_const),
            _Mistake("logvar is log σ², not log σ: the variance is exp(logvar)", _gauss_std_for_var))),
    _Block("continuous_bernoulli_log_likelihood", losses.continuous_bernoulli_log_likelihood, "pixels",
           "log p(x|z) = Σ_d [x_d ℓ_d − softplus(ℓ_d) + log C(ℓ_d)] with C = ℓ / tanh(ℓ/2) "
           "(and C = 2 at ℓ = 0: use log 2 + ℓ²/12 near 0)",
           "C(ℓ) = ℓ / tanh(ℓ/2) is 0/0 at ℓ = 0 (use its limit 2 and the series log 2 + ℓ²/12 near 0); "
           "computing C through λ = sigmoid(ℓ) breaks once the sigmoid saturates (|ℓ| ≳ 15 in float32)",
           (_SIGN, _MEAN, _Mistake("that is the Bernoulli log-likelihood: add the log normaliser "
                                   "Σ_d log C(ℓ_d) that makes the density integrate to 1", _cb_no_norm))),
    _Block("elbo", lambda model, x: losses.elbo(model, x).elbo, "pixels",
           "ELBO = log p_θ(x|z) − KL(q_φ(z|x) ‖ p(z)) with z = μ + σ ε from model.encode(x), "
           "log p_θ(x|z) = model.log_likelihood(x, model.decode(z)) summed over pixels, the KL summed "
           "over latent dimensions; one value per example",
           "use the logits (model.log_likelihood or binary_cross_entropy_with_logits), not sigmoid then log",
           (_SIGN, _Mistake("the KL is subtracted: ELBO = reconstruction − KL", _elbo_plus_kl),
            _Mistake("did you average the reconstruction over pixels? Sum it (errata E9: averaging is an "
                     "accidental β = number of pixels)", _elbo_mean_pixels),
            _Mistake("log σ² is the log-variance: σ = exp(½ log σ²), σ² = exp(log σ²) in the KL; your KL "
                     "treats it as log σ", _elbo_logvar_as_logstd))),
    _Block("iwae_bound", lambda model, x, k: losses.iwae_bound(model, x, k), "samples",
           "L_k = logsumexp_k(log w_k) − log k with log w = log p_θ(x|z) + log p(z) − log q_φ(z|x), "
           "z_k ~ q_φ(z|x); log p(z) and log q are full Gaussian log densities summed over latent dims",
           "combine the weights with torch.logsumexp, never exp then log",
           (_SIGN, _Mistake("did you forget the − log k (the average, not the sum, of the weights)?",
                            _iwae_no_log_k),
            _Mistake("that is the average of log w (the ELBO), not log of the average weight: use "
                     "logsumexp(log w) − log k", _iwae_mean_log_w),
            _Mistake("one of the k samples is missing: logsumexp runs over k − 1 log-weights (an "
                     "off-by-one in a loop or a slice?)", _iwae_one_missing))),
]}


# ----------------------------------------------------------------------------- inputs

def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed, scale=1.0, dtype=torch.float32):
    return scale * torch.randn(*shape, generator=_g(seed), dtype=dtype)


def _uniform(*shape, seed, lo, hi, dtype=torch.float32):
    return lo + (hi - lo) * torch.rand(*shape, generator=_g(seed), dtype=dtype)


def _pm(shape, value, dtype=torch.float32):
    """Alternating ``+value, −value`` entries."""
    n = math.prod(shape)
    return (value * (1 - 2 * (torch.arange(n) % 2))).to(dtype).reshape(shape)


def _binary(*shape, seed, dtype=torch.float32):
    return torch.bernoulli(torch.full(shape, 0.5, dtype=dtype), generator=_g(seed))


def _toy_vae(*, seed=0, likelihood="bernoulli", logvar=None, logit_scale=1.0, dtype=torch.float32,
             smooth=False):
    """A small MLP VAE on ``(1, 4, 4)`` images, Z = 2, with seeded weights.

    ``logvar``: pin the encoder's log σ² to this value (``−30`` makes z = μ, so the ELBO
    is deterministic). ``logit_scale`` multiplies the decoder's last layer (saturation).
    ``smooth``: tanh instead of ReLU in the decoder, so that ``log p(x|z)`` is analytic in
    z and Gauss–Hermite quadrature gives its moments exactly (ReLU kinks leave errors of
    ~1e-3, which 50 000 draws resolve).
    """
    with _seeded(seed):
        model = VAE(MLPEncoder((1, 4, 4), [8], 2), MLPDecoder(2, [8], (1, 4, 4)), likelihood)
    if smooth:
        model.decoder.net[1] = torch.nn.Tanh()
    with torch.no_grad():
        if logvar is not None:  # a float, or one value per latent dimension
            head = model.encoder.net[-1]
            head.weight[2:] = 0.0
            head.bias[2:] = torch.as_tensor(logvar, dtype=head.bias.dtype)
        model.decoder.net[-1].weight.mul_(logit_scale)
        model.decoder.net[-1].bias.mul_(logit_scale)
    return model.to(dtype).eval()


def _exact_posterior_vae(dtype=torch.float32, *, alpha=(0.0, 0.0), shape: tuple[int, ...] = (6,),
                         noise_var: float = 0.25, logvar=None) -> tuple[VAE, LinearGaussian]:
    """Linear-Gaussian model (PPCA, D = prod(shape), Z = 2) whose encoder is the exact posterior.

    ``Wᵀ W`` is diagonal, so the posterior ``N(m, S²) = N(M⁻¹Wᵀ(x − b), σ² M⁻¹)`` is a
    diagonal Gaussian that the encoder represents exactly. Every importance weight is
    then ``p(x, z)/p(z|x) = p(x)``: any correct IWAE bound equals ``log p(x)`` for every k.

    ``alpha``: shift the encoder's mean by ``α_j S_j`` (q = N(m + α S, S²)). Then
    ``log w = log p(x) + log N(z; m, S²) − log N(z; m + αS, S²)
    = log p(x) − ‖α‖²/2 − αᵀε`` with ``z = m + αS + S ε``: the weights are exactly
    log-normal, so the distribution of ``L̂_k`` is known (see :func:`_iwae_moments`).
    ``shape``: the data's shape per example (``(1, 2, 3)`` for image-like inputs, ``(1, 28, 28)``
    for log-weights on the scale of real images). ``noise_var``: the decoder's σ².
    ``logvar``: replace the encoder's log-variances (the posterior's) by these two values
    (then q is no longer the posterior's shape: used by the gradient cases).
    """
    d, z = math.prod(shape), 2
    q, _ = torch.linalg.qr(torch.randn(d, z, generator=_g(7), dtype=torch.float64))
    w = q * torch.tensor([2.0, 0.7], dtype=torch.float64)
    b = torch.linspace(-1, 1, d, dtype=torch.float64)
    ppca = LinearGaussian(w, b, noise_var)
    m = ppca._m()
    a = torch.linalg.solve(m, w.T)  # posterior mean = A (x − b)
    post_logvar = (ppca.noise_var / m.diagonal()).log()
    shift = torch.tensor(alpha, dtype=torch.float64) * (0.5 * post_logvar).exp()
    # one linear layer each way; the Gaussian decoder's mean is the layer's output, W z + b
    with _seeded(0):  # the layers' default init draws from the global generator
        model = VAE(MLPEncoder(shape, [], z), MLPDecoder(z, [], shape), "gaussian",
                    gaussian_logvar=math.log(noise_var)).double()
    with torch.no_grad():
        enc, dec = model.encoder.net[-1], model.decoder.net[-1]
        enc.weight.zero_()
        enc.weight[:z] = a
        enc.bias[:z] = -a @ b + shift
        enc.bias[z:] = post_logvar if logvar is None else torch.tensor(logvar, dtype=torch.float64)
        dec.weight.copy_(w)
        dec.bias.copy_(b)
        model.obs_logvar.fill_(math.log(noise_var))  # the buffer was made in float32: reset it exactly
    return model.to(dtype).eval(), ppca


def _ppca_data(b: int, seed: int, dtype=torch.float32) -> Tensor:
    return _randn(b, 6, seed=seed, dtype=dtype)


def _ppca_samples(ppca: LinearGaussian, b: int, seed: int, dtype=torch.float32) -> Tensor:
    """``b`` draws ``x = W z + b + σ n`` from the linear-Gaussian model, ``(b, D)``."""
    z = _randn(b, ppca.weight.shape[1], seed=seed, dtype=torch.float64)
    noise = _randn(b, ppca.weight.shape[0], seed=seed + 1, dtype=torch.float64)
    return (z @ ppca.weight.T + ppca.bias + ppca.noise_var.sqrt() * noise).to(dtype)


def _kl_inputs(b, z, *, seed, dtype=torch.float32, lv=None, mu_scale=1.5, transpose=False):
    shape = (z, b) if transpose else (b, z)
    mu = _randn(*shape, seed=seed, scale=mu_scale, dtype=dtype)
    logvar = _uniform(*shape, seed=seed + 1, lo=-3, hi=3, dtype=dtype) if lv is None else lv(shape, dtype)
    if transpose:
        mu, logvar = mu.t(), logvar.t()
    return {"mu": mu, "logvar": logvar}


def _kl2_inputs(b, z, *, seed, dtype=torch.float32, prior="random", transpose=False, extreme=False):
    q = _kl_inputs(b, z, seed=seed, dtype=dtype, transpose=transpose,
                   lv=(lambda s, d: _pm(s, 20.0, d)) if extreme else None)
    if prior == "standard":
        p = {"mu": torch.zeros_like(q["mu"]), "logvar": torch.zeros_like(q["logvar"])}
    elif prior == "same":
        p = {"mu": q["mu"].clone(), "logvar": q["logvar"].clone()}
    else:
        p = _kl_inputs(b, z, seed=seed + 10, dtype=dtype, transpose=transpose, mu_scale=1.0,
                       lv=(lambda s, d: -_pm(s, 20.0, d)) if extreme else None)
    return {"mu_q": q["mu"], "logvar_q": q["logvar"], "mu_p": p["mu"], "logvar_p": p["logvar"]}


def _ll_inputs(shape, *, seed, dtype=torch.float32, logits=None, grey=False, transpose=False):
    """Bernoulli / continuous Bernoulli inputs ``(logits, x)``."""
    lg = _randn(*shape, seed=seed, scale=3.0, dtype=dtype) if logits is None else logits(shape, dtype)
    x = _uniform(*shape, seed=seed + 1, lo=0, hi=1, dtype=dtype) if grey else _binary(*shape, seed=seed + 1, dtype=dtype)
    if transpose:  # same values, transposed storage
        lg, x = lg.t().contiguous().t(), x.t().contiguous().t()
    return {"logits": lg, "x": x}


def _gauss_inputs(shape, *, seed, dtype=torch.float32, logvar="random", transpose=False):
    x = _randn(*shape, seed=seed, dtype=dtype)
    mean = _randn(*shape, seed=seed + 1, scale=0.5, dtype=dtype)
    if logvar == "random":
        lv = _uniform(*shape, seed=seed + 2, lo=-2, hi=2, dtype=dtype)
    elif logvar == "extreme":
        lv = _pm(shape, 20.0, dtype)
        x = mean + torch.exp(0.5 * lv) * _randn(*shape, seed=seed + 3, dtype=dtype)
    else:
        lv = float(logvar)
    if transpose:
        x, mean = x.t().contiguous().t(), mean.t().contiguous().t()
        if isinstance(lv, Tensor):
            lv = lv.t().contiguous().t()
    return {"x": x, "mean": mean, "logvar": lv}


def _reparam_inputs(rows, lv_values, mu_values, *, dtype=torch.float32, transpose=False):
    """``μ``, ``log σ²`` with one value per column, ``rows`` rows."""
    mu = torch.tensor(mu_values, dtype=dtype).expand(rows, -1).clone()
    lv = torch.tensor(lv_values, dtype=dtype).expand(rows, -1).clone()
    if transpose:
        mu, lv = mu.t().contiguous().t(), lv.t().contiguous().t()
    return {"mu": mu.requires_grad_(), "logvar": lv.requires_grad_()}


def _vae_inputs(b, *, seed=0, x_seed=3, transpose=False, dtype=torch.float32, **model_kw):
    model = _toy_vae(seed=seed, dtype=dtype, **model_kw)
    x = _binary(b, 1, 4, 4, seed=x_seed, dtype=dtype)
    if transpose:
        x = x.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)
    return {"model": model, "x": x}


_MONO_SHAPE = (1, 2, 2)
_MONO_MU = (0.3, -0.5)
_MONO_LOGVAR = (0.7, -1.0)
_MONO_SLOPE = 0.5  # the decoder's logit ℓ = 0.5 ε_1: ε_1 ∈ [−6, 6] keeps sigmoid(ℓ) in [0.05, 0.95]


def _monotone_vae(dtype=torch.float32) -> VAE:
    """A linear VAE (Z = 2, Bernoulli, ``(1, 2, 2)`` images) whose ELBO reveals ε_1.

    The encoder ignores x (``μ``, ``log σ²`` fixed); every pixel's logit is
    ``ℓ = w (z_1 − μ_1) = _MONO_SLOPE · ε_1`` (z_2 is ignored). With all pixels on,
    ``log p_θ(x|z) = D log sigmoid(ℓ)`` is increasing in ε_1: see :func:`_judge_elbo_noise`.
    """
    with _seeded(0):
        model = VAE(MLPEncoder(_MONO_SHAPE, [], 2), MLPDecoder(2, [], _MONO_SHAPE), "bernoulli")
    w = _MONO_SLOPE / math.exp(0.5 * _MONO_LOGVAR[0])
    with torch.no_grad():
        enc, dec = model.encoder.net[-1], model.decoder.net[-1]
        enc.weight.zero_()
        enc.bias.copy_(torch.tensor([*_MONO_MU, *_MONO_LOGVAR]))
        dec.weight.zero_()
        dec.weight[:, 0] = w
        dec.bias.fill_(-w * _MONO_MU[0])
    return model.to(dtype).eval()


def _ppca_inputs(b, k=None, *, dtype=torch.float32, seed=5, transpose=False, alpha=(0.0, 0.0),
                 shape=(6,), noise_var=0.25, logvar=None):
    model, ppca = _exact_posterior_vae(dtype, alpha=alpha, shape=shape, noise_var=noise_var, logvar=logvar)
    if math.prod(shape) == 6:
        x = _ppca_data(b, seed, dtype).reshape(b, *shape)
    else:  # many dimensions: data from the model itself, so that log p(x) is that of a typical x
        x = _ppca_samples(ppca, b, seed, dtype).reshape(b, *shape)
    if transpose:
        x = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    return {"model": model, "x": x} if k is None else {"model": model, "x": x, "k": k}


# ----------------------------------------------------------------------------- exact laws

_Z = 6.0  # z-test threshold: a correct answer fails one test with probability 2.0e-9
_NODES = 60  # Gauss–Hermite nodes per dimension (40 and 80 agree to 1e-6 on these models)


def _gauss_hermite(dim: int, nodes: int = _NODES) -> tuple[Tensor, Tensor]:
    """Nodes ``(N, dim)`` and weights ``(N,)``, ``N = nodes**dim``, with
    ``Σ_n w_n f(ε_n) ≈ E[f(ε)]`` for ``ε ~ N(0, I_dim)`` (exact for polynomials of degree
    < 2·nodes)."""
    t, w = np.polynomial.hermite_e.hermegauss(nodes)
    t = torch.as_tensor(t, dtype=torch.float64)
    w = torch.as_tensor(w / math.sqrt(2 * math.pi), dtype=torch.float64)
    grid = torch.cartesian_prod(*[t] * dim).reshape(-1, dim)
    weights = torch.cartesian_prod(*[w] * dim).reshape(-1, dim).prod(-1)
    return grid, weights


def _central(f: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean, variance and 4th central moment of ``f (..., N)`` under weights ``w (N,)``."""
    mean = (w * f).sum(-1)
    c = f - mean.unsqueeze(-1)
    return mean, (w * c.pow(2)).sum(-1), (w * c.pow(4)).sum(-1)


@dataclass
class _Moments:
    """The law of a correct estimator, per distinct example ``(B,)``.

    ``spreads`` maps each accepted estimator (e.g. the ELBO with the KL in closed form or
    estimated from the same z) to its ``(variance, 4th central moment)``: they share the
    mean. ``alternatives`` are ``(hint, expected value, variance or None)`` of known mistakes.
    """

    mean: Tensor
    spreads: dict[str, tuple[Tensor, Tensor]]
    alternatives: list[tuple[str, Tensor, Tensor | None]] = field(default_factory=list)
    what: str = "ELBO"


_OTHER_ESTIMATOR = ("a valid estimator of the ELBO, but not the one this exercise asks for: draw one "
                    "z = μ + σ ε per example and subtract the KL in closed form, "
                    "KL = −½ Σ_j (1 + log σ_j² − μ_j² − σ_j²), as vt.elbo does")
_MC_KL = ("you estimated the KL from the sampled z, as log q_φ(z|x) − log p(z). That is " + _OTHER_ESTIMATOR)


def _average_of(s: int, mc: bool) -> str:
    return (f"your ELBO has the right mean but varies like an average over {s} samples of z"
            f"{' with the KL estimated from the samples' if mc else ''}. That is " + _OTHER_ESTIMATOR)


def _elbo_moments(inputs: dict) -> _Moments:
    """Exact mean and spread of the one-sample ELBO by Gauss–Hermite quadrature over ε.

    With ``z = μ + σ ε`` the estimator is ``f(ε) = log p_θ(x|z) − KL`` (closed-form KL);
    ``log p_θ(x|z) + log p(z) − log q_φ(z|x)`` (KL estimated from the same z) has the same
    mean and another spread, as does an average over S samples of z (spread ÷ S): both are valid
    estimators that this check does not accept, recognised with a hint that says so. With
    Z = 2 and 60² nodes the moments are exact to ~1e-10 for the smooth decoders used here
    (the linear-Gaussian one is a polynomial in ε: exact).
    """
    model = copy.deepcopy(inputs["model"]).double()
    x = inputs["x"].double()
    with torch.no_grad():
        mu, logvar = model.encode(x)
        b, zdim = mu.shape
        eps, w = _gauss_hermite(zdim)
        n = eps.shape[0]
        z = mu.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps  # (B, N, Z)
        xs = x.unsqueeze(1).expand(b, n, *x.shape[1:]).reshape(b * n, *x.shape[1:])
        rec = model.log_likelihood(xs, model.decode(z.reshape(b * n, zdim))).view(b, n)
        kl = losses.kl_standard_normal(mu, logvar)
        # log p(z) − log q(z|x) = −½‖z‖² + ½‖ε‖² + ½ Σ_j log σ_j² (the log 2π cancel)
        log_ratio = -0.5 * z.pow(2).sum(-1) + 0.5 * eps.pow(2).sum(-1) + 0.5 * logvar.sum(-1, keepdim=True)
        rec_at_mean = model.log_likelihood(x, model.decode(mu))
    mean, var_kl, m4_kl = _central(rec - kl[:, None], w)
    var_mc = _central(rec + log_ratio, w)[1]
    rec_mean = mean + kl
    alts = [("the sign is flipped: return the ELBO itself, not the loss −ELBO", -mean),
            ("the KL is subtracted: ELBO = reconstruction − KL", rec_mean + kl),
            (("did you average the reconstruction over pixels? Sum it (errata E9: averaging is an "
             "accidental β = number of pixels)"), rec_mean / x[0].numel() - kl),
            ("the KL is computed with σ = exp(½ log σ²) where σ² = exp(log σ²) belongs",
             rec_mean - (0.5 * (mu.pow(2) + torch.exp(0.5 * logvar) - 1 - logvar)).sum(-1)),
            (("your average equals the ELBO at z = μ: the reconstruction must be evaluated at a sampled "
             "z = μ + σ ε, not at μ"), rec_at_mean - kl)]
    # valid estimators that this check does not accept (R30): the same mean, another spread
    others = [(_MC_KL, mean, var_mc)] + [(_average_of(s, mc), mean, v / s)
                                         for s in range(2, 9) for mc, v in ((False, var_kl), (True, var_mc))]
    return _Moments(mean, {"KL in closed form": (var_kl, m4_kl)}, [(h, a, None) for h, a in alts] + others,
                    "ELBO")


def _log_mean_exp_moments(alpha: float, k: int) -> tuple[float, float, float]:
    """Mean, variance, 4th central moment of ``log((1/k) Σ_i e^{α η_i}) − α²/2``, η ~ N(0, I_k).

    That is ``L̂_k − log p(x)`` when every ``log w_i = log p(x) − α²/2 − α η_i`` (log-normal
    weights with ``E[w] = p(x)``). ``k`` ≤ 3: quadrature over k dimensions; k = 1 is exact.
    """
    if k == 1:
        return -alpha**2 / 2, alpha**2, 3 * alpha**4
    eta, w = _gauss_hermite(k)
    f = torch.logsumexp(alpha * eta, -1) - math.log(k) - alpha**2 / 2
    return tuple(v.item() for v in _central(f, w))


def _iwae_moments(inputs: dict, alpha: tuple[float, float]) -> _Moments:
    """Law of ``L̂_k`` on :func:`_exact_posterior_vae` with its encoder shifted by ``α S``."""
    x, k = inputs["x"], inputs["k"]
    _, ppca = _exact_posterior_vae(torch.float64, alpha=alpha)
    log_px = ppca.log_marginal(x.double().reshape(x.shape[0], -1))
    a = math.hypot(*alpha)
    mean, var, m4 = _log_mean_exp_moments(a, k)
    alts = [("the sign is flipped: return L_k itself, not −L_k", -(log_px + mean), var),
            ("did you forget the − log k (the average, not the sum, of the weights)?",
             log_px + mean + math.log(k), var)]
    if k > 1:
        fewer, var_fewer, _ = _log_mean_exp_moments(a, k - 1)
        alts += [(("your values follow the law of L_{k−1}: your estimator uses k − 1 independent samples "
                  "instead of k (an off-by-one in a loop or a slice?)"), log_px + fewer, var_fewer),
                 (("your values match logsumexp of k − 1 log-weights minus log k: one of the k samples "
                  "is missing (an off-by-one in a loop or a slice?)"),
                  log_px + fewer + math.log((k - 1) / k), var_fewer),
                 (("that is the average of log w (the ELBO), not log of the average weight: use "
                  "logsumexp(log w) − log k"), log_px - a**2 / 2, a**2 / k),
                 (("your k log-weights are all equal: you drew one z and reused it; draw k independent "
                  "samples z_1..z_k ~ q_φ(z|x)"), log_px - a**2 / 2, a**2)]
    return _Moments(log_px + mean, {"L_k": (torch.full_like(log_px, var), torch.full_like(log_px, m4))},
                    [(h, m, torch.full_like(log_px, v)) for h, m, v in alts], "bound")


@dataclass
class _GradLaw:
    """The law of the batch-mean gradient of a correct answer w.r.t. the encoder's output bias.

    ``mean``, ``se`` ``(2Z,)``: exact expectation and standard error (for the case's batch), in
    the order (μ_1..μ_Z, log σ²_1..log σ²_Z); ``alternatives``: ``(hint, mean, se)`` of known
    mistakes.
    """

    mean: Tensor
    se: Tensor
    alternatives: list[tuple[str, Tensor, Tensor]]
    what: str = "ELBO"


def _gradient_moments(inputs: dict, reps: int, estimator: str, cut: str | None = None) -> tuple[Tensor, Tensor]:
    """Exact mean and standard error of ``(1/(R·B)) Σ_rows ∂f/∂(μ, log σ²)`` by Gauss–Hermite quadrature.

    The encoder's last layer outputs ``(μ, log σ²)``, so the gradient of a batch sum w.r.t. its
    bias is the sum over rows of each row's ``∂f/∂(μ, log σ²)``. ``f(ε)`` is one row's estimator
    with ``z = μ + σ ε``: ``"closed"``, ``log p_θ(x|z) − KL`` (closed-form KL); ``"mc"``,
    ``log p_θ(x|z) + log p(z) − log q_φ(z|x)`` (the one-sample IWAE, L₁); ``"stl"``, the same
    with q's parameters detached in ``log q`` (a valid lower-variance estimator of the same
    gradient). ``cut``: a mistake, ``"sigma"`` (σ detached in z) or ``"z"`` (z detached).
    Each of the B examples is repeated R times, so the variance is ``Σ_i Var_i / (B² R)``.
    """
    model = copy.deepcopy(inputs["model"]).double()
    x = inputs["x"].double()
    with torch.no_grad():
        mu, logvar = model.encode(x)
    b, zdim = mu.shape
    eps, w = _gauss_hermite(zdim)
    n = eps.shape[0]
    mu_e = mu.unsqueeze(1).expand(b, n, zdim).reshape(-1, zdim).clone().requires_grad_()
    lv_e = logvar.unsqueeze(1).expand(b, n, zdim).reshape(-1, zdim).clone().requires_grad_()
    std = torch.exp(0.5 * lv_e)
    z = mu_e + (std.detach() if cut == "sigma" else std) * eps.repeat(b, 1)
    if cut == "z":
        z = z.detach()
    xs = x.unsqueeze(1).expand(b, n, *x.shape[1:]).reshape(b * n, *x.shape[1:])
    f = model.log_likelihood(xs, model.decode(z))
    if estimator == "closed":
        f = f - losses.kl_standard_normal(mu_e, lv_e)
    else:
        q_mu, q_lv = (mu_e.detach(), lv_e.detach()) if estimator == "stl" else (mu_e, lv_e)
        f = f + losses.gaussian_log_likelihood(z, torch.zeros_like(z), 0.0) - losses.gaussian_log_likelihood(
            z, q_mu, q_lv)
    g = torch.cat([gr if gr is not None else torch.zeros_like(mu_e)
                   for gr in torch.autograd.grad(f.sum(), (mu_e, lv_e), allow_unused=True)], -1).view(b, n, -1)
    mean = (w[:, None] * g).sum(1)  # (B, 2Z)
    var = (w[:, None] * (g - mean.unsqueeze(1)).pow(2)).sum(1)
    return mean.mean(0).detach(), (var.sum(0) / (b * b * reps)).sqrt().detach()


_KEEP_SIGMA = ("Keep σ = exp(½ log σ²) in the graph: no .detach(), .data, torch.no_grad() or torch.normal "
               "around the sampling")
_CUT_SIGMA = ("your gradient with respect to log σ² matches an ELBO whose σ gets no gradient through the "
              "sample (σ detached in z = μ + σ ε): only the KL then trains σ, and pulls it to 1 (chapter 4). "
              + _KEEP_SIGMA)
_CUT_SIGMA_BOUND = ("your gradient with respect to log σ² matches a bound whose σ gets no gradient through the "
                    "sample (σ detached in z = μ + σ ε): the data then no longer train σ. " + _KEEP_SIGMA)
_CUT_Z = ("your gradient matches samples z detached from μ and σ (torch.normal, .detach(), .data, "
          "sample() instead of rsample()): draw z = μ + σ ε from the encoder's outputs so that the "
          "gradient flows through the samples")


def _elbo_gradient_law(inputs: dict, reps: int) -> _GradLaw:
    """One-sample ELBO with the closed-form KL; mistakes: σ or z detached in the sample."""
    mean, se = _gradient_moments(inputs, reps, "closed")
    alts = [(h, *_gradient_moments(inputs, reps, "closed", cut)) for h, cut in ((_CUT_SIGMA, "sigma"),
                                                                                (_CUT_Z, "z"))]
    return _GradLaw(mean, se, alts, "ELBO")


def _iwae_gradient_law(inputs: dict, reps: int) -> _GradLaw:
    """L₁ (k = 1: log w with log q and log p at the sample); E ∇_φ L₁ = ∇_φ ELBO.

    Its standard error is the larger of the full pathwise gradient's and the
    sticking-the-landing one's (q's parameters detached in log q), so both pass.
    """
    mean, se = _gradient_moments(inputs, reps, "mc")
    se = torch.maximum(se, _gradient_moments(inputs, reps, "stl")[1])
    alts = [(h, *_gradient_moments(inputs, reps, "mc", cut)) for h, cut in ((_CUT_SIGMA_BOUND, "sigma"),
                                                                             (_CUT_Z, "z"))]
    return _GradLaw(mean, se, alts, "bound")


_EXTREME = 50.0
_REPARAM_ROWS = 200_000  # rows of the statistical reparameterize case (5 columns: 10⁶ draws)
_ELBO_REPS = 50_000  # copies of each example in the statistical ELBO cases
_ELBO_LOGVAR = (-1.0, 0.7)  # the MLP VAE's posterior log-variances (σ ≠ σ², both ≠ 1)
_ELBO_LOGIT_SCALE = 3.0  # a curved log p(x|z), so that the noise changes the mean too
_IWAE_REPS = 50_000
_IWAE_ALPHA = (1.2, 0.9)  # encoder shift in posterior standard deviations: ‖α‖ = 1.5
_GRAD_LOGVAR = (-1.0, 0.5)  # (the labels quote it) gradient cases: σ = (0.61, 1.28), neither the posterior's nor the prior's
_GRAD_REPS = 50_000
_NOISE_ROWS = 200_000  # draws of ε_1 recovered from the ELBO
_IMAGE_SHAPE = (1, 28, 28)
_IMAGE_NOISE_VAR = 0.1  # log w ≈ −220 … −260: exp(log w) underflows to 0 in float32 (below −104)
_F64 = dict(rtol=1e-8, atol=1e-8)

_CASES: tuple[_Case, ...] = (
    # KL against N(0, I)
    _Case("kl_standard_normal", "random batch (8×5)", lambda: _kl_inputs(8, 5, seed=1)),
    _Case("kl_standard_normal", "at the prior μ = 0, log σ² = 0 (KL must be 0)",
          lambda: {"mu": torch.zeros(4, 3), "logvar": torch.zeros(4, 3)}),
    _Case("kl_standard_normal", "log σ² far from 0 (±20)",
          lambda: _kl_inputs(4, 6, seed=2, lv=lambda s, d: _pm(s, 20.0, d))),
    _Case("kl_standard_normal", "batch of one (1×3)", lambda: _kl_inputs(1, 3, seed=3)),
    _Case("kl_standard_normal", "float64 inputs", lambda: _kl_inputs(6, 4, seed=4, dtype=torch.float64), **_F64),
    _Case("kl_standard_normal", "non-contiguous inputs (transposed)", lambda: _kl_inputs(7, 3, seed=5, transpose=True)),
    # KL between two Gaussians
    _Case("kl_normal", "random q and p (8×5)", lambda: _kl2_inputs(8, 5, seed=11)),
    _Case("kl_normal", "p = N(0, I) (equals kl_standard_normal)", lambda: _kl2_inputs(6, 4, seed=12, prior="standard")),
    _Case("kl_normal", "q = p (KL must be 0)", lambda: _kl2_inputs(5, 3, seed=13, prior="same")),
    _Case("kl_normal", "log σ² far from 0 (q ±20, p ∓20)", lambda: _kl2_inputs(4, 4, seed=14, extreme=True)),
    _Case("kl_normal", "batch of one (1×3)", lambda: _kl2_inputs(1, 3, seed=15)),
    _Case("kl_normal", "float64 inputs", lambda: _kl2_inputs(6, 4, seed=16, dtype=torch.float64), **_F64),
    _Case("kl_normal", "non-contiguous inputs (transposed)", lambda: _kl2_inputs(7, 3, seed=17, transpose=True)),
    # reparameterisation: statistics of ε, gradients, edge cases
    _Case("reparameterize", f"statistics: {_REPARAM_ROWS} draws, log σ² ∈ {{−20, −1, 0, 2, 20}}",
          lambda: _reparam_inputs(_REPARAM_ROWS, [-20.0, -1.0, 0.0, 2.0, 20.0], [0.0, -2.0, 0.5, 3.0, 1.0]),
          judge="reparameterize"),
    _Case("reparameterize", "batch of one (1×3)",
          lambda: _reparam_inputs(1, [-1.0, 0.0, 1.0], [0.3, -0.2, 2.0]), judge="reparameterize"),
    _Case("reparameterize", "float64 inputs",
          lambda: _reparam_inputs(500, [-1.0, 0.5], [1.0, -1.0], dtype=torch.float64), judge="reparameterize"),
    _Case("reparameterize", "non-contiguous inputs (transposed)",
          lambda: _reparam_inputs(500, [-0.5, 1.0, 0.0], [0.0, 1.0, -1.0], transpose=True),
          judge="reparameterize"),
    # Bernoulli
    _Case("bernoulli_log_likelihood", "random logits, binary x (8×10)", lambda: _ll_inputs((8, 10), seed=21)),
    _Case("bernoulli_log_likelihood", "grey-level x in [0, 1] (6×12)", lambda: _ll_inputs((6, 12), seed=22, grey=True),
          note="x may hold grey levels in [0, 1] (Fashion-MNIST), which torch.distributions.Bernoulli rejects: "
               "write x·ℓ − softplus(ℓ) or use F.binary_cross_entropy_with_logits"),
    _Case("bernoulli_log_likelihood", f"extreme logits ±{_EXTREME:g}",
          lambda: _ll_inputs((4, 8), seed=23, logits=lambda s, d: _pm(s, _EXTREME, d))),
    _Case("bernoulli_log_likelihood", "image-shaped inputs (3, 1, 4, 4)", lambda: _ll_inputs((3, 1, 4, 4), seed=24)),
    _Case("bernoulli_log_likelihood", "batch of one (1×10)", lambda: _ll_inputs((1, 10), seed=25)),
    _Case("bernoulli_log_likelihood", "float64 inputs", lambda: _ll_inputs((5, 9), seed=26, dtype=torch.float64), **_F64),
    _Case("bernoulli_log_likelihood", "non-contiguous inputs", lambda: _ll_inputs((6, 7), seed=27, transpose=True)),
    # Gaussian
    _Case("gaussian_log_likelihood", "random x, mean, logvar (8×10)", lambda: _gauss_inputs((8, 10), seed=31)),
    _Case("gaussian_log_likelihood", "logvar a float (0.0)", lambda: _gauss_inputs((5, 6), seed=32, logvar=0.0),
          note="logvar may be a Python float (a fixed variance): torch.as_tensor(logvar, dtype=x.dtype)"),
    _Case("gaussian_log_likelihood", "logvar far from 0 (±20)", lambda: _gauss_inputs((4, 6), seed=33, logvar="extreme")),
    _Case("gaussian_log_likelihood", "image-shaped inputs (3, 1, 4, 4)", lambda: _gauss_inputs((3, 1, 4, 4), seed=34)),
    _Case("gaussian_log_likelihood", "batch of one (1×10)", lambda: _gauss_inputs((1, 10), seed=35)),
    _Case("gaussian_log_likelihood", "float64 inputs", lambda: _gauss_inputs((5, 9), seed=36, dtype=torch.float64), **_F64),
    _Case("gaussian_log_likelihood", "non-contiguous inputs", lambda: _gauss_inputs((6, 7), seed=37, transpose=True)),
    # continuous Bernoulli
    _Case("continuous_bernoulli_log_likelihood", "random logits, x in [0, 1] (8×10)",
          lambda: _ll_inputs((8, 10), seed=41, grey=True)),
    _Case("continuous_bernoulli_log_likelihood", "logits exactly 0 and ±1e-4",
          lambda: _ll_inputs((3, 6), seed=42, grey=True,
                             logits=lambda s, d: torch.tensor([0.0, 1e-4, -1e-4], dtype=d).repeat(s[0], s[1] // 3))),
    _Case("continuous_bernoulli_log_likelihood", f"extreme logits ±{_EXTREME:g}",
          lambda: _ll_inputs((4, 8), seed=43, grey=True, logits=lambda s, d: _pm(s, _EXTREME, d))),
    _Case("continuous_bernoulli_log_likelihood", "batch of one (1×10)", lambda: _ll_inputs((1, 10), seed=44, grey=True)),
    _Case("continuous_bernoulli_log_likelihood", "float64 inputs",
          lambda: _ll_inputs((5, 9), seed=45, grey=True, dtype=torch.float64), **_F64),
    _Case("continuous_bernoulli_log_likelihood", "non-contiguous inputs",
          lambda: _ll_inputs((6, 7), seed=46, grey=True, transpose=True)),
    # ELBO of a small VAE: where the noise does not matter (σ ≈ 0), values ...
    _Case("elbo", "encoder with log σ² = −30 (z = μ: the ELBO and its gradient are deterministic)",
          lambda: _vae_inputs(8, logvar=-30.0), judge="seeded", grads=True),
    _Case("elbo", "saturated decoder (logits beyond ±50)",
          lambda: _vae_inputs(6, seed=2, logvar=-30.0, logit_scale=200.0), judge="seeded"),
    _Case("elbo", "batch of one", lambda: _vae_inputs(1, seed=3, logvar=-30.0), judge="seeded"),
    _Case("elbo", "float64 model and data", lambda: _vae_inputs(5, seed=4, logvar=-60.0, dtype=torch.float64),
          judge="seeded", **_F64),
    # ... and where it does, the law of the estimator: exact mean and spread per example
    _Case("elbo", f"random MLP VAE, log σ² = (−1, 0.7): mean and spread over {_ELBO_REPS} draws",
          lambda: _vae_inputs(4, seed=1, logvar=_ELBO_LOGVAR, logit_scale=_ELBO_LOGIT_SCALE, smooth=True),
          judge="moments", exact=_elbo_moments, reps=_ELBO_REPS),
    _Case("elbo", f"linear-Gaussian decoder: mean and spread over {_ELBO_REPS} draws",
          lambda: _ppca_inputs(4, alpha=_IWAE_ALPHA), judge="moments", exact=_elbo_moments, reps=_ELBO_REPS),
    _Case("elbo", "non-contiguous x (random MLP VAE)",
          lambda: _vae_inputs(2, seed=5, logvar=_ELBO_LOGVAR, logit_scale=_ELBO_LOGIT_SCALE, smooth=True,
                              transpose=True),
          judge="moments", exact=_elbo_moments, reps=_ELBO_REPS // 4),
    # ... the gradient at moderate σ: through σ too (R28) ...
    _Case("elbo", "gradient at moderate σ (linear-Gaussian decoder, log σ² = (−1, 0.5)): batch mean "
          f"over {_GRAD_REPS} draws of each example",
          lambda: _ppca_inputs(4, alpha=_IWAE_ALPHA, logvar=_GRAD_LOGVAR), judge="gradient",
          exact=lambda i: _elbo_gradient_law(i, _GRAD_REPS), reps=_GRAD_REPS),
    # ... the whole law of the noise, read back from the ELBO ...
    _Case("elbo", f"law of the noise: ε_1 recovered from {_NOISE_ROWS} ELBOs (monotone decoder)",
          lambda: {"model": _monotone_vae(), "x": torch.ones(_NOISE_ROWS, *_MONO_SHAPE)}, judge="noise"),
    # ... and fresh noise at every call
    _Case("elbo", "fresh noise: two calls on the same batch",
          lambda: _vae_inputs(4, seed=1, logvar=_ELBO_LOGVAR, logit_scale=_ELBO_LOGIT_SCALE, smooth=True),
          judge="fresh"),
    # IWAE bound: with the exact posterior every weight is p(x), so L_k = log p(x) for any noise ...
    _Case("iwae_bound", "exact posterior (linear-Gaussian model): L_k = log p(x), k = 7",
          lambda: _ppca_inputs(6, 7), judge="seeded"),
    _Case("iwae_bound", "image-shaped x (1, 2, 3), exact posterior, k = 5",
          lambda: _ppca_inputs(4, 5, shape=(1, 2, 3)), judge="seeded"),
    _Case("iwae_bound", "batch of one, k = 10", lambda: _ppca_inputs(1, 10, seed=8), judge="seeded"),
    _Case("iwae_bound", "float64 (exact posterior), k = 4", lambda: _ppca_inputs(3, 4, dtype=torch.float64),
          judge="seeded", **_F64),
    _Case("iwae_bound", "non-contiguous x (exact posterior), k = 3", lambda: _ppca_inputs(5, 3, transpose=True),
          judge="seeded"),
    _Case("iwae_bound", f"real-image scale: x of shape {_IMAGE_SHAPE}, log w ≈ −220 … −260 (exact posterior), k = 5",
          lambda: _ppca_inputs(4, 5, seed=21, shape=_IMAGE_SHAPE, noise_var=_IMAGE_NOISE_VAR), judge="seeded"),
    # ... and with a shifted encoder the weights are log-normal: the law of L̂_k is known
    *[_Case("iwae_bound", f"log-normal weights (shifted posterior), k = {k}: mean and spread over "
            f"{_IWAE_REPS} draws", lambda k=k: _ppca_inputs(2, k, seed=9, alpha=_IWAE_ALPHA),
            judge="moments", exact=lambda i: _iwae_moments(i, _IWAE_ALPHA), reps=_IWAE_REPS)
      for k in (3, 2, 1)],
    # the gradient: E ∇_φ L̂_1 = ∇_φ ELBO, known in closed form (R29)
    _Case("iwae_bound", "gradient, k = 1 (shifted posterior, log σ² = (−1, 0.5)): batch mean over "
          f"{_GRAD_REPS} draws of each example",
          lambda: _ppca_inputs(4, 1, alpha=_IWAE_ALPHA, logvar=_GRAD_LOGVAR), judge="gradient",
          exact=lambda i: _iwae_gradient_law(i, _GRAD_REPS), reps=_GRAD_REPS),
    _Case("iwae_bound", "fresh noise: two calls on the same batch, k = 3",
          lambda: _ppca_inputs(2, 3, seed=9, alpha=_IWAE_ALPHA), judge="fresh"),
)


# ----------------------------------------------------------------------------- judges

def _compare(block: _Block, inputs: dict, got, expected: Tensor, rtol: float, atol: float) -> _Failure | None:
    """Shape, dtype and values of ``got`` against ``expected``, with a hint for known mistakes."""
    got = _as_output(got).detach()
    expected = expected.detach()
    shapes = f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    if got.shape != expected.shape:
        b = expected.shape[0] if expected.dim() else 1
        if got.numel() == 1 and b > 1:
            hint = "return one value per example, shape (B,): do not sum or average over the batch"
        elif got.dim() > expected.dim() and got.shape[:1] == expected.shape[:1]:
            hint = f"did you sum over the {block.reduced}? The result must have shape (B,)"
        else:
            hint = "the result must have one value per example, shape (B,)"
        return _Failure(f"wrong shape: {shapes}", [], hint)
    if got.dtype != expected.dtype:
        return _Failure(f"wrong dtype: expected {expected.dtype}, got {got.dtype}", [],
                        "keep the inputs' dtype: create new tensors with dtype=/device= of the inputs "
                        "(torch.zeros_like, torch.randn_like, torch.as_tensor(..., dtype=x.dtype))")
    if not bool(torch.isfinite(got[torch.isfinite(expected)]).all()):
        bad = int((~torch.isfinite(got) & torch.isfinite(expected)).nonzero()[0, 0])
        return _Failure(f"non-finite result: example {bad} is {got.reshape(-1)[bad].item()}, "
                        f"expected {expected.reshape(-1)[bad].item():.6g}",
                        [f"expected {_short(expected)}", f"got      {_short(got)}"], block.overflow)
    if torch.allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True):
        return None
    err = (got - expected).abs() - rtol * expected.abs()
    worst = int(err.reshape(-1).argmax())
    hint = block.formula
    for mistake in block.mistakes:
        try:
            alt = mistake.alt(inputs, expected).detach()
        except Exception:  # noqa: BLE001 - a diagnosis that does not apply to these inputs
            continue
        if alt.shape == got.shape and torch.allclose(got, alt.to(got.dtype), rtol=rtol, atol=atol):
            hint = mistake.hint
            break
    if block.name.startswith("kl") and bool((got < -atol).any()):
        hint = f"a KL is never negative, yours is {got.min().item():.6g}: check the signs. " + hint
    return _Failure(
        f"wrong values: example {worst} expected {expected.reshape(-1)[worst].item():.6g}, "
        f"got {got.reshape(-1)[worst].item():.6g}",
        [f"expected {_short(expected)}", f"got      {_short(got)}",
         f"tolerance: rtol={rtol:g}, atol={atol:g}"], hint)


def _judge_values(block, case, fn) -> _Failure | None:
    expected = block.reference(*case.make().values())
    got = _call(fn, *case.make().values())
    return _compare(block, case.make(), got, expected, case.rtol, case.atol)


_SEED = 1234


def _judge_seeded(block, case, fn) -> _Failure | None:
    """Cases where the noise does not matter (σ ≈ 0, or every weight equal): compare values.

    Any correct answer gives the reference's value whatever its generator; both run under
    the same seed only so that known mistakes that depend on the noise are recognised.
    """
    inputs = case.make()
    args = list(inputs.values())
    with torch.no_grad():
        with _seeded(_SEED):
            expected = block.reference(*args)
        with _seeded(_SEED):
            got = _call(fn, *args)
        with _seeded(_SEED):  # known mistakes are evaluated with the same noise
            failure = _compare(block, inputs, got, expected, case.rtol, case.atol)
        if failure is None and case.grads:
            with torch.enable_grad():
                return _compare_gradients(block, inputs, fn)
        if failure is None or not failure.what.startswith("wrong values") or block.name != "elbo":
            return failure
        with _seeded(_SEED + 1):
            again = _as_output(_call(fn, *args)).detach()
    if not torch.allclose(again, _as_output(got).detach(), rtol=case.rtol, atol=case.atol):
        failure.hint = ("here σ ≈ 0, so z = μ whatever the noise, yet your ELBO changes from call to call: "
                        + _MC_KL)
    return failure


def _compare_gradients(block, inputs: dict, fn) -> _Failure | None:
    """∂(Σ ELBO)/∂(encoder, decoder parameters) against the reference's, with σ ≈ 0.

    Then z = μ whatever the noise, so every correct answer has the reference's gradient:
    ``∂/∂μ = ∇_z log p_θ(x|z) − μ``. Sampling z without a gradient path (torch.normal,
    ``.detach()``, ``.data``) drops the first term; ``torch.no_grad()`` drops everything.
    """
    model = inputs["model"]
    args = list(inputs.values())
    with _seeded(_SEED):
        got = _as_output(_call(fn, *args))
    if not got.requires_grad:
        return _Failure("your ELBO carries no gradient to the model's parameters", [],
                        "compute it from model.encode / model.decode outputs without torch.no_grad(), "
                        ".detach(), .item() or .data: training maximises it by gradient ascent")
    for part in ("encoder", "decoder"):
        params = list(getattr(model, part).parameters())
        with _seeded(_SEED):
            want = torch.autograd.grad(block.reference(*args).sum(), params, allow_unused=True)
        with _seeded(_SEED):
            have = torch.autograd.grad(_as_output(_call(fn, *args)).sum(), params, allow_unused=True)
        want = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, want)])
        have = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, have)])
        if not torch.allclose(have, want, rtol=1e-3, atol=1e-4 * float(want.abs().max())):
            return _Failure(
                f"the gradient of your ELBO with respect to the {part}'s parameters is wrong: "
                f"largest error {float((have - want).abs().max()):.4g} (largest entry {float(want.abs().max()):.4g})",
                ["here σ ≈ 0, so z = μ and ∂ELBO/∂μ = ∇_z log p_θ(x|z) − μ for every correct answer"],
                "the noise must enter as z = μ + σ ε so that gradients flow through μ and σ "
                "(torch.normal(mu, std), z.detach() or .data cut that path; rsample() keeps it)")
    return None


def _shape_failure(block: _Block, got: Tensor, want: tuple) -> _Failure | None:
    if tuple(got.shape) == want:
        return None
    if got.numel() == 1 and want[0] > 1:
        hint = "return one value per example, shape (B,): do not sum or average over the batch"
    elif got.dim() > 1 and got.shape[0] == want[0]:
        hint = f"did you sum over the {block.reduced}? The result must have shape (B,)"
    else:
        hint = "the result must have one value per example, shape (B,)"
    return _Failure(f"wrong shape: expected {want}, got {tuple(got.shape)}", [], hint)


def _judge_moments(block, case, fn) -> _Failure | None:
    """Give ``fn`` a batch of ``reps`` copies of each example and test the values' law.

    Per example: the average over the copies must match the exact expectation, and their
    variance the exact variance of a correct estimator, each within ``_Z`` standard errors
    (z-tests; the standard error of a sample variance is √((μ₄ − v²)/R)). Any generator and
    any sampling order give independent copies, so a correct answer fails with probability
    below 2·B·2.0e-9 per case.
    """
    inputs = case.make()
    exact = case.exact(inputs)
    x, r = inputs["x"], case.reps
    b = x.shape[0]
    xr = _repeat_rows(x, r)  # row i holds example i mod B
    with torch.no_grad(), _seeded(_SEED):
        got = _as_output(_call(fn, *{**inputs, "x": xr}.values())).detach()
    failure = _shape_failure(block, got, (r * b,))
    if failure is not None:
        return failure
    if got.dtype != x.dtype:
        return _Failure(f"wrong dtype: expected {x.dtype}, got {got.dtype}", [],
                        "keep the inputs' dtype: draw ε with torch.randn_like(mu)")
    if not bool(torch.isfinite(got).all()):
        return _Failure(f"non-finite result: {_short(got[~torch.isfinite(got)])}", [], block.overflow)
    g = got.double().reshape(r, b)
    m, v = g.mean(0), g.var(0)
    se = (v / r).sqrt()
    what, draws = exact.what, f"{r} copies of each example (each with its own noise)"
    smallest = min(float(sv[0].min()) for sv in exact.spreads.values())
    if bool((v <= 1e-6 * smallest).any()):
        j = int((v <= 1e-6 * smallest).nonzero()[0, 0])
        return _Failure(f"your {what} is the same for all {r} copies of example {j} ({m[j].item():.6g}): "
                        "no noise reached z, or one ε was shared by the whole batch", [],
                        "draw a fresh ε ~ N(0, I) for every example and sample: "
                        "z = μ + σ ε with ε = torch.randn_like(mu)")
    z_mean = (m - exact.mean) / se
    mean_ok = bool((z_mean.abs() <= _Z).all())
    spread_z = {name: (v - var) / ((m4 - var.pow(2)) / r).sqrt() for name, (var, m4) in exact.spreads.items()}
    spread_ok = any(bool((zv.abs() <= _Z).all()) for zv in spread_z.values())
    if mean_ok and spread_ok:
        return None
    hint = next((h for h, alt, var in exact.alternatives
                 if bool(((m - alt).abs() <= _Z * se + 1e-6).all())
                 and (var is None or bool(((v / var) - 1).abs().max() < 0.1))), None)
    if mean_ok or (not spread_ok and hint is None):
        name, zv = min(spread_z.items(), key=lambda kv: float(kv[1].abs().max()))
        j = int(zv.abs().argmax())
        var = exact.spreads[name][0]
        m4_got = (g[:, j] - m[j]).pow(4).mean()  # the standard error of your spread, from your draws
        sd, sd_se = v[j].sqrt(), ((m4_got - v[j] ** 2).clamp(min=0) / r).sqrt() / (2 * v[j].sqrt())
        return _Failure(
            f"your {what} varies too {'much' if zv[j] > 0 else 'little'} from draw to draw: on example {j} its "
            f"standard deviation is {sd.item():.4g} ± {sd_se.item():.2g}, a correct one has "
            f"{var[j].sqrt().item():.4g} ({abs(zv[j].item()):.0f} standard errors away)",
            [f"measured over {draws}"],
            hint or (_noise_diagnosis(block, fn) if what == "ELBO" else
                     "use k independent samples z_1..z_k ~ q_φ(z|x) = N(μ, σ²) per example, "
                     "σ = exp(½ log σ²)"))
    j = int(z_mean.abs().argmax())
    return _Failure(
        f"your {what} is wrong on average: on example {j} it averages {m[j].item():.5g} ± {se[j].item():.2g}, "
        f"its expected value is {exact.mean[j].item():.5g} ({abs(z_mean[j].item()):.0f} standard errors away)",
        [f"measured over {draws}; the expected value is exact (quadrature)"],
        hint or block.formula)


def _repeat_rows(x: Tensor, r: int) -> Tensor:
    """``x`` repeated ``r`` times along the batch (row i holds example i mod B), same layout."""
    xr = x.repeat(r, *[1] * (x.dim() - 1))
    if not x.is_contiguous():
        xr = xr.transpose(-1, -2).contiguous().transpose(-1, -2)
    return xr


def _judge_gradient(block, case, fn) -> _Failure | None:
    """The batch-mean gradient of ``fn`` w.r.t. the encoder's bias (μ and log σ²), at moderate σ.

    Each example is repeated ``reps`` times; the gradient of the batch mean is an average of
    ``reps · B`` independent per-row gradients, whose exact mean and standard error come from
    quadrature (:func:`_gradient_moments`); each of the 2Z components is z-tested at ``_Z``.
    """
    inputs = case.make()
    law = case.exact(inputs)
    model, x, r = inputs["model"], inputs["x"], case.reps
    n = r * x.shape[0]
    bias = model.encoder.net[-1].bias
    with _seeded(_SEED):
        got = _as_output(_call(fn, *{**inputs, "x": _repeat_rows(x, r)}.values()))
    failure = _shape_failure(block, got, (n,))
    if failure is not None:
        return failure
    if not got.requires_grad:
        return _Failure(f"your {law.what} carries no gradient to the model's parameters", [],
                        "compute it from model.encode / model.decode outputs without torch.no_grad(), "
                        ".detach(), .item() or .data: training maximises it by gradient ascent")
    (g,) = torch.autograd.grad(got.sum(), (bias,), allow_unused=True)
    if g is None:
        return _Failure(f"your {law.what} carries no gradient to the encoder", [], _CUT_Z)
    g = g.detach().double() / n
    zdim = g.numel() // 2
    names = [f"μ_{j + 1}" for j in range(zdim)] + [f"log σ²_{j + 1}" for j in range(zdim)]
    z = (g - law.mean) / law.se
    if bool((z.abs() <= _Z).all()) and bool(torch.isfinite(g).all()):
        return None
    j = int(torch.nan_to_num(z.abs(), nan=math.inf).argmax())
    hint = next((h for h, m, se in law.alternatives
                 if bool(((g - m).abs() <= _Z * torch.maximum(se, law.se) + 1e-4 * m.abs()).all())),
                "the noise must enter as z = μ + σ ε with σ = exp(½ log σ²), computed from model.encode(x), "
                "so that gradients flow through μ and σ (rsample(), not sample() or torch.normal)")
    sigmas = ", ".join(f"{s:.2f}" for s in torch.exp(0.5 * model.encode(x[:1])[1].detach()).reshape(-1).tolist())
    return _Failure(
        f"the gradient of your {law.what} with respect to the encoder's {names[j]} is wrong on average: "
        f"its batch mean is {g[j].item():.4g}, the exact expectation {law.mean[j].item():.4g} ± "
        f"{law.se[j].item():.2g} ({abs(z[j].item()):.0f} standard errors away)",
        [(f"σ = ({sigmas}); batch of {n} rows ({r} copies of each example, each with its own noise); "
          "the expectation is exact (quadrature)"),
         "all components: got " + ", ".join(f"{v:.4g}" for v in g.tolist())
         + "; expected " + ", ".join(f"{v:.4g}" for v in law.mean.tolist())],
        hint)


def _judge_elbo_noise(block, case, fn) -> _Failure | None:
    """ε₁ recovered from the ELBO on :func:`_monotone_vae`, tested by :func:`_noise_law`.

    There ``log p_θ(x|z) = D log sigmoid(ℓ)``, ``ℓ = s ε₁`` (all D pixels on, the decoder reads
    z₁ only), increasing in ε₁, so each value gives back its ε₁ exactly:
    ``ℓ = logit(exp((ELBO + KL)/D))``.
    """
    inputs = case.make()
    x = inputs["x"]
    n = x.shape[0]
    with torch.no_grad(), _seeded(_SEED):
        got = _as_output(_call(fn, *inputs.values())).detach()
    failure = _shape_failure(block, got, (n,))
    if failure is not None:
        return failure
    with torch.no_grad():
        mu, logvar = inputs["model"].encode(x[:1])
        kl = losses.kl_standard_normal(mu.double(), logvar.double())
    r = (got.double() + kl) / x[0].numel()  # log sigmoid(ℓ) per pixel
    if not bool(torch.isfinite(r).all()) or bool((r >= 0).any()):
        return _Failure("your ELBO is not log p_θ(x|z) − KL for any z: on this model it must stay below "
                        f"−KL = {-kl.item():.4g}", [f"got {_short(got)}"], block.formula)
    eps = (r - torch.log(-torch.expm1(r))) / _MONO_SLOPE
    return _noise_law(eps.unsqueeze(1), [f"z_1 (μ = {_MONO_MU[0]:g}, log σ² = {_MONO_LOGVAR[0]:g})"],
                      torch.tensor(_MONO_LOGVAR[:1]),
                      source=("ε_1 = (z_1 − μ_1)/σ_1 recovered from your ELBO values: on this model "
                              "log p_θ(x|z) depends on z_1 alone, and monotonically"))


def _noise_diagnosis(block, fn) -> str:
    """The hint for an ELBO whose spread is wrong for no recognised reason: what the law of its
    noise, read back on :func:`_monotone_vae`, shows (a wrong scale, or a noise that is not normal)."""
    scale = ("the noise has the wrong scale or law: z = μ + σ ε with σ = exp(½ log σ²) (not exp(log σ²), "
             "not log σ², no extra factor) and ε ~ N(0, I) (torch.randn_like, not torch.rand_like)")
    try:
        probe = _judge_elbo_noise(block, next(c for c in _CASES if c.judge == "noise"), fn)
    except Exception:  # noqa: BLE001 - only a diagnosis: fall back to the general hint
        return scale
    if probe is None or not probe.what.startswith(("your noise", "the noise")):
        return scale
    return f"read back from your ELBO on a model that reveals ε, {probe.what}: {probe.hint}"


def _judge_fresh(block, case, fn) -> _Failure | None:
    """Two calls on the same batch, one after the other, must use different noise."""
    inputs = case.make()
    args = list(inputs.values())
    with torch.no_grad(), _seeded(_SEED):
        first = _as_output(_call(fn, *args)).detach().clone()
        second = _as_output(_call(fn, *args)).detach()
    if first.shape == second.shape and bool(torch.equal(first, second)):
        what = "ELBO" if block.name == "elbo" else "bound"
        return _Failure(f"two calls on the same batch returned exactly the same {what}: the noise is not fresh",
                        [f"both calls returned {_short(first)}"],
                        "do not re-seed inside your function (torch.manual_seed, or a torch.Generator created "
                        "and seeded there): every call must draw new noise, or training sees the same ε for "
                        "an example at every step")
    return None


_INSIDE_1 = math.erf(1 / math.sqrt(2))  # P(|ε| < 1) = 0.6827 for ε ~ N(0, 1)
_ALPHA = math.erfc(_Z / math.sqrt(2))  # 2.0e-9: the probability that one z-test rejects a correct answer
# Kolmogorov–Smirnov: √n · sup_t |F_n(t) − Φ(t)| exceeds t with probability ≤ 2 e^{−2t²} for every n
# (the Dvoretzky–Kiefer–Wolfowitz inequality with Massart's constant): t = 3.22 gives _ALPHA
_KS_T = math.sqrt(0.5 * math.log(2 / _ALPHA))
_DUPLICATES = 0.01  # fraction of repeated noise values (rows, or pairs of columns) that fails a check


def _ks_distance(e: Tensor) -> tuple[float, float]:
    """``sup_t |F_n(t) − Φ(t)|`` for the draws ``e (n,)``, and the ``t`` where it is reached."""
    s = torch.from_numpy(np.sort(e.detach().double().numpy()))  # NumPy sorts ~10× faster here
    n = s.numel()
    cdf = torch.special.ndtr(s)
    i = torch.arange(1, n + 1, dtype=s.dtype)
    gap = torch.maximum(i / n - cdf, cdf - (i - 1) / n)
    j = int(gap.argmax())
    return float(gap[j]), float(s[j])


def _repeated_rows(a: Tensor) -> int:
    """How many rows of ``a (n, C)`` repeat an earlier row, entries rounded to 2⁻¹²."""
    # rounding absorbs float32 rounding in z = μ + σ ε (|error| ≲ 1e-6 in ε); each row is then
    # hashed to one 64-bit integer (a wrapped random linear combination of its rounded entries)
    keys = np.rint(a.detach().double().numpy() * 4096).astype(np.int64).view(np.uint64)
    mult = np.random.default_rng(0).integers(1, 2**63, size=a.shape[1], dtype=np.uint64) | np.uint64(1)
    with np.errstate(over="ignore"):
        h = (keys * mult).sum(1)
    return int(h.size - np.unique(h).size)


def _noise_law(eps: Tensor, columns: list[str], logvar: Tensor, source: str | None = None) -> _Failure | None:
    """Tests (each rejecting a correct answer with probability ≤ ``_ALPHA``) that ε ``(n, C)`` holds
    independent N(0, 1) draws.

    ``columns`` names each column (its μ and log σ²), ``logvar (C,)`` its log σ² (to recognise
    σ² used as σ); ``source`` says how ε was obtained. Per column and pooled: z-tests of the mean
    (standard error 1/√n), the mean square (√(2/n): an sd of 1.03 is 43 standard errors away
    with n = 10⁶), the fraction inside ±1 (√(p(1 − p)/n)) and the mean 4th power (E ε⁴ = 3,
    √(96/n)), and a Kolmogorov–Smirnov test of the whole distribution function (rejects when
    √n · sup|F_n − Φ| > 3.22, by the DKW inequality: any law whose distribution function is
    0.0032 away from Φ somewhere, e.g. a two-point noise with N(0, 1)'s mean, variance and
    P(|ε| < 1)). Independence, pooled: z-tests of the correlation of neighbouring columns and
    of neighbouring rows, and of their squares (noise that is uncorrelated but dependent, e.g.
    |ε| shared); and exact repeats: rows that repeat another row up to sign (noise reused or
    mirrored across examples), pairs of columns equal up to sign in more than 1 % of rows.
    """
    n, cols = eps.shape
    details = [source] if source else []
    if bool(((eps - eps[:1]).abs() < 1e-3).all()):
        return _Failure(f"every row (example) got the same noise ε = (z − μ)/σ = {_short(eps[0])}", details,
                        "draw ε with the shape of μ, one independent value per example and dimension: "
                        "torch.randn_like(mu), not torch.randn(latent_dim)")
    if cols > 1 and bool(((eps - eps[:, :1]).abs() < 1e-3).all()):
        return _Failure("all latent dimensions of an example got the same noise ε = (z − μ)/σ", details,
                        "draw ε with the shape of μ, one independent value per example and dimension: "
                        "torch.randn_like(mu), not torch.randn(batch_size, 1)")
    lv = logvar.detach().double()
    sd = eps.pow(2).mean(0).sqrt()
    large = lv.abs() > 0.5  # columns where σ and σ² = exp(log σ²) differ
    used_var = bool(large.any()) and bool(((sd / (0.5 * lv).exp() - 1).abs() < 0.01)[large].all())
    hint_sd = ("σ = exp(½ log σ²): you used σ² = exp(log σ²) as the standard deviation" if used_var else
               "z = μ + σ ε with σ = exp(½ log σ²) exactly and ε ~ N(0, 1) (torch.randn_like(mu)): "
               "no extra factor on the noise")
    hint_law = "ε ~ N(0, 1): torch.randn_like(mu) (not rand_like, not a ±1, two-level or scaled uniform noise)"
    p_in = _INSIDE_1 * (1 - _INSIDE_1)
    checks = []  # (z, message, hint), the most telling first; a KS "z" is scaled to the same threshold
    for j in [None, *range(cols)] if cols > 1 else [0]:
        e = eps.reshape(-1) if j is None else eps[:, j]
        where = "all columns pooled" if j is None else columns[j]
        k = e.numel()
        mean, ms, inside = e.mean(), e.pow(2).mean(), (e.abs() < 1).double().mean()
        m4 = e.pow(4).mean()
        ks, at = _ks_distance(e)
        checks += [
            (mean * math.sqrt(k),
             (f"your noise ε = (z − μ)/σ has mean {mean.item():.4f} ± {math.sqrt(1 / k):.4f} in {where}, "
              "expected 0"),
             "ε ~ N(0, 1) has mean 0: torch.randn_like(mu), not torch.rand_like (uniform on [0, 1])"),
            ((ms - 1) / math.sqrt(2 / k),
             (f"your noise ε = (z − μ)/σ has standard deviation {ms.sqrt().item():.4f} ± "
              f"{math.sqrt(0.5 / k):.4f} in {where}, expected 1"), hint_sd),
            ((inside - _INSIDE_1) / math.sqrt(p_in / k),
             (f"your noise is not normal: a fraction {inside.item():.4f} ± {math.sqrt(p_in / k):.4f} of "
              f"ε = (z − μ)/σ lies in (−1, 1) in {where}, a N(0, 1) puts {_INSIDE_1:.4f} there"), hint_law),
            ((m4 - 3) / math.sqrt(96 / k),
             (f"your noise is not normal: the mean of ε⁴ is {m4.item():.3f} ± {math.sqrt(96 / k):.3f} in {where}, "
              "a N(0, 1) has E ε⁴ = 3 (its tails are too light or too heavy)"), hint_law),
            (ks * math.sqrt(k) * _Z / _KS_T,
             (f"your noise is not normal: the distribution function of ε = (z − μ)/σ is {ks:.4f} away from "
              f"N(0, 1)'s at ε = {at:.3f} in {where}; over {k} independent N(0, 1) draws it stays within "
              f"{_KS_T / math.sqrt(k):.4f} (Kolmogorov–Smirnov)"), hint_law)]
    failure = _first_rejection(checks, n, details)  # the law of each ε first: a discrete noise repeats too
    if failure is not None:
        return failure
    checks = []
    # exact repeats: a reused ε gives bit-identical z, so |ε| repeats to float precision (rows are
    # compared only with 3 columns or more: single values collide by chance at that precision)
    mag = eps.abs()
    for j in range(cols):
        for k in range(j + 1, cols):
            same = float(((mag[:, j] - mag[:, k]).abs() <= 1e-5 * (1 + mag[:, j])).double().mean())
            if same > _DUPLICATES:
                return _Failure(f"{columns[j]} and {columns[k]} got the same noise (up to sign) in a fraction "
                                f"{same:.3f} of the rows", details,
                                "draw one independent ε per element: torch.randn_like(mu), not a few columns "
                                "of noise repeated or mirrored across the latent dimensions")
    repeats = _repeated_rows(mag) if cols >= 3 else 0
    if repeats > _DUPLICATES * n:
        return _Failure(f"{repeats} of your {n} rows (examples) repeat the noise of another row, up to its sign",
                        details + ["independent draws repeat a whole row with probability ≈ 0"],
                        "draw a fresh ε for every example: one torch.randn_like(mu) of the full shape of μ, "
                        "not a smaller block repeated, concatenated or mirrored (−ε) to fill the batch")
    hint_indep = "draw one independent ε per element: torch.randn_like(mu)"
    pairs = [("latent dimensions", "ε_j", "ε_(j+1)", eps[:, 1:], eps[:, :-1])] if cols > 1 else []
    pairs.append(("examples", "ε_i", "ε_(i+1)", eps[1:], eps[:-1]))
    for what, a, b, x1, x2 in pairs:
        m = x1.numel()
        r = (x1 * x2).mean()
        r2 = ((x1.pow(2) - 1) * (x2.pow(2) - 1)).mean()  # Var[(ε² − 1)(ε'² − 1)] = 2 · 2
        checks += [
            (r * math.sqrt(m), (f"the noise of neighbouring {what} is correlated: E[{a} {b}] = {r.item():.4f}, "
                                "expected 0"), hint_indep),
            (r2 * math.sqrt(m) / 2, (f"the noise of neighbouring {what} is dependent: E[({a}² − 1)({b}² − 1)] = "
                                     f"{r2.item():.4f}, expected 0 (their sizes move together)"), hint_indep)]
    return _first_rejection(checks, n, details)


def _first_rejection(checks: list, n: int, details: list[str]) -> _Failure | None:
    """The first of ``checks`` ``(z, message, hint)`` with ``|z| > _Z`` (a Kolmogorov–Smirnov
    statistic enters scaled by ``_Z / _KS_T``), as a failure."""
    for z, what, hint in checks:
        if abs(float(z)) > _Z:
            away = (f"√n · distance = {float(z) * _KS_T / _Z:.1f}, above {_KS_T:.2f}" if "Kolmogorov" in what
                    else f"{abs(float(z)):.0f} standard errors away")
            detail = f"{away}, over {n} draws per column (a correct answer is rejected with probability < 1e-7)"
            return _Failure(what, details + [detail], hint)
    return None


def _judge_reparameterize(block, case, fn) -> _Failure | None:
    """Shape/dtype, ε = (z − μ)/σ ~ N(0, 1) per column, fresh noise per call, ∂z/∂μ = 1, ∂z/∂log σ² = ½σε."""
    inputs = case.make()
    mu, logvar = inputs["mu"], inputs["logvar"]
    with _seeded(_SEED):
        z = _as_output(_call(fn, mu, logvar))
        z2 = _as_output(_call(fn, mu.detach(), logvar.detach()))
    if z.shape != mu.shape:
        return _Failure(f"wrong shape: expected {tuple(mu.shape)} (the shape of mu), got {tuple(z.shape)}", [],
                        "draw ε with the shape of μ: torch.randn_like(mu)")
    if z.dtype != mu.dtype:
        return _Failure(f"wrong dtype: expected {mu.dtype}, got {z.dtype}", [],
                        "draw ε with torch.randn_like(mu) so that it has mu's dtype and device")
    if not bool(torch.isfinite(z).all()):
        return _Failure("non-finite z", [f"got {_short(z)}"], block.overflow)
    sigma = torch.exp(0.5 * logvar.detach().double())
    eps = (z.detach().double() - mu.detach().double()) / sigma
    if bool((z.detach() == mu.detach()).all()):
        return _Failure("z equals μ: no noise was added", [f"got {_short(z)}"],
                        "z = μ + σ ⊙ ε with ε = torch.randn_like(mu)")
    if bool(torch.equal(z.detach(), z2.detach())) and z.numel() > 1:
        return _Failure("two calls returned the same z: the noise must be fresh on every call", [],
                        "do not re-seed inside your function; draw ε = torch.randn_like(mu) each call")
    if eps.abs().max() > 10:
        col = int(eps.abs().max(0).values.argmax()) if eps.dim() > 1 else 0
        return _Failure(f"|ε| = |z − μ|/σ reaches {eps.abs().max().item():.4g}: z is not μ + σ ε",
                        [f"column {col}: log σ² = {logvar.reshape(-1, logvar.shape[-1])[0, col].item():g}"],
                        "σ = exp(½ log σ²), not exp(log σ²) (the variance) nor log σ² itself")
    if mu.shape[0] >= 1000:
        lv = logvar.detach()[0]
        columns = [f"column {j} (μ = {mu[0, j].item():g}, log σ² = {lv[j].item():g})" for j in range(mu.shape[1])]
        failure = _noise_law(eps, columns, lv)
        if failure is not None:
            return failure
    if not z.requires_grad:
        return _Failure("z does not depend on μ and log σ² through autograd", [],
                        "compute z = mu + torch.exp(0.5 * logvar) * eps from the input tensors (no .detach(), "
                        "no torch.no_grad(), no .data, no torch.normal(mu, std)): gradients must reach the encoder")
    # z_i depends on (μ_i, log σ²_i) only, so the gradient of Σ z is the elementwise derivative
    # (a scalar output also avoids autograd's slow first-use import for explicit grad_outputs)
    d_mu, d_lv = torch.autograd.grad(z.sum(), (mu, logvar), allow_unused=True)
    want_lv = 0.5 * (z.detach() - mu.detach())
    if d_mu is None or not torch.allclose(d_mu, torch.ones_like(mu)):
        return _Failure("∂z/∂μ is not 1", [f"got ∂z/∂μ = {_short(d_mu) if d_mu is not None else None}"],
                        "z = μ + σ ε: the gradient with respect to μ is 1 element by element")
    if d_lv is None or not torch.allclose(d_lv, want_lv, rtol=1e-3, atol=1e-6):
        return _Failure("∂z/∂ log σ² is not ½ σ ε", [
            f"expected {_short(want_lv)}", f"got      {_short(d_lv) if d_lv is not None else None}"],
            "σ = exp(½ log σ²) so ∂z/∂ log σ² = ½ σ ε: the noise must not depend on log σ²")
    return None


_JUDGES = {"values": _judge_values, "seeded": _judge_seeded, "moments": _judge_moments,
           "reparameterize": _judge_reparameterize, "gradient": _judge_gradient, "noise": _judge_elbo_noise,
           "fresh": _judge_fresh}


def _run(name: str, fn) -> bool:
    """Run every case of block ``name`` on ``fn``; print PASS or the first failure; return the verdict."""
    block = _BLOCKS[name]
    cases = [c for c in _CASES if c.block == name]
    title = f"check.{name}"
    if not callable(fn):
        print(f"{title}: FAIL — pass your function itself (e.g. check.{name}(my_fn)), got {type(fn).__name__}")
        return False
    for case in cases:
        try:
            failure = _JUDGES[case.judge](block, case, fn)
        except _StudentError as e:
            hint = case.note or ("use reshape rather than view on non-contiguous inputs"
                                 if "view" in str(e) else block.formula)
            failure = _Failure(f"your function raised {e}", [], hint)
        except Exception as e:  # noqa: BLE001 - e.g. an output we cannot even compare
            failure = _Failure(f"could not check your output: {traceback.format_exception_only(type(e), e)[-1].strip()}",
                               [])
        if failure is not None:
            lines = [f"{title}: FAIL on case '{case.label}'", f"  {failure.what}", "  input:"]
            lines += [f"    {_describe(k, v)}" for k, v in case.make().items()]
            lines += [f"  {d}" for d in failure.details]
            if failure.hint:
                lines.append(f"  hint: {failure.hint}")
            print("\n".join(lines))
            return False
    print(f"{title}: PASS ({len(cases)} cases: {'; '.join(c.label for c in cases)})")
    return True


# ----------------------------------------------------------------------------- public checks

def kl_standard_normal(student_fn) -> bool:
    """Check ``student_fn(mu, logvar) -> (B,)``, the KL of ``N(μ, diag σ²)`` from ``N(0, I)``."""
    return _run("kl_standard_normal", student_fn)


def kl_normal(student_fn) -> bool:
    """Check ``student_fn(mu_q, logvar_q, mu_p, logvar_p) -> (B,)``, ``KL(q ‖ p)`` of diagonal Gaussians."""
    return _run("kl_normal", student_fn)


def reparameterize(student_fn) -> bool:
    """Check ``student_fn(mu, logvar) -> z``: ``z = μ + σ ε`` with fresh ``ε ~ N(0, I)`` and gradients."""
    return _run("reparameterize", student_fn)


def bernoulli_log_likelihood(student_fn) -> bool:
    """Check ``student_fn(logits, x) -> (B,)``, ``log p(x|z)`` of a Bernoulli decoder."""
    return _run("bernoulli_log_likelihood", student_fn)


def gaussian_log_likelihood(student_fn) -> bool:
    """Check ``student_fn(x, mean, logvar) -> (B,)``, a diagonal Gaussian log density."""
    return _run("gaussian_log_likelihood", student_fn)


def continuous_bernoulli_log_likelihood(student_fn) -> bool:
    """Check ``student_fn(logits, x) -> (B,)``, ``log p(x|z)`` of a continuous Bernoulli decoder."""
    return _run("continuous_bernoulli_log_likelihood", student_fn)


def elbo(student_fn) -> bool:
    """Check ``student_fn(model, x) -> (B,)``, the one-sample ELBO of each example.

    It checks one specific estimator, the one ``vt.elbo`` computes: one sample
    ``z = μ + σ ε`` per example, ``log p_θ(x|z)`` at that z, minus the KL in closed form.
    Other unbiased estimators (the KL estimated from the sample, an average over several z)
    are valid estimators of the ELBO but not this one: they fail, with a hint that says so.
    The gradient must reach μ and σ through the sample, and every call must draw new noise.

    ``model`` is a :class:`~vae_tutorial.models.vae.VAE`: use ``model.encode``,
    ``model.decode`` and ``model.log_likelihood``. Returning an
    :class:`~vae_tutorial.maths.losses.ELBOTerms` is accepted too.
    """
    return _run("elbo", student_fn)


def iwae_bound(student_fn) -> bool:
    """Check ``student_fn(model, x, k) -> (B,)``, the importance-weighted bound ``L_k``.

    Values (also for log-weights on the scale of real images, ≈ −250), their law over
    many draws, the gradient at k = 1 (it must flow through the samples z) and fresh noise
    at every call.
    """
    return _run("iwae_bound", student_fn)
