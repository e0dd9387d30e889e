"""vae_tutorial.check: the homework checks accept correct answers and reject the usual mistakes."""
import math

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


CORRECT = {
    "kl_standard_normal": [losses.kl_standard_normal,
                           lambda mu, lv: -0.5 * (1 + lv - mu.pow(2) - lv.exp()).sum(-1)],
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
    ("reparameterize", lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.rand_like(mu), "not N(0, 1)"),
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
