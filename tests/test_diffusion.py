"""The diffusion model of chapter 16: fixed encoder, per-step KLs, unbiased estimate, bounds."""
from __future__ import annotations

import math

import pytest
import torch

import vae_tutorial as vt
from vae_tutorial.models.diffusion import (
    DiffusionModel,
    diffusion_bound,
    diffusion_kl,
    log_snr_schedule,
    posterior_params,
    transition_params,
)
from vae_tutorial.errors import ArgumentError


def tiny(shape=(4,), steps=5, seed=0, logsnr_min=-4.0, logsnr_max=3.0):
    """A tiny model whose learned correction f_θ is not zero (as after training)."""
    torch.manual_seed(seed)
    m = DiffusionModel(shape, steps=steps, hidden=8, logsnr_min=logsnr_min, logsnr_max=logsnr_max,
                       time_features=2)
    torch.nn.init.normal_(m.out.weight, std=1.0)
    torch.nn.init.normal_(m.out.bias, std=1.0)
    return m


def test_schedule_and_bad_arguments():
    lam = log_snr_schedule(10, -5.0, 3.0)
    assert lam.shape == (11,) and lam[0] == 3.0 and lam[-1] == -5.0
    assert bool((lam[1:] < lam[:-1]).all())
    with pytest.raises(ArgumentError, match="logsnr_max must exceed"):
        log_snr_schedule(10, 2.0, 1.0)
    with pytest.raises(ArgumentError, match="T"):
        log_snr_schedule(0)
    with pytest.raises(ArgumentError, match="steps"):
        DiffusionModel((4,), steps=0)
    m = tiny()
    x = torch.ones(3, 4)
    with pytest.raises(ArgumentError, match="t = 1"):
        m.diffusion_term(x, 0)
    with pytest.raises(ArgumentError, match="t must be"):
        m.q_sample(x, 6)
    with pytest.raises(ArgumentError, match="DiffusionModel"):
        diffusion_bound(vt.VAE(vt.MLPEncoder(4, [8], 2), vt.MLPDecoder(2, [8], 4)), x)


def test_composing_the_chain_gives_q_zt_given_x():
    lam = log_snr_schedule(8, -4.0, 3.0)
    a2, s2 = torch.sigmoid(lam), torch.sigmoid(-lam)
    # analytic: α_t = α_{t|t−1} α_{t−1} and σ_t² = α_{t|t−1}² σ_{t−1}² + σ_{t|t−1}²
    alpha, var = a2[0].sqrt(), s2[0]
    for t in range(1, 9):
        a_ts, s2_ts = transition_params(lam[t - 1], lam[t])
        alpha, var = a_ts * alpha, a_ts**2 * var + s2_ts
        assert torch.allclose(alpha, a2[t].sqrt(), atol=1e-12)
        assert torch.allclose(var, s2[t], atol=1e-12)
    # Monte Carlo: run the chain from z_0 ~ q(z_0|x), step by step
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([1.0, -1.0]).repeat(200_000, 1).double()
    z = a2[0].sqrt() * x + s2[0].sqrt() * torch.randn(x.shape, generator=g, dtype=torch.float64)
    for t in range(1, 9):
        a_ts, s2_ts = transition_params(lam[t - 1], lam[t])
        z = a_ts * z + s2_ts.sqrt() * torch.randn(z.shape, generator=g, dtype=torch.float64)
    mean, v = z.mean(0), z.var(0)
    expected = a2[-1].sqrt() * torch.tensor([1.0, -1.0], dtype=torch.float64)
    assert torch.allclose(mean, expected, atol=5 * math.sqrt(s2[-1] / 200_000))
    assert torch.allclose(v, s2[-1].expand(2), rtol=0.02)


def test_posterior_matches_gaussian_conjugacy():
    lam = log_snr_schedule(5, -3.0, 2.0)
    s, t = lam[2], lam[3]
    a2_s, s2_s = torch.sigmoid(s), torch.sigmoid(-s)
    a_ts, s2_ts = transition_params(s, t)
    z_t, x = torch.tensor([0.3, -1.2]).double(), torch.tensor([1.0, -1.0]).double()
    # q(z_s|z_t,x) ∝ N(z_s; α_s x, σ_s²) N(z_t; α_{t|s} z_s, σ_{t|s}²): precisions add
    prec = 1 / s2_s + a_ts**2 / s2_ts
    mean = (a2_s.sqrt() * x / s2_s + a_ts * z_t / s2_ts) / prec
    mu, var = posterior_params(z_t, x, s, t)
    assert torch.allclose(mu, mean) and torch.allclose(var, 1 / prec)


def test_step_kl_matches_torch_distributions():
    m = tiny()
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((6, 4), 0.5), generator=g)
    t = 3
    z, eps = m.q_sample(x, t, g)
    ls, lt = m.logsnr[t - 1].double(), m.logsnr[t].double()
    eps_hat = m.predict_eps(z, t).double()
    ours = diffusion_kl(eps.double(), eps_hat, ls, lt)
    a_t, s_t = torch.sigmoid(lt).sqrt(), torch.sigmoid(-lt).sqrt()
    x_hat = (z.double() - s_t * eps_hat) / a_t
    mu_q, var = posterior_params(z.double(), m.to_signal(x).double(), ls, lt)
    mu_p, _ = posterior_params(z.double(), x_hat, ls, lt)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu_q, var.sqrt()), torch.distributions.Normal(mu_p, var.sqrt())
    ).sum(-1)
    assert torch.allclose(ours, ref, rtol=1e-6, atol=1e-9)
    assert bool((ours > 0).all())
    # and the model's own term is the same number for the same noise
    assert torch.allclose(m.diffusion_term(x, t, eps=eps).double(), ours, rtol=1e-5)


def test_prior_kl_matches_torch_distributions():
    m = tiny()
    x = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    a2, s2 = torch.sigmoid(m.logsnr[-1]), torch.sigmoid(-m.logsnr[-1])
    q = torch.distributions.Normal(a2.sqrt() * (2 * x - 1), s2.sqrt())
    ref = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(-1)
    assert torch.allclose(m.prior_kl(x), ref, rtol=1e-5)


def test_training_estimate_is_unbiased_for_the_full_sum():
    m = tiny(steps=6)
    n = 40_000
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]]).expand(n, 4)
    with torch.no_grad():
        est = m.elbo_terms(x, generator=torch.Generator().manual_seed(2))
        sampled = est.kl - m.prior_kl(x)  # T · L_t at one uniform t per row
        full = sum(m.diffusion_term(x, t, torch.Generator().manual_seed(100 + t))
                   for t in range(1, 7))
    se = math.sqrt(sampled.var() / n + full.var() / n)
    assert abs(float(sampled.mean() - full.mean())) < 4 * se
    # the estimate is noisier than the full sum, which is why evaluation uses the full sum
    assert sampled.var() > full.var()


def test_bound_is_a_bound_on_a_one_pixel_model():
    """Over x ∈ {0, 1}, Σ_x p(x) = 1: so Σ_x exp(ELBO(x)) ≤ 1, and E[w] = p(x) sums to 1."""
    m = tiny(shape=(1,), steps=4, logsnr_min=-3.0, logsnr_max=1.0)
    xs = torch.tensor([[0.0], [1.0]])
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        big = xs.repeat_interleave(20_000, 0)
        elbo = -diffusion_bound(m, big, seed=3, batch_size=40_000)["per_example"].view(2, -1).mean(1)
        log_w = next(m.log_importance_weights(xs, 200_000, generator=g))  # (k, 2)
    p = log_w.double().exp().mean(0)  # unbiased estimates of p(x=0), p(x=1)
    se = log_w.double().exp().std(0) / math.sqrt(200_000)
    assert abs(float(p.sum()) - 1.0) < 4 * float(se.pow(2).sum().sqrt())
    assert float(elbo.exp().sum()) < 1.0
    assert bool((elbo.exp() < p).all())  # the bound is below the likelihood for each x
    iwae = vt.iwae_bound(m, xs, 1000, generator=g)
    assert bool((iwae > elbo - 0.05).all()) and bool((iwae < p.log() + 0.05).all())


def test_shapes_seeding_gradients_and_fit():
    m = tiny(shape=(1, 2, 2))
    x = torch.bernoulli(torch.full((5, 1, 2, 2), 0.5), generator=torch.Generator().manual_seed(0))
    t1 = vt.elbo(m, x, generator=torch.Generator().manual_seed(7))
    t2 = vt.elbo(m, x, generator=torch.Generator().manual_seed(7))
    assert t1.elbo.shape == (5,) and torch.equal(t1.elbo, t2.elbo) and t1.kl_per_dim is None
    (-t1.elbo.mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    s1 = m.sample(3, generator=torch.Generator().manual_seed(1))
    s2, chain = m.sample(3, generator=torch.Generator().manual_seed(1), return_chain=True)
    assert s1.shape == (3, 1, 2, 2) and torch.equal(s1, s2) and len(chain) == m.steps
    assert bool(((s1 >= 0) & (s1 <= 1)).all())
    mu, logvar = m.encode(x)
    assert mu.shape == logvar.shape == (5, 4) and m.reconstruct(x).shape == x.shape
    h = vt.fit(m, torch.utils.data.TensorDataset(x.repeat(20, 1, 1, 1)), epochs=1,
               batch_size=25, progress=False)
    assert len(h) == 1 and math.isfinite(h["train_elbo"][0])
    b = diffusion_bound(m, x, seed=0)
    assert b["per_step"].shape == (m.steps,) and b["n"] == 5
    total = b["prior"] + b["diffusion"] + b["reconstruction"]
    assert math.isclose(total, b["nll_bound"], rel_tol=1e-9)
    assert math.isclose(b["bits_per_dim"], b["nll_bound"] / (4 * math.log(2)), rel_tol=1e-9)


def test_untrained_model_is_the_uniform_pixel_model_in_the_limit():
    """f_θ = 0 predicts E[x̃|z_t] for independent uniform pixels; with many steps the
    bound approaches D log 2 from above, with few steps it is looser."""
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((200, 3), 0.5), generator=torch.Generator().manual_seed(0))
    bounds = {}
    for steps in (5, 200):
        m = DiffusionModel((3,), steps=steps, hidden=4, logsnr_min=-7.0, logsnr_max=5.0)
        bounds[steps] = diffusion_bound(m, x, seed=0)["nll_bound"]
    assert bounds[5] > bounds[200] > 3 * math.log(2) - 0.05
    assert bounds[200] < 3 * math.log(2) + 0.15
