"""vae_tutorial.check: the homework checks accept correct answers and reject the usual mistakes."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vae_tutorial import check, losses


def flat_sum(t):
    return t.reshape(t.shape[0], -1).sum(-1)


# ----------------------------------------------------------------------------- correct answers


def my_elbo(model, x):
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    return model.log_likelihood(x, model.decode(z)) - losses.kl_standard_normal(mu, logvar)


def my_elbo_other_noise(model, x):
    """Correct, but draws ε in a different layout: only equal to the reference on average."""
    mu, logvar = model.encode(x)
    eps = torch.randn(mu.shape[1], mu.shape[0], dtype=mu.dtype).t()
    z = mu + torch.exp(0.5 * logvar) * eps
    return model.log_likelihood(x, model.decode(z)) - losses.kl_standard_normal(mu, logvar)


def my_iwae(model, x, k):
    """Correct IWAE with samples drawn as (B, k, Z): a different stream from the reference."""
    mu, logvar = model.encode(x)
    std = torch.exp(0.5 * logvar)
    z = (mu.unsqueeze(1) + std.unsqueeze(1) * torch.randn(mu.shape[0], k, mu.shape[1], dtype=mu.dtype))
    z = z.transpose(0, 1)  # (k, B, Z)
    xs = x.unsqueeze(0).expand(k, *x.shape).reshape(-1, *x.shape[1:])
    log_px = model.log_likelihood(xs, model.decode(z.reshape(-1, z.shape[-1]))).view(k, -1)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_q = torch.distributions.Normal(mu, std).log_prob(z).sum(-1)
    return torch.logsumexp(log_px + log_pz - log_q, 0) - math.log(k)


def kl_clamped_for_stability(mu, lv):
    """log σ² clamped to [−20, 20] (red-team W05): wrong only beyond ±20, accepted on purpose."""
    lv = lv.clamp(-20, 20)
    return -0.5 * (1 + lv - mu.pow(2) - lv.exp()).sum(-1)


CORRECT = {
    "kl_standard_normal": [losses.kl_standard_normal,
                           lambda mu, lv: -0.5 * (1 + lv - mu.pow(2) - lv.exp()).sum(-1),
                           kl_clamped_for_stability],
    "kl_normal": [losses.kl_normal,
                  lambda mq, lq, mp, lp: torch.distributions.kl_divergence(
                      torch.distributions.Normal(mq, (0.5 * lq).exp()),
                      torch.distributions.Normal(mp, (0.5 * lp).exp())).sum(-1)],
    "reparameterize": [losses.reparameterize,
                       lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn_like(mu),
                       lambda mu, lv: torch.distributions.Normal(mu, torch.exp(0.5 * lv)).rsample()],
    "bernoulli_log_likelihood": [losses.bernoulli_log_likelihood,
                                 lambda lg, x: flat_sum(x * lg - F.softplus(lg))],
    "gaussian_log_likelihood": [losses.gaussian_log_likelihood,
                                lambda x, m, lv: flat_sum(torch.distributions.Normal(
                                    m, torch.exp(0.5 * torch.as_tensor(lv, dtype=x.dtype))).log_prob(x))],
    "continuous_bernoulli_log_likelihood": [
        losses.continuous_bernoulli_log_likelihood,
        lambda lg, x: flat_sum(x * lg - F.softplus(lg) + torch.log(
            torch.where(lg == 0, torch.full_like(lg, 2.0), lg / torch.tanh(lg / 2))))],
    "elbo": [lambda model, x: losses.elbo(model, x), my_elbo, my_elbo_other_noise],
    "iwae_bound": [losses.iwae_bound, my_iwae],
}


@pytest.mark.parametrize("name,fn", [(n, f) for n, fs in CORRECT.items() for f in fs])
def test_correct_versions_pass(name, fn, capsys):
    state = torch.get_rng_state()
    assert getattr(check, name)(fn) is True
    out = capsys.readouterr().out
    assert out.startswith(f"check.{name}: PASS")
    assert torch.equal(torch.get_rng_state(), state)  # the student's random state is left alone


# ----------------------------------------------------------------------------- typical mistakes


def raises(*args):
    raise RuntimeError("not implemented yet")


def elbo_mean_over_pixels(model, x):
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    return model.log_likelihood(x, model.decode(z)) / x[0].numel() - losses.kl_standard_normal(mu, logvar)


def elbo_sigmoid_then_log(model, x):
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    p = torch.sigmoid(model.decoder(z))
    return flat_sum(x * torch.log(p) + (1 - x) * torch.log(1 - p)) - losses.kl_standard_normal(mu, logvar)


WRONG = [
    # (check, wrong function, text expected in the report)
    ("kl_standard_normal",  # errata E5: the sum on μ² only, and the wrong sign
     lambda mu, lv: (0.5 * (1 + lv - mu.pow(2).sum(-1, keepdim=True) - lv.exp())).sum(-1), "never negative"),
    ("kl_standard_normal", lambda mu, lv: -0.5 * (1 + lv - mu.pow(2) - lv.exp()), "sum over the latent"),
    ("kl_standard_normal", lambda mu, lv: -0.5 * (1 + lv - mu.pow(2) - lv.exp()).mean(-1), "average"),
    ("kl_standard_normal", lambda mu, lv: -0.5 * (1 + lv - mu.pow(2) - lv.exp()).sum(), "per example"),
    ("kl_standard_normal", raises, "raised RuntimeError: not implemented yet"),
    ("kl_standard_normal", lambda mu, lv: (-0.5 * (1 + lv - mu.pow(2) - lv.exp()).sum(-1)).float().double(),
     "dtype"),
    ("kl_normal", lambda mq, lq, mp, lp: losses.kl_normal(mp, lp, mq, lq), "not symmetric"),
    ("reparameterize", lambda mu, lv: mu + 0 * lv, "no noise"),
    ("reparameterize", lambda mu, lv: mu + torch.exp(lv) * torch.randn_like(mu), "exp(½ log σ²)"),
    ("reparameterize", lambda mu, lv: (mu + torch.exp(0.5 * lv) * torch.randn_like(mu)).detach(), "autograd"),
    ("reparameterize", lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.rand_like(mu), "rand_like"),
    ("reparameterize", lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn(mu.shape[-1]), "shape"),
    ("reparameterize", raises, "raised"),
    ("bernoulli_log_likelihood",  # sigmoid then log: −inf/NaN at logits ±50
     lambda lg, x: flat_sum(x * torch.log(torch.sigmoid(lg)) + (1 - x) * torch.log(1 - torch.sigmoid(lg))),
     "sigmoid then log"),
    ("bernoulli_log_likelihood",
     lambda lg, x: -F.binary_cross_entropy_with_logits(lg, x, reduction="none").reshape(len(x), -1).mean(-1),
     "errata E9"),
    ("bernoulli_log_likelihood", lambda lg, x: F.binary_cross_entropy_with_logits(lg, x, reduction="none")
     .reshape(len(x), -1).sum(-1), "sign"),
    ("gaussian_log_likelihood",
     lambda x, m, lv: flat_sum(-0.5 * (lv + (x - m) ** 2 / torch.exp(torch.as_tensor(lv)))), "log 2π"),
    ("gaussian_log_likelihood",
     lambda x, m, lv: flat_sum(-0.5 * (math.log(2 * math.pi) + lv + (x - m) ** 2 / torch.exp(lv))),
     "Python float"),
    ("continuous_bernoulli_log_likelihood", losses.bernoulli_log_likelihood, "log normaliser"),
    ("continuous_bernoulli_log_likelihood",  # 0/0 at logit 0
     lambda lg, x: flat_sum(x * lg - F.softplus(lg) + torch.log(lg / torch.tanh(lg / 2))), "ℓ = 0"),
    ("elbo", elbo_mean_over_pixels, "errata E9"),
    ("elbo", elbo_sigmoid_then_log, "not sigmoid then log"),
    ("elbo", lambda model, x: -losses.elbo(model, x).elbo, "sign"),
    ("elbo", lambda model, x: (lambda t: t.reconstruction + t.kl)(losses.elbo(model, x)), "KL is subtracted"),
    ("iwae_bound", lambda model, x, k: losses.iwae_bound(model, x, k) + math.log(k), "log k"),
    ("iwae_bound", lambda model, x, k: torch.cat(list(losses.iwae_log_weights(model, x, k))).mean(0),
     "logsumexp"),
]


@pytest.mark.parametrize("name,fn,text", WRONG, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(WRONG)])
def test_wrong_versions_fail_with_a_useful_report(name, fn, text, capsys):
    state = torch.get_rng_state()
    assert getattr(check, name)(fn) is False
    out = capsys.readouterr().out
    assert out.startswith(f"check.{name}: FAIL on case '")
    assert "input:" in out
    assert text in out, out
    assert torch.equal(torch.get_rng_state(), state)


def test_report_shows_the_failing_input_and_expected_vs_got(capsys):
    # wrong only for log σ² far from 0: the report names that case and shows both numbers
    def clipped(mu, lv):
        return losses.kl_standard_normal(mu, lv.clamp(-10, 10))

    assert check.kl_standard_normal(clipped) is False
    out = capsys.readouterr().out
    assert "FAIL on case 'log σ² far from 0 (±20)'" in out
    assert "logvar: shape (4, 6), float32, values [20, -20," in out
    assert "expected [" in out and "got      [" in out


def test_not_a_function_or_wrong_return_type(capsys):
    assert check.kl_normal(42) is False
    assert "pass your function itself" in capsys.readouterr().out
    assert check.kl_standard_normal(lambda mu, lv: [1.0]) is False
    assert "return a torch.Tensor" in capsys.readouterr().out


# ----------------------------------------------------------------------------- stochastic checks: power
# Issue 10, item 6: the checks of the stochastic building blocks (reparameterize, elbo,
# iwae_bound) must reject wrong answers whose error is visible only in the law of the
# noise, and accept a correct answer drawn with any generator in any order.

_GEN = torch.Generator().manual_seed(2024)  # a student's own generator, never re-seeded


def _kl(mu, lv):
    return -0.5 * (1 + lv - mu.pow(2) - lv.exp()).sum(-1)


def _elbo_with(noise, kl=_kl, rec_scale=1.0):
    """An ELBO whose ε comes from ``noise(mu)`` and whose σ is exp(½ log σ²)."""
    def f(model, x):
        mu, lv = model.encode(x)
        z = mu + torch.exp(0.5 * lv) * noise(mu)
        return rec_scale * model.log_likelihood(x, model.decode(z)) - kl(mu, lv)
    return f


def _elbo_sigma_squared(noise=torch.randn_like):
    """ELBO that samples with σ² = exp(log σ²) in place of σ (the KL is right)."""
    def f(model, x):
        mu, lv = model.encode(x)
        return model.log_likelihood(x, model.decode(mu + lv.exp() * noise(mu))) - _kl(mu, lv)
    return f


def _elbo_logvar_as_logstd(model, x):
    """log σ² read as log σ everywhere: σ = exp(log σ²) in the noise, σ² = exp(2 log σ²) in the KL."""
    mu, lv = model.encode(x)
    kl = (0.5 * (mu.pow(2) + torch.exp(2 * lv) - 1 - 2 * lv)).sum(-1)
    return model.log_likelihood(x, model.decode(mu + lv.exp() * torch.randn_like(mu))) - kl


def _elbo_torch_normal(model, x):
    """z = torch.normal(μ, σ): the right values, but no gradient path from z back to μ and σ."""
    mu, lv = model.encode(x)
    return model.log_likelihood(x, model.decode(torch.normal(mu, torch.exp(0.5 * lv)))) - _kl(mu, lv)


def _elbo_no_grad(model, x):
    with torch.no_grad():
        return _elbo_chapter7(model, x)


def _elbo_distributions(model, x):
    mu, lv = model.encode(x)
    q = torch.distributions.Independent(torch.distributions.Normal(mu, torch.exp(0.5 * lv)), 1)
    p = torch.distributions.Independent(
        torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    return model.log_likelihood(x, model.decode(q.rsample())) - torch.distributions.kl_divergence(q, p)


def _elbo_chapter7(model, x, beta=1.0):  # the book's own answer (book/07_beta.ipynb)
    mu, logvar = model.encode(x)
    z = losses.reparameterize(mu, logvar)
    rec = model.log_likelihood(x, model.decode(z))
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)
    return rec - beta * kl


def _elbo_mc_kl(model, x):
    mu, lv = model.encode(x)
    z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
    log_pz = losses.gaussian_log_likelihood(z, torch.zeros_like(z), 0.0)
    log_qz = losses.gaussian_log_likelihood(z, mu, lv)
    return model.log_likelihood(x, model.decode(z)) + log_pz - log_qz


def _iwae_with(k_used=None, noise=None, combine="logsumexp", log_k="k", sigma=lambda lv: torch.exp(0.5 * lv)):
    """IWAE built from ``k_used(k)`` samples drawn as ``noise(k, mu)`` and combined by ``combine``."""
    def f(model, x, k):
        kk = k if k_used is None else k_used(k)
        mu, lv = model.encode(x)
        eps = torch.randn(kk, *mu.shape, dtype=mu.dtype) if noise is None else noise(kk, mu)
        z = mu + sigma(lv) * eps  # (kk, B, Z)
        zf = z.reshape(-1, z.shape[-1])
        xf = x.unsqueeze(0).expand(kk, *x.shape).reshape(-1, *x.shape[1:])
        log_w = (model.log_likelihood(xf, model.decode(zf))
                 + losses.gaussian_log_likelihood(zf, torch.zeros_like(zf), 0.0)
                 - losses.gaussian_log_likelihood(zf, mu.expand_as(z).reshape(zf.shape),
                                                  lv.expand_as(z).reshape(zf.shape))).view(kk, -1)
        if combine == "mean":
            return log_w.mean(0)
        return torch.logsumexp(log_w, 0) - math.log({"k": k, "used": kk}[log_k])
    return f


def _iwae_loop_distributions(model, x, k):
    """One sample at a time with torch.distributions, weights combined at the end."""
    mu, lv = model.encode(x)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * lv))
    prior = torch.distributions.Normal(0.0, 1.0)
    log_w = []
    for _ in range(k):
        z = q.rsample()
        log_w.append(model.log_likelihood(x, model.decode(z)) + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1))
    return torch.logsumexp(torch.stack(log_w), 0) - math.log(k)


def _iwae_chapter8(model, x, k):  # the book's own answer (book/08_evaluation.ipynb)
    mu, logvar = model.encode(x)
    z = losses.reparameterize(mu.expand(k, *mu.shape), logvar.expand(k, *logvar.shape))
    zf = z.reshape(-1, z.shape[-1])
    xf = x.expand(k, *x.shape).reshape(-1, *x.shape[1:])
    log_px_z = model.log_likelihood(xf, model.decode(zf)).view(k, -1)
    log_pz = losses.gaussian_log_likelihood(zf, torch.zeros_like(zf), 0.0).view(k, -1)
    log_qz = losses.gaussian_log_likelihood(zf, mu.repeat(k, 1), logvar.repeat(k, 1)).view(k, -1)
    return torch.logsumexp(log_px_z + log_pz - log_qz, dim=0) - math.log(k)


def _iwae_stl(model, x, k):
    """Sticking the landing: q's parameters detached inside log q (a valid gradient estimator)."""
    mu, lv = model.encode(x)
    q = torch.distributions.Normal(mu.detach(), torch.exp(0.5 * lv.detach()))
    z = mu + torch.exp(0.5 * lv) * torch.randn(k, *mu.shape, dtype=mu.dtype)
    xf = x.unsqueeze(0).expand(k, *x.shape).reshape(-1, *x.shape[1:])
    log_px = model.log_likelihood(xf, model.decode(z.reshape(-1, z.shape[-1]))).view(k, -1)
    log_w = log_px + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
    return torch.logsumexp(log_w, 0) - math.log(k)


_INSIDE = math.erf(1 / math.sqrt(2))


def _two_level(a):
    """Noise ±a with probability P(|ε| < 1) = 0.6827, else ±b, with b set so that E ε² = 1.

    It has N(0, 1)'s mean, variance and P(|ε| < 1) (red-team W12); a = 0.18934 also gives
    E ε⁴ = 3, so only the shape of the distribution tells it apart."""
    b = math.sqrt((1 - _INSIDE * a * a) / (1 - _INSIDE))

    def noise(mu):
        size = torch.where(torch.rand_like(mu) < _INSIDE, a, b)
        return size * torch.where(torch.rand_like(mu) < 0.5, -1.0, 1.0).to(mu.dtype)
    return noise


_FOUR_MOMENTS = 1 - math.sqrt(1 - (1 - 3 * (1 - _INSIDE)) / _INSIDE)  # a² with E ε⁴ = 3


def _repeat_half(mu):
    """Noise for half the batch, repeated for the other half."""
    half = torch.randn((mu.shape[0] + 1) // 2, *mu.shape[1:], dtype=mu.dtype)
    return half.repeat(2, *[1] * (mu.dim() - 1))[:mu.shape[0]]


def _antithetic(mu):
    """Noise for half the batch and its mirror image −ε for the other half."""
    half = torch.randn((mu.shape[0] + 1) // 2, *mu.shape[1:], dtype=mu.dtype)
    return torch.cat([half, -half])[:mu.shape[0]]


def _dependent_sizes(mu):
    """Marginally N(0, 1) and uncorrelated across examples, but |ε| of neighbouring rows moves together."""
    u = torch.empty(mu.shape, dtype=torch.float64)
    u[0] = torch.randn(mu.shape[1:], dtype=torch.float64)
    steps = torch.randn(mu.shape, dtype=torch.float64)
    rho = 0.9  # an AR(1) chain over the rows, then a random sign per entry
    for i in range(1, mu.shape[0]):
        u[i] = rho * u[i - 1] + math.sqrt(1 - rho**2) * steps[i]
    return (u * torch.randn(mu.shape, dtype=torch.float64).sign()).to(mu.dtype)


def _elbo_sigma_detached(model, x):
    """σ detached in the sample (review R28, red-team W26): right values, no pathwise gradient to σ."""
    mu, lv = model.encode(x)
    std = torch.exp(0.5 * lv).detach()
    return model.log_likelihood(x, model.decode(mu + std * torch.randn_like(mu))) - _kl(mu, lv)


def _elbo_reseeded(model, x):
    """Re-seeds the global generator at every call (red-team W29): the same ε at every step."""
    torch.manual_seed(0)
    return _elbo_chapter7(model, x)


def _elbo_two_samples(model, x):
    """An average over two samples of z (review R30): valid, but not the estimator asked for."""
    return 0.5 * (_elbo_chapter7(model, x) + _elbo_chapter7(model, x))


def _iwae_no_grad(model, x, k):  # red-team W38
    with torch.no_grad():
        return _iwae_chapter8(model, x, k)


def _iwae_z_detached(model, x, k):  # red-team W39: stop-gradient through the samples
    mu, lv = model.encode(x)
    z = losses.reparameterize(mu.expand(k, *mu.shape), lv.expand(k, *lv.shape)).detach()
    zf = z.reshape(-1, z.shape[-1])
    xf = x.expand(k, *x.shape).reshape(-1, *x.shape[1:])
    log_w = (model.log_likelihood(xf, model.decode(zf))
             + losses.gaussian_log_likelihood(zf, torch.zeros_like(zf), 0.0)
             - losses.gaussian_log_likelihood(zf, mu.repeat(k, 1), lv.repeat(k, 1))).view(k, -1)
    return torch.logsumexp(log_w, 0) - math.log(k)


def _iwae_naive_log_mean_exp(model, x, k):
    """log(mean(exp(log w))) (red-team W37): exp underflows to 0 once log w < −104 in float32."""
    log_w = torch.cat(list(losses.iwae_log_weights(model, x, k)))
    return torch.log(torch.exp(log_w).mean(0))


def _iwae_max_shifted(model, x, k):
    """The fix for W37: log mean exp(log w) = m + log mean exp(log w − m), m the largest log w."""
    log_w = torch.cat(list(losses.iwae_log_weights(model, x, k)))
    m = log_w.max(0).values
    return m + torch.log(torch.exp(log_w - m).mean(0))


def _iwae_reseeded(model, x, k):
    torch.manual_seed(0)
    return _iwae_chapter8(model, x, k)


def _per_row(mu):
    """ε drawn one example at a time (a different order of the same stream)."""
    return torch.stack([torch.randn(mu.shape[-1], dtype=mu.dtype) for _ in range(mu.shape[0])])


CORRECT_STOCHASTIC = [
    # reparameterize: other generators, other orders, other dtypes, torch.distributions
    ("reparameterize", "own torch.Generator",
     lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, generator=_GEN, dtype=mu.dtype)),
    ("reparameterize", "ε drawn transposed (another order)",
     lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn(mu.shape[::-1], dtype=mu.dtype).t()),
    ("reparameterize", "ε drawn in float64, then cast",
     lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, dtype=torch.float64).to(mu.dtype)),
    ("reparameterize", "ε one row at a time", lambda mu, lv: mu + torch.exp(0.5 * lv) * _per_row(mu)),
    ("reparameterize", "Independent(Normal).rsample()",
     lambda mu, lv: torch.distributions.Independent(
         torch.distributions.Normal(mu, torch.exp(0.5 * lv)), 1).rsample()),
    ("reparameterize", "MultivariateNormal(scale_tril=diag σ).rsample()",
     lambda mu, lv: torch.distributions.MultivariateNormal(
         mu, scale_tril=torch.diag_embed(torch.exp(0.5 * lv))).rsample()),
    ("reparameterize", "σ = sqrt(exp(log σ²))", lambda mu, lv: mu + lv.exp().sqrt() * torch.randn_like(mu)),
    # elbo
    ("elbo", "the book's chapter-7 answer", _elbo_chapter7),
    ("elbo", "own torch.Generator", _elbo_with(lambda mu: torch.randn(mu.shape, generator=_GEN, dtype=mu.dtype))),
    ("elbo", "ε one row at a time", _elbo_with(_per_row)),
    ("elbo", "ε drawn transposed", _elbo_with(lambda mu: torch.randn(mu.shape[::-1], dtype=mu.dtype).t())),
    ("elbo", "torch.distributions: rsample and kl_divergence", _elbo_distributions),
    ("elbo", "returns losses.ELBOTerms", lambda model, x: losses.elbo(model, x, generator=_GEN)),
    # iwae_bound
    ("iwae_bound", "the book's chapter-8 answer", _iwae_chapter8),
    ("iwae_bound", "own torch.Generator", lambda model, x, k: losses.iwae_bound(model, x, k, generator=_GEN)),
    ("iwae_bound", "one sample at a time with torch.distributions", _iwae_loop_distributions),
    ("iwae_bound", "samples drawn as (B, k, Z)",
     _iwae_with(noise=lambda k, mu: torch.randn(mu.shape[0], k, mu.shape[1], dtype=mu.dtype).transpose(0, 1))),
    ("iwae_bound", "small chunks (max_elements=64)", lambda model, x, k: losses.iwae_bound(model, x, k, max_elements=64)),
    ("iwae_bound", "sticking the landing (q's parameters detached in log q)", _iwae_stl),
    ("iwae_bound", "log-mean-exp by hand, shifted by the largest log-weight", _iwae_max_shifted),
]


@pytest.mark.parametrize("name,label,fn", CORRECT_STOCHASTIC, ids=[f"{n}-{lab}" for n, lab, _ in CORRECT_STOCHASTIC])
def test_correct_stochastic_answers_pass(name, label, fn, capsys):
    assert getattr(check, name)(fn) is True, capsys.readouterr().out


WRONG_STOCHASTIC = [
    # (check, label, wrong function, text the report must contain)
    ("reparameterize", "noise sd 1.03",
     lambda mu, lv: mu + 1.03 * torch.exp(0.5 * lv) * torch.randn_like(mu), "standard deviation 1.03"),
    ("reparameterize", "noise sd 0.99",
     lambda mu, lv: mu + 0.99 * torch.exp(0.5 * lv) * torch.randn_like(mu), "standard deviation 0.99"),
    ("reparameterize", "exp(log σ²) as σ", lambda mu, lv: mu + lv.exp() * torch.randn_like(mu), "exp(½ log σ²)"),
    ("reparameterize", "no σ at all", lambda mu, lv: mu + torch.randn_like(mu), "is not"),
    ("reparameterize", "0.1 σ", lambda mu, lv: mu + 0.1 * torch.exp(0.5 * lv) * torch.randn_like(mu),
     "standard deviation 0.1"),
    ("reparameterize", "uniform noise scaled to variance 1",
     lambda mu, lv: mu + torch.exp(0.5 * lv) * (torch.rand_like(mu) - 0.5) * math.sqrt(12), "not normal"),
    ("reparameterize", "±1 noise", lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn_like(mu).sign(),
     "not normal"),
    ("reparameterize", "one ε for the whole batch",
     lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn(mu.shape[-1]), "every row"),
    ("reparameterize", "one ε per example for all dimensions",
     lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn(mu.shape[0], 1), "all latent dimensions"),
    ("reparameterize", "two-level noise with N(0, 1)'s mean, variance, P(|ε| < 1) and E ε⁴ (W12)",
     lambda mu, lv: mu + torch.exp(0.5 * lv) * _two_level(math.sqrt(_FOUR_MOMENTS))(mu), "Kolmogorov–Smirnov"),
    ("reparameterize", "two-level noise ±0.5 / ±1.62",
     lambda mu, lv: mu + torch.exp(0.5 * lv) * _two_level(0.5)(mu), "not normal"),
    ("reparameterize", "noise clamped to [−3, 3]",
     lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn_like(mu).clamp(-3, 3), "mean of ε⁴"),
    ("reparameterize", "noise of half the batch repeated",
     lambda mu, lv: mu + torch.exp(0.5 * lv) * _repeat_half(mu), "repeat the noise of another row"),
    ("reparameterize", "antithetic noise (−ε for the second half)",
     lambda mu, lv: mu + torch.exp(0.5 * lv) * _antithetic(mu), "repeat the noise of another row"),
    ("reparameterize", "|ε| shared by the dimensions of an example",
     lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn(mu.shape[0], 1, dtype=mu.dtype).abs()
     * torch.randn_like(mu).sign(), "got the same noise (up to sign)"),
    ("reparameterize", "noise of a few dimensions repeated",
     lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn(mu.shape[0], 3, dtype=mu.dtype).repeat(1, 2)[:, :mu.shape[1]],
     "got the same noise (up to sign)"),
    ("reparameterize", "uncorrelated noise whose sizes move together across examples",
     lambda mu, lv: mu + torch.exp(0.5 * lv) * _dependent_sizes(mu), "their sizes move together"),
    ("reparameterize", "noise re-seeded in the function",
     lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, generator=torch.Generator().manual_seed(0)),
     "fresh"),
    # elbo
    ("elbo", "no sampling (z = μ)", _elbo_with(torch.zeros_like), "is the same for all"),
    ("elbo", "exp(log σ²) as σ", _elbo_sigma_squared(), "exp(½ log σ²)"),
    ("elbo", "0.1 σ noise", _elbo_with(lambda mu: 0.1 * torch.randn_like(mu)), "varies too little"),
    ("elbo", "1.03 σ noise", _elbo_with(lambda mu: 1.03 * torch.randn_like(mu)), "varies too much"),
    ("elbo", "uniform noise", _elbo_with(torch.rand_like), "not torch.rand_like"),
    ("elbo", "one ε for the whole batch", _elbo_with(lambda mu: torch.randn(mu.shape[-1], dtype=mu.dtype)),
     "shared by the whole batch"),
    ("elbo", "KL added", _elbo_with(torch.randn_like, kl=lambda mu, lv: -_kl(mu, lv)), "KL is subtracted"),
    ("elbo", "reconstruction averaged over pixels",
     lambda model, x: _elbo_with(torch.randn_like, rec_scale=1 / x[0].numel())(model, x), "errata E9"),
    ("elbo", "KL with σ where σ² belongs",
     _elbo_with(torch.randn_like, kl=lambda mu, lv: (0.5 * (mu.pow(2) + torch.exp(0.5 * lv) - 1 - lv)).sum(-1)),
     "σ² = exp(log σ²) belongs"),
    ("elbo", "log σ² treated as log σ (noise and KL)", _elbo_logvar_as_logstd, "log σ² is the log-variance"),
    ("elbo", "KL estimated from z (not the closed form)", _elbo_mc_kl, "estimated the KL from the sampled z"),
    ("elbo", "KL estimated from z: valid, not the estimator asked for (R30)", _elbo_mc_kl,
     "a valid estimator of the ELBO, but not the one this exercise asks for"),
    ("elbo", "average over two samples of z (R30)", _elbo_two_samples,
     "average over 2 samples of z. That is a valid estimator of the ELBO, but not the one this exercise asks for"),
    ("elbo", "σ detached in the sample (R28, W26)", _elbo_sigma_detached, "σ gets no gradient through the sample"),
    ("elbo", "global generator re-seeded at every call (W29)", _elbo_reseeded, "the noise is not fresh"),
    ("elbo", "own generator created and seeded at every call",
     lambda model, x: losses.elbo(model, x, generator=torch.Generator().manual_seed(0)), "not fresh"),
    ("elbo", "two-level noise with N(0, 1)'s mean, variance and P(|ε| < 1)",
     _elbo_with(_two_level(math.sqrt(_FOUR_MOMENTS))), "your noise is not normal"),
    ("elbo", "two-level noise ±0.5 / ±1.62", _elbo_with(_two_level(0.5)), "your noise is not normal"),
    ("elbo", "z drawn by torch.normal (no gradient path through μ)",
     _elbo_torch_normal, "gradient of your ELBO with respect to the encoder"),
    ("elbo", "computed under torch.no_grad()", _elbo_no_grad, "carries no gradient"),
    # iwae_bound
    ("iwae_bound", "k − 1 samples, − log(k − 1)", _iwae_with(k_used=lambda k: k - 1, log_k="used"), "L_{k−1}"),
    ("iwae_bound", "k − 1 samples, − log k", _iwae_with(k_used=lambda k: k - 1), "one of the k samples is missing"),
    ("iwae_bound", "average of the k log-weights", _iwae_with(combine="mean"), "average of log w"),
    ("iwae_bound", "no − log k", lambda model, x, k: _iwae_with()(model, x, k) + math.log(k), "− log k"),
    ("iwae_bound", "one z reused k times",
     _iwae_with(noise=lambda k, mu: torch.randn_like(mu).expand(k, *mu.shape)), "reused"),
    ("iwae_bound", "one ε for the whole batch",
     _iwae_with(noise=lambda k, mu: torch.randn(k, 1, mu.shape[-1], dtype=mu.dtype)), "shared by the whole batch"),
    ("iwae_bound", "exp(log σ²) as σ when sampling", _iwae_with(sigma=torch.exp), "FAIL"),
    ("iwae_bound", "1.1 σ when sampling", _iwae_with(sigma=lambda lv: 1.1 * torch.exp(0.5 * lv)), "varies too"),
    ("iwae_bound", "sign flipped", lambda model, x, k: -_iwae_with()(model, x, k), "sign"),
    ("iwae_bound", "naive log(mean(exp(log w))) (W37)", _iwae_naive_log_mean_exp, "torch.logsumexp"),
    ("iwae_bound", "computed under torch.no_grad() (W38)", _iwae_no_grad, "carries no gradient"),
    ("iwae_bound", "z detached (W39)", _iwae_z_detached, "samples z detached from μ and σ"),
    ("iwae_bound", "σ detached when sampling", _iwae_with(sigma=lambda lv: torch.exp(0.5 * lv).detach()),
     "σ gets no gradient through the sample"),
    ("iwae_bound", "global generator re-seeded at every call", _iwae_reseeded, "the noise is not fresh"),
]


@pytest.mark.parametrize("name,label,fn,text", WRONG_STOCHASTIC,
                         ids=[f"{n}-{lab}" for n, lab, _, _ in WRONG_STOCHASTIC])
def test_wrong_stochastic_answers_fail_and_say_why(name, label, fn, text, capsys):
    state = torch.get_rng_state()
    assert getattr(check, name)(fn) is False
    out = capsys.readouterr().out
    assert out.startswith(f"check.{name}: FAIL on case '")
    assert text in out, out
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("seed", range(3))
def test_the_catalogued_mistakes_fail_whatever_the_generator(seed, capsys):
    """The three answers issue 10 found passing fail for every student generator."""
    g = torch.Generator().manual_seed(seed)

    def noise(mu):
        return torch.randn(mu.shape, generator=g, dtype=mu.dtype)

    assert not check.elbo(_elbo_with(lambda mu: 0 * noise(mu)))  # z = μ
    assert not check.elbo(_elbo_sigma_squared(noise))  # exp(log σ²) as σ
    assert not check.elbo(_elbo_with(lambda mu: 0.1 * noise(mu)))
    assert not check.reparameterize(lambda mu, lv: mu + 1.03 * torch.exp(0.5 * lv) * noise(mu))
    assert not check.iwae_bound(_iwae_with(k_used=lambda k: k - 1, log_k="used",
                                           noise=lambda k, mu: torch.randn(k, *mu.shape, generator=g,
                                                                           dtype=mu.dtype)))
    capsys.readouterr()


def test_exact_elbo_moments_match_the_linear_gaussian_closed_form():
    """The quadrature behind check.elbo against the closed form of a linear-Gaussian decoder.

    With z = μ + s ε and WᵀW = diag(c): log p(x|z) = const + (Σ_j a_j ε_j − ½ Σ_j c_j s_j² ε_j²)/σ²,
    a = s ⊙ Wᵀ(x − Wμ − b), so Var = (‖a‖² + ½ Σ_j c_j² s_j⁴)/σ⁴; the mean is LinearGaussian.elbo.
    """
    from vae_tutorial.check import (
        _IWAE_ALPHA,
        _elbo_moments,
        _exact_posterior_vae,
        _ppca_inputs,
    )

    inputs = _ppca_inputs(4, alpha=_IWAE_ALPHA, dtype=torch.float64)
    exact = _elbo_moments(inputs)
    _, ppca = _exact_posterior_vae(torch.float64, alpha=_IWAE_ALPHA)
    mu, logvar = inputs["model"].encode(inputs["x"])
    mu, logvar = mu.detach(), logvar.detach()
    w, b, noise_var = ppca.weight, ppca.bias, ppca.noise_var
    c = (w.T @ w).diagonal()
    assert torch.allclose(w.T @ w, torch.diag(c), atol=1e-12)
    s = torch.exp(0.5 * logvar)
    a = s * ((inputs["x"] - mu @ w.T - b) @ w)
    var = (a.pow(2).sum(-1) + 0.5 * (c.pow(2) * s.pow(4)).sum(-1)) / noise_var**2
    assert torch.allclose(exact.mean, ppca.elbo(inputs["x"], mu, logvar), rtol=1e-10, atol=1e-10)
    assert torch.allclose(exact.spreads["KL in closed form"][0], var, rtol=1e-9)


def test_exact_iwae_moments_match_independent_computations():
    """k = 1 in closed form; k = 2 by a 1-D identity; k = 3 by Monte Carlo (4·10⁶ draws, float64)."""
    from vae_tutorial.check import _log_mean_exp_moments

    alpha = 1.5
    assert _log_mean_exp_moments(alpha, 1) == (-alpha**2 / 2, alpha**2, 3 * alpha**4)
    # log((e^{αη₁} + e^{αη₂})/2) = α(η₁+η₂)/2 + log cosh(α(η₁−η₂)/2), two independent parts
    t, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / math.sqrt(2 * math.pi)
    lc = np.log(np.cosh(alpha * t / math.sqrt(2)))
    mean2, var2, _ = _log_mean_exp_moments(alpha, 2)
    assert mean2 == pytest.approx((w * lc).sum() - alpha**2 / 2, abs=1e-9)
    assert var2 == pytest.approx(alpha**2 / 2 + (w * lc**2).sum() - (w * lc).sum() ** 2, abs=1e-9)
    g = torch.Generator().manual_seed(0)
    draws = torch.logsumexp(alpha * torch.randn(4_000_000, 3, generator=g, dtype=torch.float64), -1)
    draws = draws - math.log(3) - alpha**2 / 2
    mean3, var3, m4 = _log_mean_exp_moments(alpha, 3)
    n = draws.numel()
    assert abs(draws.mean().item() - mean3) < 6 * math.sqrt(var3 / n)
    assert abs(draws.var().item() - var3) < 6 * math.sqrt((m4 - var3**2) / n)


def test_exact_gradient_law_matches_the_linear_gaussian_closed_form():
    """The quadrature behind the gradient cases against closed forms (review R28).

    With z = μ + s ε, WᵀW = diag(c), a = Wᵀ(x − Wμ − b)/σ²: one row's ∂/∂μ_j of the one-sample ELBO
    is a_j − c_j s_j ε_j/σ² − μ_j, and ∂/∂log σ²_j is ½ s_j a_j ε_j − ½ c_j s_j² ε_j²/σ² − ½(s_j² − 1).
    Their means are ∂ELBO/∂μ_j and ∂ELBO/∂log σ²_j = −½ c_j s_j²/σ² − ½(s_j² − 1); their variances
    c_j² s_j²/σ⁴ and ¼ s_j² a_j² + ½ c_j² s_j⁴/σ⁴. With σ detached in z only the KL's −½(s_j² − 1) is left.
    """
    from vae_tutorial.check import (
        _GRAD_LOGVAR,
        _IWAE_ALPHA,
        _exact_posterior_vae,
        _gradient_moments,
        _ppca_inputs,
    )

    reps = 1000
    inputs = _ppca_inputs(4, alpha=_IWAE_ALPHA, logvar=_GRAD_LOGVAR, dtype=torch.float64)
    _, ppca = _exact_posterior_vae(torch.float64)
    mu, logvar = (t.detach() for t in inputs["model"].encode(inputs["x"]))
    w, b, v = ppca.weight, ppca.bias, ppca.noise_var
    c = (w.T @ w).diagonal()
    s2 = logvar.exp()
    a = (inputs["x"] - mu @ w.T - b) @ w / v
    mean_mu, mean_lv = (a - mu).mean(0), (-0.5 * c * s2 / v - 0.5 * (s2 - 1)).mean(0)
    var_mu = (c**2 * s2 / v**2).expand_as(mu)
    var_lv = 0.25 * s2 * a**2 + 0.5 * c**2 * s2**2 / v**2
    se = (torch.cat([var_mu, var_lv], -1).sum(0) / (4 * 4 * reps)).sqrt()
    mean, got_se = _gradient_moments(inputs, reps, "closed")
    assert torch.allclose(mean, torch.cat([mean_mu, mean_lv]), rtol=1e-9, atol=1e-9)
    assert torch.allclose(got_se, se, rtol=1e-8)
    cut, _ = _gradient_moments(inputs, reps, "closed", "sigma")
    assert torch.allclose(cut[2:], (-0.5 * (s2 - 1)).mean(0), atol=1e-9)
    # k = 1 IWAE: the same expected gradient (E ∇ L₁ = ∇ ELBO); detached z: expected gradient 0
    assert torch.allclose(_gradient_moments(inputs, reps, "mc")[0], mean, atol=1e-9)
    assert torch.allclose(_gradient_moments(inputs, reps, "mc", "z")[0], torch.zeros(4, dtype=torch.float64),
                          atol=1e-9)


def test_kolmogorov_smirnov_distance_and_threshold():
    """_ks_distance is scipy's KS statistic; the threshold is the DKW bound at the z-tests' level."""
    from scipy import stats

    from vae_tutorial.check import _ALPHA, _KS_T, _ks_distance

    e = torch.randn(5000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    d, _ = _ks_distance(e)
    assert d == pytest.approx(stats.kstest(e.numpy(), "norm").statistic, abs=1e-12)
    assert 2 * math.exp(-2 * _KS_T**2) == pytest.approx(_ALPHA)
    assert _ALPHA == pytest.approx(2 * stats.norm.sf(6.0))


@pytest.mark.parametrize("seed", range(2))
def test_the_review_mistakes_fail_whatever_the_generator(seed, capsys):
    """R28/W26 (σ detached in the ELBO and in the bound) with a student's own generator; W12 (two-level noise)."""
    g = torch.Generator().manual_seed(seed)

    def noise(mu):
        return torch.randn(mu.shape, generator=g, dtype=mu.dtype)

    def sigma_detached(model, x):
        mu, lv = model.encode(x)
        return model.log_likelihood(x, model.decode(mu + torch.exp(0.5 * lv).detach() * noise(mu))) - _kl(mu, lv)

    assert not check.elbo(sigma_detached)
    assert "σ gets no gradient through the sample" in capsys.readouterr().out
    assert not check.iwae_bound(_iwae_with(noise=lambda k, mu: torch.randn(k, *mu.shape, generator=g,
                                                                          dtype=mu.dtype).detach(),
                                           sigma=lambda lv: torch.exp(0.5 * lv).detach()))
    assert "no gradient through the sample" in capsys.readouterr().out
    assert not check.reparameterize(lambda mu, lv: mu + torch.exp(0.5 * lv) * _two_level(0.3)(mu))
    assert "not normal" in capsys.readouterr().out
