"""AIS and bidirectional Monte Carlo (vae_tutorial.evaluation.ais) against exact log-likelihoods.

References: a linear-Gaussian model, log p(x) = log N(x; b, WWᵀ + s²I) in closed form and the
exact posterior N(M⁻¹Wᵀ(x − b), s²M⁻¹); a 1-D latent model with Bernoulli pixels, log p(x) by
Gauss–Hermite quadrature (200 nodes); and T = 1, where AIS is importance sampling.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vae_tutorial as vt
from vae_tutorial.evaluation.ais import (
    ais,
    ais_log_likelihood,
    bdmc,
    hmc_step,
    sigmoid_schedule,
    simulate,
)
from vae_tutorial.errors import ArgumentError, ArgumentTypeError

D, Z, S2 = 6, 2, 0.1


def linear_gaussian(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = 1.5 * torch.randn(D, Z, generator=g, dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64)
    z = torch.randn(n, Z, generator=g, dtype=torch.float64)
    x = z @ w.T + b + math.sqrt(S2) * torch.randn(n, D, generator=g, dtype=torch.float64)
    cov = w @ w.T + S2 * torch.eye(D, dtype=torch.float64)
    exact = torch.distributions.MultivariateNormal(b, cov).log_prob(x)
    prec = torch.eye(Z, dtype=torch.float64) + w.T @ w / S2
    post_cov = torch.linalg.inv(prec)
    post_mean = (x - b) @ w @ post_cov / S2

    def log_lik(zz):
        return -0.5 * ((x - zz @ w.T - b) ** 2 / S2 + math.log(2 * math.pi * S2)).sum(-1)
    return x, z, exact, log_lik, post_mean, post_cov


def test_sigmoid_schedule():
    b = sigmoid_schedule(10)
    assert b.shape == (11,) and b[0] == 0 and b[-1] == 1 and bool((b.diff() > 0).all())
    assert b.diff()[0] < b.diff()[5] and b.diff()[-1] < b.diff()[5]  # small steps at both ends


def test_one_step_ais_is_importance_sampling():
    _x, _z, _exact, log_lik, *_ = linear_gaussian(5)
    zeros = torch.zeros(5, Z, dtype=torch.float64)
    z0 = torch.randn(5, Z, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    r = ais(log_lik, torch.tensor([0.0, 1.0]), start_mean=zeros, start_logvar=zeros, z=z0)
    assert torch.allclose(r.log_weight, log_lik(z0))  # prior start: W = p(x|z_0)
    mean, lv = torch.full((5, Z), 0.3, dtype=torch.float64), torch.full((5, Z), -0.5, dtype=torch.float64)
    r = ais(log_lik, torch.tensor([0.0, 1.0]), start_mean=mean, start_logvar=lv, z=z0)
    log_q = torch.distributions.Normal(mean, torch.exp(0.5 * lv)).log_prob(z0).sum(-1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z0).sum(-1)
    assert torch.allclose(r.log_weight, log_lik(z0) + log_p - log_q)  # W = p(x, z)/q(z)


def test_hmc_leaves_the_posterior_invariant():
    n = 4000  # one x per row, each with its exact posterior N(post_mean_i, post_cov)
    _x, _, _, log_lik, post_mean, post_cov = linear_gaussian(n, seed=3)
    chol = torch.linalg.cholesky(post_cov)
    g = torch.Generator().manual_seed(2)
    z = post_mean + torch.randn(n, Z, generator=g, dtype=torch.float64) @ chol.T

    def log_density(zz):  # log p(z) + log p(x|z), gradient by autograd
        zz = zz.detach().requires_grad_(True)
        with torch.enable_grad():
            v = -0.5 * (zz**2).sum(-1) + log_lik(zz)
            gr, = torch.autograd.grad(v.sum(), zz)
        return v.detach(), gr

    v, gr = log_density(z)
    rates = []
    for _ in range(30):
        z, v, gr, acc = hmc_step(log_density, z, v, gr, 0.3 * post_cov.diagonal().sqrt(), 5, g)
        rates.append(acc.double().mean().item())
    assert 0.5 < np.mean(rates) < 1.0  # it moved, and not always
    r = z - post_mean  # should still be N(0, post_cov)
    se = (post_cov.diagonal() / n).sqrt()
    assert (r.mean(0).abs() < 5 * se).all()
    sd = post_cov.diagonal().sqrt()
    tol = 5 * math.sqrt(2 / n) * torch.outer(sd, sd)  # s.e. of a sample covariance, roughly
    assert ((torch.cov(r.T) - post_cov).abs() < tol).all()


@pytest.mark.parametrize("start", ["prior", "posterior-ish"])
def test_bdmc_sandwiches_the_exact_log_likelihood_and_closes_with_more_steps(start):
    n = 300
    _x, z, exact, log_lik, post_mean, post_cov = linear_gaussian(n)
    scale = post_cov.diagonal().sqrt().expand(n, Z)
    if start == "prior":
        mean = lv = torch.zeros(n, Z, dtype=torch.float64)
    else:  # a rough encoder: the posterior mean shifted, twice its variance
        mean, lv = post_mean + 0.3 * scale, torch.log(2 * scale**2)
    errors = {}
    for steps in (10, 500):
        g = torch.Generator().manual_seed(steps)
        kw = {"start_mean": mean, "start_logvar": lv, "posterior_scale": scale, "generator": g}
        lower = ais(log_lik, sigmoid_schedule(steps), **kw).log_weight - exact
        upper = -ais(log_lik, sigmoid_schedule(steps), z=z, reverse=True, **kw).log_weight - exact
        se_l, se_u = lower.std() / math.sqrt(n), upper.std() / math.sqrt(n)
        assert lower.mean() < 3 * se_l and upper.mean() > -3 * se_u  # the sandwich, within noise
        errors[steps] = (lower.mean().item(), upper.mean().item())
    assert errors[500][1] - errors[500][0] < 0.5 * (errors[10][1] - errors[10][0])  # closes
    assert errors[500][1] - errors[500][0] < 0.35  # nats, from several nats at T = 10


def test_bdmc_on_a_nonlinear_model_against_quadrature():
    # p(z) = N(0, 1), 8 Bernoulli pixels with logits a_d z + c_d: log p(x) by quadrature
    torch.manual_seed(0)
    a = 3 * torch.randn(8, 1, dtype=torch.float64)
    c = torch.randn(8, dtype=torch.float64)

    class Dec(torch.nn.Module):
        latent_dim = 1

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(1, 8).double()
            with torch.no_grad():
                self.lin.weight.copy_(a)
                self.lin.bias.copy_(c)

        def forward(self, z):
            return self.lin(z)

    class Enc(torch.nn.Module):  # a poor amortised guess: N(0, 0.25)
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 2).double()
            with torch.no_grad():
                self.lin.weight.zero_()
                self.lin.bias.copy_(torch.tensor([0.0, math.log(0.25)]))

        def forward(self, x):
            out = self.lin(x)
            return out[:, :1], out[:, 1:]

    model = vt.VAE(Enc(), Dec()).double()
    n = 200
    x, z = simulate(model, n, torch.Generator().manual_seed(1))
    assert set(x.unique().tolist()) <= {0.0, 1.0} and z.shape == (n, 1)
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    zq = torch.tensor(nodes, dtype=torch.float64)[:, None]
    lw = torch.log(torch.tensor(weights / math.sqrt(2 * math.pi), dtype=torch.float64))
    logits = zq @ a.T + c  # (Q, 8)
    ll = x @ logits.T - torch.nn.functional.softplus(logits).sum(-1)  # (n, Q)
    exact = torch.logsumexp(ll + lw, dim=1)
    for start in ("prior", "encoder"):
        r = bdmc(model, x, z, chains=2, steps=100, start=start, generator=torch.Generator().manual_seed(2))
        lo, up = r["lower"] - exact, r["upper"] - exact
        assert lo.mean() < 3 * lo.std() / math.sqrt(n) and up.mean() > -3 * up.std() / math.sqrt(n)
        assert (up - lo).mean() < 0.1, (start, (up - lo).mean())
        assert r["acceptance_forward"] > 0.5 and r["acceptance_reverse"] > 0.5
    est = ais_log_likelihood(model, x[:10], chains=3, steps=20, generator=torch.Generator().manual_seed(3))
    assert est["log_px"].shape == (10,) and est["log_weights"].shape == (3, 10)
    assert torch.allclose(est["log_px"], torch.logsumexp(est["log_weights"], 0) - math.log(3))


def test_ais_refuses_bad_arguments():
    _x, _z, _exact, log_lik, *_ = linear_gaussian(3)
    zeros = torch.zeros(3, Z, dtype=torch.float64)
    with pytest.raises(ArgumentError, match="betas must increase"):
        ais(log_lik, torch.tensor([0.0, 0.5]), start_mean=zeros, start_logvar=zeros)
    with pytest.raises(ArgumentError, match="reverse AIS starts from exact posterior samples"):
        ais(log_lik, sigmoid_schedule(3), start_mean=zeros, start_logvar=zeros, reverse=True)
    with pytest.raises(ArgumentTypeError, match="log_likelihood must be a function"):
        ais(3, sigmoid_schedule(3), start_mean=zeros, start_logvar=zeros)
    vae = vt.VAE(vt.MLPEncoder((D,), [4], Z), vt.MLPDecoder(Z, [4], (D,)))
    xb = torch.zeros(3, D)
    with pytest.raises(ArgumentError, match="one exact posterior sample per example"):
        bdmc(vae, xb, torch.zeros(2, Z))
    with pytest.raises(ArgumentError, match="start must be"):
        ais_log_likelihood(vae, xb, start="uniform")
    with pytest.raises(ArgumentError, match="steps must"):
        ais_log_likelihood(vae, xb, steps=0)
    with pytest.raises(ArgumentTypeError, match="Bernoulli or Gaussian"):
        simulate(vt.VAE(vt.MLPEncoder((D,), [4], Z), vt.MLPDecoder(Z, [4], (D,)), "continuous_bernoulli"), 2)
