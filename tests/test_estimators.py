"""STL, DReG and reweighted wake–sleep surrogates (vae_tutorial.maths.estimators), against references.

References: vt.iwae_bound with the same noise (values, decoder gradients, the IWAE encoder
gradient); the estimators' formulas written out with autograd pieces (∂log w/∂z on a leaf z,
∂z/∂(μ, log σ²) = (1, ½σε), the Gaussian score in closed form); the exact posterior of a
linear-Gaussian model (STL and DReG are exactly 0 there); and the exact gradient of E[L_3]
by Gauss–Hermite quadrature over ε on a 1-D model (DReG and IWAE unbiased, STL biased).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import vae_tutorial as vt
from vae_tutorial.errors import ArgumentError, ArgumentTypeError
from vae_tutorial.maths.estimators import (
    ESTIMATORS,
    SurrogateCheckError,
    check_dreg_surrogate,
    iwae_surrogate,
)
from vae_tutorial.analysis.gradient_snr import iwae_gradient_snr

D, Z = 6, 2


def mlp_vae(seed=0, likelihood="bernoulli"):
    torch.manual_seed(seed)
    kw = {"gaussian_logvar": -1.0} if likelihood == "gaussian" else {}
    vae = vt.VAE(vt.MLPEncoder((D,), [8], Z), vt.MLPDecoder(Z, [8], (D,)), likelihood, **kw).double()
    with torch.no_grad():
        for p in vae.parameters():
            p.mul_(1.5)
    return vae


def data(b=4, seed=1, binary=True):
    x = torch.rand(b, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x.round() if binary else x


def enc_dec(model):
    return list(model.encoder.parameters()), list(model.decoder.parameters())


def flat(gs):
    return torch.cat([g.reshape(-1) for g in gs])


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_value_and_decoder_gradient_are_the_iwae_bounds(estimator):
    model, x = mlp_vae(), data()
    _enc, dec = enc_dec(model)
    for k in (1, 5):
        ref = vt.iwae_bound(model, x, k, generator=torch.Generator().manual_seed(3))
        out = iwae_surrogate(model, x, k, estimator, generator=torch.Generator().manual_seed(3))
        assert torch.allclose(out, ref, rtol=1e-10, atol=1e-10)
        g_ref = flat(torch.autograd.grad(ref.sum(), dec))
        g_out = flat(torch.autograd.grad(out.sum(), dec))
        assert torch.allclose(g_out, g_ref, rtol=1e-8, atol=1e-10)


def test_the_iwae_estimator_is_the_gradient_of_the_bound():
    model, x = mlp_vae(), data()
    enc, _ = enc_dec(model)
    ref = vt.iwae_bound(model, x, 7, generator=torch.Generator().manual_seed(4))
    out = iwae_surrogate(model, x, 7, "iwae", generator=torch.Generator().manual_seed(4))
    assert torch.allclose(flat(torch.autograd.grad(out.sum(), enc)),
                          flat(torch.autograd.grad(ref.sum(), enc)), rtol=1e-8, atol=1e-10)


def by_hand(model, x, k, noise, estimator):
    """The encoder gradient of each estimator, from its formula and autograd pieces."""
    enc, _ = enc_dec(model)
    mu, logvar = model.encode(x)
    sigma = torch.exp(0.5 * logvar.detach())
    z = (mu.detach() + sigma * noise).requires_grad_(True)  # (K, B, Z) leaf
    flat_z = z.reshape(-1, Z)
    xr = x.repeat(k, 1)
    # log q_φ(z|x) as a function of z, with φ fixed
    log_q = -0.5 * (math.log(2 * math.pi) + logvar.detach() + (z - mu.detach()) ** 2 / sigma**2).sum(-1)
    log_w = (model.log_likelihood(xr, model.decode(flat_z)).view(k, -1)
             - 0.5 * (math.log(2 * math.pi) + z**2).sum(-1) - log_q)
    w = torch.softmax(log_w.detach(), 0).unsqueeze(-1)  # (K, B, 1)
    if estimator == "rws":  # Σ w̃ ∇ log q(z_i) at fixed z: closed-form Gaussian score
        d = (z.detach() - mu.detach())
        g_mu = (w * d / sigma**2).sum(0)
        g_lv = (w * (-0.5 + 0.5 * d**2 / sigma**2)).sum(0)
    else:
        dlogw_dz, = torch.autograd.grad(log_w.sum(), z)
        coef = w**2 if estimator == "dreg" else w
        g_mu = (coef * dlogw_dz).sum(0)  # ∂z/∂μ = 1
        g_lv = (coef * dlogw_dz * 0.5 * sigma * noise).sum(0)  # ∂z/∂log σ² = ½ σ ε
    return flat(torch.autograd.grad((mu, logvar), enc, grad_outputs=(g_mu, g_lv)))


@pytest.mark.parametrize("estimator", ["stl", "dreg", "rws"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_encoder_gradient_equals_the_formula(estimator, likelihood):
    model, x = mlp_vae(2, likelihood), data(binary=likelihood == "bernoulli")
    enc, _ = enc_dec(model)
    for k in (1, 4):
        noise = torch.randn(k, 4, Z, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
        out = iwae_surrogate(model, x, k, estimator, noise=noise)
        got = flat(torch.autograd.grad(out.sum(), enc))
        assert torch.allclose(got, by_hand(model, x, k, noise, estimator), rtol=1e-8, atol=1e-10)
    # the estimators really differ at k = 4 (the test would pass for identical code otherwise)
    noise = torch.randn(4, 4, Z, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    grads = {e: flat(torch.autograd.grad(iwae_surrogate(model, x, 4, e, noise=noise).sum(), enc))
             for e in ESTIMATORS}
    assert all(not torch.allclose(grads[a], grads[b]) for a in ESTIMATORS for b in ESTIMATORS if a < b)


class LinearDecoder(nn.Module):
    def __init__(self, w, b):
        super().__init__()
        self.lin = nn.Linear(w.shape[1], w.shape[0]).double()
        with torch.no_grad():
            self.lin.weight.copy_(w)
            self.lin.bias.copy_(b)
        self.latent_dim = w.shape[1]

    def forward(self, z):
        return self.lin(z)


class LinearEncoder(nn.Module):
    def __init__(self, a, c, logvar):
        super().__init__()
        self.lin = nn.Linear(a.shape[1], a.shape[0]).double()
        with torch.no_grad():
            self.lin.weight.copy_(a)
            self.lin.bias.copy_(c)
        self.logvar = nn.Parameter(logvar.clone())

    def forward(self, x):
        mu = self.lin(x)
        return mu, self.logvar.expand_as(mu)


def exact_posterior_vae(shift=0.0):
    """p(z) = N(0, I), p(x|z) = N(Wz + b, s² I) with WᵀW diagonal: the exact posterior is
    diagonal, N(M⁻¹Wᵀ(x − b), s² M⁻¹) with M = WᵀW + s² I, and the encoder computes it."""
    s2 = 0.3
    q, _ = torch.linalg.qr(torch.randn(D, Z, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    w = q * torch.tensor([1.5, 0.7], dtype=torch.float64)
    b = torch.linspace(-1, 1, D, dtype=torch.float64)
    m = torch.diag(w.T @ w) + s2
    a = w.T / m[:, None]
    enc = LinearEncoder(a, -a @ b + shift, torch.log(s2 / m))
    return vt.VAE(enc, LinearDecoder(w, b), "gaussian", gaussian_logvar=math.log(s2)).double()


def test_stl_and_dreg_stick_the_landing_at_the_exact_posterior():
    model, x = exact_posterior_vae(), 2 * data(binary=False) - 1
    enc, _ = enc_dec(model)
    g = torch.Generator().manual_seed(0)
    for k in (1, 8):
        noise = torch.randn(k, 4, Z, generator=g, dtype=torch.float64)
        out = iwae_surrogate(model, x, k, "iwae", noise=noise)
        # every log w is log p(x): the bound is exact for every draw
        exact = torch.distributions.MultivariateNormal(
            model.decoder.lin.bias, model.decoder.lin.weight @ model.decoder.lin.weight.T
            + 0.3 * torch.eye(D, dtype=torch.float64)).log_prob(x)
        assert torch.allclose(out, exact, atol=1e-9)
        iwae = flat(torch.autograd.grad(out.sum(), enc))
        assert iwae.abs().max() > 1e-2  # the score term: noise with mean 0
        for est in ("stl", "dreg"):
            zero = flat(torch.autograd.grad(iwae_surrogate(model, x, k, est, noise=noise).sum(), enc))
            assert zero.abs().max() < 1e-6 * iwae.abs().max()  # round-off only


class RowEncoder(nn.Module):
    """q(z|x) with its own (μ, log σ²) per row, as leaf tensors: per-row gradients by autograd."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.rows = None

    def forward(self, x):
        return self.rows


def test_dreg_and_iwae_are_unbiased_and_stl_is_biased_at_k3():
    # 1-D model: p(z) = N(0, 1), p(x|z) = N(a z, s²), q = N(m, e^lv) away from the posterior.
    a, s2, xval, m, lv, k = 2.0, 0.5, 1.3, 0.2, math.log(0.6), 3
    dec = LinearDecoder(torch.tensor([[a]], dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    model = vt.VAE(RowEncoder(), dec, "gaussian", gaussian_logvar=math.log(s2)).double()

    # exact ∇_(m, lv) E[L_3] by Gauss–Hermite quadrature over (ε_1, ε_2, ε_3) (30 nodes each)
    nodes, weights = np.polynomial.hermite_e.hermegauss(30)
    e = torch.tensor(nodes, dtype=torch.float64)
    wq = torch.tensor(weights / math.sqrt(2 * math.pi), dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(e, e, e, indexing="ij"), -1).reshape(-1, 3)
    wgrid = (wq[:, None, None] * wq[None, :, None] * wq[None, None, :]).reshape(-1)
    mt = torch.tensor(m, dtype=torch.float64, requires_grad=True)
    lt = torch.tensor(lv, dtype=torch.float64, requires_grad=True)
    zq = mt + torch.exp(0.5 * lt) * grid

    def normal(v, mean, var):
        return -0.5 * (math.log(2 * math.pi) + torch.log(torch.as_tensor(var)) + (v - mean) ** 2 / var)

    logw = normal(xval, a * zq, s2) + normal(zq, 0.0, 1.0) - normal(zq, mt, torch.exp(lt))
    expected = (wgrid * (torch.logsumexp(logw, 1) - math.log(k))).sum()
    exact = torch.stack(torch.autograd.grad(expected, (mt, lt)))

    n = 40_000
    x = torch.full((n, 1), xval, dtype=torch.float64)
    means = {}
    for est in ("iwae", "stl", "dreg"):
        mu = torch.full((n, 1), m, dtype=torch.float64, requires_grad=True)
        logvar = torch.full((n, 1), lv, dtype=torch.float64, requires_grad=True)
        model.encoder.rows = (mu, logvar)
        out = iwae_surrogate(model, x, k, est, generator=torch.Generator().manual_seed(11))
        g = torch.cat(torch.autograd.grad(out.sum(), (mu, logvar)), 1)  # (n, 2): one draw per row
        z = (g.mean(0) - exact) / (g.std(0) / math.sqrt(n))
        means[est] = z
    assert means["iwae"].abs().max() < 5, means
    assert means["dreg"].abs().max() < 5, means
    assert means["stl"].abs().max() > 10, means  # the dropped score term has a non-zero mean at k > 1


def test_gradient_snr_takes_an_estimator_and_shares_the_decoder_gradient():
    model, x = mlp_vae(), data()
    r = {e: iwae_gradient_snr(model, x, 4, repeats=6, generator=torch.Generator().manual_seed(0), estimator=e)
         for e in ESTIMATORS}
    for e in ESTIMATORS:
        assert r[e]["estimator"] == e
        assert torch.allclose(r[e]["decoder"], r["iwae"]["decoder"], rtol=1e-6, equal_nan=True)
    assert not torch.allclose(r["dreg"]["encoder"], r["iwae"]["encoder"], equal_nan=True)
    with pytest.raises(ArgumentError, match="estimator"):
        iwae_gradient_snr(model, x, 4, repeats=2, estimator="reinforce")


def my_dreg(model, x, k, noise):
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * noise
    xr = x.unsqueeze(0).expand(k, *x.shape).reshape(-1, *x.shape[1:])
    log_px = model.log_likelihood(xr, model.decode(z.reshape(-1, z.shape[-1]))).view(k, -1)
    log_pz = -0.5 * (math.log(2 * math.pi) + z**2).sum(-1)
    log_q = -0.5 * (math.log(2 * math.pi) + logvar.detach()
                    + (z - mu.detach()) ** 2 / logvar.detach().exp()).sum(-1)
    log_w = log_px + log_pz - log_q
    w = torch.softmax(log_w.detach(), 0)
    value = torch.logsumexp(log_w.detach(), 0) - math.log(k)
    # θ: w̃ log w with z detached; φ: w̃² log w with θ's path cut by a second decoder pass
    zd = z.detach()
    log_px_d = model.log_likelihood(xr, model.decode(zd.reshape(-1, zd.shape[-1]))).view(k, -1)
    dec_part = (w * log_px_d).sum(0)
    enc_params = list(model.decoder.parameters())
    for p in enc_params:
        p.requires_grad_(False)
    try:
        log_px_e = model.log_likelihood(xr, model.decode(z.reshape(-1, z.shape[-1]))).view(k, -1)
    finally:
        for p in enc_params:
            p.requires_grad_(True)
    enc_part = (w**2 * (log_px_e + log_pz - log_q)).sum(0)
    s = dec_part + enc_part
    return value + s - s.detach()


def test_check_dreg_surrogate_passes_an_independent_implementation(capsys):
    assert check_dreg_surrogate(my_dreg) is True
    assert "PASS" in capsys.readouterr().out


def test_check_dreg_surrogate_names_the_mistake():
    with pytest.raises(SurrogateCheckError, match="sticking-the-landing"):
        check_dreg_surrogate(lambda m, x, k, n: iwae_surrogate(m, x, k, "stl", noise=n))
    with pytest.raises(SurrogateCheckError, match="score term"):
        check_dreg_surrogate(lambda m, x, k, n: iwae_surrogate(m, x, k, "iwae", noise=n))
    with pytest.raises(SurrogateCheckError, match="values"):
        check_dreg_surrogate(lambda m, x, k, n: 2 * iwae_surrogate(m, x, k, "dreg", noise=n))
    with pytest.raises(SurrogateCheckError, match=r"\(5,\)"):
        check_dreg_surrogate(lambda m, x, k, n: iwae_surrogate(m, x, k, "dreg", noise=n).mean())
    with pytest.raises(SurrogateCheckError, match="no gradient"):
        check_dreg_surrogate(lambda m, x, k, n: iwae_surrogate(m, x, k, "dreg", noise=n).detach())
    with pytest.raises(SurrogateCheckError, match="raised ZeroDivisionError"):
        check_dreg_surrogate(lambda m, x, k, n: 1 / 0)
    with pytest.raises(ArgumentTypeError, match="fn must be a function"):
        check_dreg_surrogate(3)


def test_iwae_surrogate_refuses_bad_arguments():
    model, x = mlp_vae(), data()
    with pytest.raises(ArgumentError, match="estimator must be one of"):
        iwae_surrogate(model, x, 2, "vimco")
    with pytest.raises(ArgumentError, match="noise must be"):
        iwae_surrogate(model, x, 2, noise=torch.zeros(3, 4, Z))
    with pytest.raises(ArgumentError, match="k must"):
        iwae_surrogate(model, x, 0)
    cvae = vt.ConditionalVAE(vt.MLPEncoder((D,), [8], Z), vt.MLPDecoder(Z, [8], (D,)), num_classes=3)
    with pytest.raises(ArgumentTypeError, match="iwae_surrogate"):
        iwae_surrogate(cvae, x.float(), 2)
