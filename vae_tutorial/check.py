"""Homework checks: run your version of a building block against the package's reference.

Use it from an exercise cell::

    from vae_tutorial import check

    def my_kl(mu, logvar):
        ...

    check.kl_standard_normal(my_kl)   # prints PASS or FAIL (with the failing input), returns a bool

Each check runs your function on random inputs and on edge cases (extreme logits ±50,
``log σ²`` far from 0, a batch of one, float64, non-contiguous tensors) and compares
it with the reference in :mod:`vae_tutorial.losses`. It prints ``PASS``, or ``FAIL``
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

Stochastic functions (``reparameterize``, ``elbo``, ``iwae_bound``) are judged
fairly: ``reparameterize`` by the statistics of ``ε = (z − μ)/σ`` and by its
gradients (``∂z/∂μ = 1``, ``∂z/∂ log σ² = ½ σ ε``); ``elbo`` and ``iwae_bound``
first with the same ``torch.manual_seed`` as the reference (equal if you draw the
noise the same way), otherwise by comparing averages over many draws, and on models
where the answer is deterministic (an encoder with ``log σ² = −30``; a linear-Gaussian
model whose encoder is the exact posterior, where ``L_k = log p(x)`` for every ``k``).
The global random state is restored afterwards.
"""
from __future__ import annotations

import math
import traceback
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from . import losses
from .models import VAE, MLPDecoder, MLPEncoder
from .ppca import LinearGaussian

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
    except Exception as e:  # noqa: BLE001 - any error in student code is a FAIL, not a crash
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
        raise TypeError(f"return a torch.Tensor, got {type(got).__name__}")
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
    judge: str = "values"  # "values", "stochastic" or "reparameterize"
    rtol: float = 1e-4
    atol: float = 1e-4
    note: str | None = None  # the hint shown if the student's function raises on this case


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


def _iwae_no_log_k(i, e):
    return e + math.log(i["k"])


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
                     "accidental β = number of pixels)", _elbo_mean_pixels))),
    _Block("iwae_bound", lambda model, x, k: losses.iwae_bound(model, x, k), "samples",
           "L_k = logsumexp_k(log w_k) − log k with log w = log p_θ(x|z) + log p(z) − log q_φ(z|x), "
           "z_k ~ q_φ(z|x); log p(z) and log q are full Gaussian log densities summed over latent dims",
           "combine the weights with torch.logsumexp, never exp then log",
           (_SIGN, _Mistake("did you forget the − log k (the average, not the sum, of the weights)?",
                            _iwae_no_log_k),
            _Mistake("that is the average of log w (the ELBO), not log of the average weight: use "
                     "logsumexp(log w) − log k", _iwae_mean_log_w))),
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


def _toy_vae(*, seed=0, likelihood="bernoulli", logvar=None, logit_scale=1.0, dtype=torch.float32):
    """A small MLP VAE on ``(1, 4, 4)`` images, Z = 2, with seeded weights.

    ``logvar``: pin the encoder's log σ² to this value (``−30`` makes z = μ, so the ELBO
    is deterministic). ``logit_scale`` multiplies the decoder's last layer (saturation).
    """
    with _seeded(seed):
        model = VAE(MLPEncoder((1, 4, 4), [8], 2), MLPDecoder(2, [8], (1, 4, 4)), likelihood)
    with torch.no_grad():
        if logvar is not None:
            head = model.encoder.net[-1]
            head.weight[2:] = 0.0
            head.bias[2:] = logvar
        model.decoder.net[-1].weight.mul_(logit_scale)
        model.decoder.net[-1].bias.mul_(logit_scale)
    return model.to(dtype).eval()


def _exact_posterior_vae(dtype=torch.float32) -> tuple[VAE, LinearGaussian]:
    """Linear-Gaussian model (PPCA, D = 6, Z = 2) whose encoder is the exact posterior.

    ``Wᵀ W`` is diagonal, so the posterior ``N(M⁻¹Wᵀ(x − b), σ² M⁻¹)`` is a diagonal
    Gaussian that the encoder represents exactly. Every importance weight is then
    ``p(x, z)/p(z|x) = p(x)``: any correct IWAE bound equals ``log p(x)`` for every k.
    """
    d, z = 6, 2
    q, _ = torch.linalg.qr(torch.randn(d, z, generator=_g(7), dtype=torch.float64))
    w = q * torch.tensor([2.0, 0.7], dtype=torch.float64)
    b = torch.linspace(-1, 1, d, dtype=torch.float64)
    ppca = LinearGaussian(w, b, 0.25)
    m = ppca._m()
    a = torch.linalg.solve(m, w.T)  # posterior mean = A (x − b)
    post_logvar = (ppca.noise_var / m.diagonal()).log()
    # one linear layer each way; the Gaussian decoder's mean is the layer's output, W z + b
    with _seeded(0):  # the layers' default init draws from the global generator
        model = VAE(MLPEncoder(d, [], z), MLPDecoder(z, [], d), "gaussian",
                    gaussian_logvar=math.log(0.25)).double()
    with torch.no_grad():
        enc, dec = model.encoder.net[-1], model.decoder.net[-1]
        enc.weight.zero_()
        enc.weight[:z] = a
        enc.bias[:z] = -a @ b
        enc.bias[z:] = post_logvar
        dec.weight.copy_(w)
        dec.bias.copy_(b)
        model.obs_logvar.fill_(math.log(0.25))  # the buffer was made in float32: reset it exactly
    return model.to(dtype).eval(), ppca


def _ppca_data(b: int, seed: int, dtype=torch.float32) -> Tensor:
    return _randn(b, 6, seed=seed, dtype=dtype)


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


def _ppca_inputs(b, k, *, dtype=torch.float32, seed=5, transpose=False):
    model, _ = _exact_posterior_vae(dtype)
    x = _ppca_data(b, seed, dtype)
    if transpose:
        x = x.t().contiguous().t()
    return {"model": model, "x": x, "k": k}


_EXTREME = 50.0
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
    _Case("reparameterize", "statistics: 20000 draws, log σ² ∈ {−20, −1, 0, 2, 20}",
          lambda: _reparam_inputs(20000, [-20.0, -1.0, 0.0, 2.0, 20.0], [0.0, -2.0, 0.5, 3.0, 1.0]),
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
    # ELBO of a small VAE
    _Case("elbo", "encoder with log σ² = −30 (z = μ: the ELBO is deterministic)",
          lambda: _vae_inputs(8, logvar=-30.0), judge="stochastic"),
    _Case("elbo", "random model, batch of 8", lambda: _vae_inputs(8, seed=1), judge="stochastic"),
    _Case("elbo", "saturated decoder (logits beyond ±50)",
          lambda: _vae_inputs(6, seed=2, logvar=-30.0, logit_scale=200.0), judge="stochastic"),
    _Case("elbo", "batch of one", lambda: _vae_inputs(1, seed=3, logvar=-30.0), judge="stochastic"),
    _Case("elbo", "float64 model and data", lambda: _vae_inputs(5, seed=4, logvar=-30.0, dtype=torch.float64),
          judge="stochastic", **_F64),
    _Case("elbo", "non-contiguous x", lambda: _vae_inputs(6, seed=5, transpose=True), judge="stochastic"),
    # IWAE bound
    _Case("iwae_bound", "exact posterior (linear-Gaussian model): L_k = log p(x), k = 7",
          lambda: _ppca_inputs(6, 7), judge="stochastic"),
    _Case("iwae_bound", "random model, k = 1 (the ELBO)", lambda: {**_vae_inputs(8, seed=1), "k": 1},
          judge="stochastic"),
    _Case("iwae_bound", "random model, k = 20", lambda: {**_vae_inputs(8, seed=1), "k": 20}, judge="stochastic"),
    _Case("iwae_bound", "narrow posterior (log σ² = −20), k = 5",
          lambda: {**_vae_inputs(6, seed=2, logvar=-20.0), "k": 5}, judge="stochastic"),
    _Case("iwae_bound", "batch of one, k = 10", lambda: {**_vae_inputs(1, seed=3), "k": 10}, judge="stochastic"),
    _Case("iwae_bound", "float64 (exact posterior), k = 4", lambda: _ppca_inputs(3, 4, dtype=torch.float64),
          judge="stochastic", **_F64),
    _Case("iwae_bound", "non-contiguous x (exact posterior), k = 3", lambda: _ppca_inputs(5, 3, transpose=True),
          judge="stochastic"),
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
_REPEATS = 100


def _judge_stochastic(block, case, fn) -> _Failure | None:
    """Same seed first; if that differs, compare averages over many draws (and known mistakes)."""
    inputs = case.make()
    args = list(inputs.values())
    with torch.no_grad():
        with _seeded(_SEED):
            expected = block.reference(*args)
        with _seeded(_SEED):
            got = _call(fn, *args)
        with _seeded(_SEED):  # known mistakes are evaluated with the same noise
            failure = _compare(block, inputs, got, expected, case.rtol, case.atol)
        if failure is None or not failure.what.startswith("wrong values"):
            return failure
        # Different draws of the noise: compare E[yours] with E[reference].
        draws_got, draws_ref = [], []
        for r in range(_REPEATS):
            with _seeded(_SEED + 1 + r):
                draws_got.append(_as_output(_call(fn, *args)).detach().double())
            with _seeded(_SEED + 100_000 + r):
                draws_ref.append(block.reference(*args).detach().double())
    g, e = torch.stack(draws_got), torch.stack(draws_ref)
    se = (g.var(0) / _REPEATS + e.var(0) / _REPEATS).sqrt()
    tol = 6 * se + case.atol + case.rtol * e.mean(0).abs()
    if bool(((g.mean(0) - e.mean(0)).abs() <= tol).all()):
        return None
    with _seeded(_SEED):  # which known mistake matches? (those that depend on the noise use the seed)
        failure = _compare(block, inputs, g.mean(0), e.mean(0), case.rtol, float(tol.max()))
    if failure is None:  # pragma: no cover - the test above and _compare agree
        return None
    failure.what = failure.what.replace("wrong values", f"wrong values on average over {_REPEATS} draws")
    failure.details.append(f"with the reference's seed your values differed, so averages over {_REPEATS} "
                           "draws were compared (tolerance: 6 standard errors)")
    return failure


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
        n = mu.shape[0]
        m, s = eps.mean(0), eps.std(0)
        bad_m, bad_s = m.abs() > 5 / math.sqrt(n), (s - 1).abs() > 0.05
        if bool((bad_m | bad_s).any()):
            j = int((bad_m | bad_s).nonzero()[0, 0])
            return _Failure(
                f"ε = (z − μ)/σ is not N(0, 1) in column {j} (μ = {mu[0, j].item():g}, "
                f"log σ² = {logvar[0, j].item():g}): mean {m[j].item():.4g}, std {s[j].item():.4g} "
                f"over {n} draws (expected mean 0, std 1)", [],
                "z's spread must be σ = exp(½ log σ²) (not the variance exp(log σ²), not log σ²), "
                "and ε ~ N(0, 1): torch.randn_like, not torch.rand_like")
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


_JUDGES = {"values": _judge_values, "stochastic": _judge_stochastic, "reparameterize": _judge_reparameterize}


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

    ``model`` is a :class:`~vae_tutorial.models.VAE`: use ``model.encode``,
    ``model.decode`` and ``model.log_likelihood``. Returning an
    :class:`~vae_tutorial.losses.ELBOTerms` is accepted too.
    """
    return _run("elbo", student_fn)


def iwae_bound(student_fn) -> bool:
    """Check ``student_fn(model, x, k) -> (B,)``, the importance-weighted bound ``L_k``."""
    return _run("iwae_bound", student_fn)
