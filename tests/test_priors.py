"""The VampPrior and the prior-aware ELBO surgery, against brute-force references."""
import math

import pytest
import torch

import vae_tutorial as vt
from vae_tutorial.analysis.aggregate_posterior import elbo_surgery
from vae_tutorial.errors import ArgumentError
from vae_tutorial.models.priors import VampPriorVAE, log_mixture_density


def _model(k=5, seed=0):
    torch.manual_seed(seed)
    return VampPriorVAE(vt.MLPEncoder(6, [16], 2), vt.MLPDecoder(2, [16], 6), pseudo_inputs=k).double()


def test_log_mixture_density_matches_a_direct_sum():
    g = torch.Generator().manual_seed(0)
    z, mu = torch.randn(11, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    lv = 0.5 * torch.randn(4, 3, generator=g, dtype=torch.float64)
    dens = torch.zeros(11, dtype=torch.float64)
    for m, v in zip(mu, lv):
        dens += torch.distributions.MultivariateNormal(m, torch.diag(v.exp())).log_prob(z).exp() / 4
    assert torch.allclose(log_mixture_density(z, mu, lv), dens.log())
    far = log_mixture_density(100 + z, mu, lv)  # densities underflow; logsumexp does not
    assert torch.isfinite(far).all()


def test_prior_is_the_encoder_mixture_at_pseudo_inputs_and_integrates_to_one():
    model = _model()
    mu, lv = model.encode(torch.sigmoid(model.pseudo_logits))
    got_mu, got_lv = model.prior_components()
    assert torch.allclose(mu, got_mu) and torch.allclose(lv, got_lv)
    t = torch.linspace(-12, 12, 801, dtype=torch.float64)
    with torch.no_grad():
        dens = model.prior_log_prob(torch.cartesian_prod(t, t)).exp()
    mass = dens.sum() * (t[1] - t[0]) ** 2
    assert abs(mass.item() - 1) < 1e-3


def test_prior_samples_follow_the_mixture():
    model = _model(k=3)
    with torch.no_grad():
        z = model.prior_sample(200000, torch.Generator().manual_seed(0))
        mu, lv = model.prior_components()
    assert torch.allclose(z.mean(0), mu.mean(0), atol=0.01)
    second = (lv.exp() + mu ** 2).mean(0)  # E[z²] of an equal-weight mixture
    assert torch.allclose(z.pow(2).mean(0), second, rtol=0.02)


def test_elbo_terms_and_exact_log_px_in_2d():
    model = _model()
    x = (torch.rand(3, 6, generator=torch.Generator().manual_seed(2)) > 0.5).double()
    t = torch.linspace(-9, 9, 601, dtype=torch.float64)
    zz = torch.cartesian_prod(t, t)
    with torch.no_grad():
        logits = model.decode(zz)
        ll = x @ logits.T - torch.nn.functional.softplus(logits).sum(-1)
        exact = torch.logsumexp(ll + model.prior_log_prob(zz), 1) + 2 * math.log(t[1] - t[0])
        el = torch.stack([vt.elbo(model, x, generator=torch.Generator().manual_seed(i)).elbo
                          for i in range(2000)])
        bound = vt.iwae_bound(model, x, 5000, generator=torch.Generator().manual_seed(0))
    assert (el.mean(0) < exact).all()
    assert (bound > el.mean(0)).all() and (bound < exact + 0.05).all()
    # the ELBO's KL is the one-draw estimate of KL(q‖p): its average is non-negative
    kl = torch.stack([vt.elbo(model, x).kl for _ in range(2000)]).mean(0)
    assert (kl > 0).all()


def test_fit_learns_pseudo_inputs_and_they_get_gradients():
    torch.manual_seed(0)
    data = (torch.rand(64, 1, 4, 4) > 0.5).float()
    model = VampPriorVAE(vt.MLPEncoder((1, 4, 4), [16], 2), vt.MLPDecoder(2, [16], (1, 4, 4)),
                         pseudo_inputs=data[:4])
    start = model.pseudo_inputs().detach().clone()
    assert torch.allclose(start, data[:4].clamp(0.05, 0.95))  # started at the images
    vt.elbo(model, data).elbo.mean().backward()
    # binary images as start: every pixel still gets a gradient (no clipping at 0 or 1)
    assert (model.pseudo_logits.grad != 0).float().mean() > 0.9
    vt.fit(model, data, epochs=5, batch_size=32, lr=1e-2, seed=0, progress=False)
    assert not torch.allclose(model.pseudo_inputs(), start)
    assert model.sample(5).shape == (5, 1, 4, 4)


def test_elbo_surgery_with_the_standard_normal_as_a_mixture_matches_the_default():
    g = torch.Generator().manual_seed(0)
    mu, lv = torch.randn(30, 2, generator=g, dtype=torch.float64), 0.3 * torch.randn(30, 2, generator=g)
    a = elbo_surgery(mu, lv, samples=50, generator=torch.Generator().manual_seed(1))
    zero = torch.zeros(1, 2, dtype=torch.float64)
    b = elbo_surgery(mu, lv, samples=50, generator=torch.Generator().manual_seed(1), prior=(zero, zero))
    assert b["marginal_kl"] == pytest.approx(a["marginal_kl"], abs=1e-9)
    assert b["average_kl"] == pytest.approx(a["average_kl"], abs=4 * a["sum_se"])


def test_elbo_surgery_prior_equal_to_the_aggregate_posterior_gives_zero_marginal_kl():
    g = torch.Generator().manual_seed(0)
    mu, lv = torch.randn(20, 2, generator=g, dtype=torch.float64), 0.3 * torch.randn(20, 2, generator=g)
    s = elbo_surgery(mu, lv, samples=20, generator=g, prior=(mu, lv))
    assert s["marginal_kl"] == pytest.approx(0, abs=1e-12)


def test_errors_name_the_argument():
    with pytest.raises(ArgumentError, match="pseudo_inputs"):
        VampPriorVAE(vt.MLPEncoder(6, [8], 2), vt.MLPDecoder(2, [8], 6), pseudo_inputs=torch.zeros(3, 5))
    with pytest.raises(ArgumentError, match="pseudo_inputs"):
        VampPriorVAE(vt.MLPEncoder(6, [8], 2), vt.MLPDecoder(2, [8], 6), pseudo_inputs=0)
    mu = torch.zeros(4, 2)
    with pytest.raises(ArgumentError, match="prior"):
        elbo_surgery(mu, mu, prior=(torch.zeros(3, 5), torch.zeros(3, 5)))
