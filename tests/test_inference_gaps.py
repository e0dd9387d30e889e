"""vae_tutorial.analysis.amortisation, vae_tutorial.analysis.aggregate_posterior and vae_tutorial.analysis.gradient_snr."""
import math

import pytest
import torch

import vae_tutorial as vt
from vae_tutorial.analysis.aggregate_posterior import elbo_surgery, log_aggregate_posterior
from vae_tutorial.analysis.amortisation import (
    gaussian_elbo,
    inference_gaps,
    mixture_iwae_bound,
    optimal_gaussian,
)
from vae_tutorial.check import _exact_posterior_vae
from vae_tutorial.analysis.gradient_snr import iwae_gradient_snr


def _x(b=5, seed=3):
    return torch.randn(b, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------ amortisation


def test_gaussian_elbo_with_encoder_output_is_vt_elbo():
    torch.manual_seed(0)
    model = vt.VAE(vt.MLPEncoder(10, [8], 3), vt.MLPDecoder(3, [8], 10))
    x = torch.rand(4, 10, generator=torch.Generator().manual_seed(1)).bernoulli()
    mu, logvar = model.encode(x)
    mine = gaussian_elbo(model, x, mu, logvar, 1, torch.Generator().manual_seed(5))
    ref = vt.elbo(model, x, generator=torch.Generator().manual_seed(5)).elbo
    torch.testing.assert_close(mine, ref)


def test_mixture_iwae_bound_with_one_proposal_is_iwae_bound():
    torch.manual_seed(0)
    model = vt.VAE(vt.MLPEncoder(10, [8], 3), vt.MLPDecoder(3, [8], 10)).eval()
    x = torch.rand(4, 10, generator=torch.Generator().manual_seed(1)).bernoulli()
    with torch.no_grad():
        mu, logvar = model.encode(x)
        ref = vt.iwae_bound(model, x, 7, generator=torch.Generator().manual_seed(2))
    mine = mixture_iwae_bound(model, x, [(mu, logvar)], 7, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(mine, ref)
    with pytest.raises(ValueError):
        mixture_iwae_bound(model, x, [(mu, logvar), (mu, logvar)], 7)


def test_exact_posterior_model_has_no_gaps():
    # linear-Gaussian model whose encoder is the exact (diagonal) posterior: log p(x) is
    # known, ELBO(q_φ) = log p(x) exactly, and the optimiser must stay there
    model, ppca = _exact_posterior_vae(torch.float64)
    x = _x()
    gaps = inference_gaps(model, x, steps=200, lr=1e-2, samples=8, eval_samples=100_000, k=200)
    log_px = ppca.log_marginal(x)
    # q_φ's weights are all p(x); q* is within optimisation noise of q_φ
    torch.testing.assert_close(gaps["log_px"], log_px, atol=0.01, rtol=0)
    assert gaps["approximation_gap"].abs().max() < 0.05
    assert gaps["amortisation_gap"].abs().max() < 0.05


def test_optimal_gaussian_recovers_posterior_from_a_bad_encoder():
    model, ppca = _exact_posterior_vae(torch.float64)
    x = _x()
    mu_true, cov = ppca.posterior(x)
    lv_true = cov.diagonal().log().expand(x.shape[0], -1)  # W'W is diagonal: so is the covariance
    with torch.no_grad():  # a poor amortised encoder: shifted means, too-wide variances
        model.encoder.net[-1].bias[:2] += 0.8
        model.encoder.net[-1].bias[2:] += 1.5
    mu0, lv0 = model.encode(x)
    mu, lv = optimal_gaussian(model, x, mu0, lv0, steps=800, lr=2e-2, samples=16,
                              generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(mu, mu_true, atol=0.05, rtol=0)
    torch.testing.assert_close(lv, lv_true, atol=0.1, rtol=0)
    assert all(p.grad is None for p in model.parameters())  # the decoder is left alone
    gaps = inference_gaps(model, x, steps=800, lr=2e-2, samples=16, eval_samples=100_000, k=400)
    torch.testing.assert_close(gaps["log_px"], ppca.log_marginal(x), atol=0.05, rtol=0)
    exact_gap = ppca.log_marginal(x) - ppca.elbo(x, mu0.detach(), lv0.detach())
    torch.testing.assert_close(gaps["amortisation_gap"], exact_gap, atol=0.1, rtol=0)
    assert gaps["approximation_gap"].abs().max() < 0.1


# ------------------------------------------------------------------ aggregate posterior


def test_log_aggregate_posterior_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(7, 3, generator=g), torch.randn(7, 3, generator=g)
    z = torch.randn(11, 3, generator=g)
    comps = torch.distributions.Independent(torch.distributions.Normal(mu, (0.5 * logvar).exp()), 1)
    ref = (comps.log_prob(z.unsqueeze(1)).exp().mean(1)).log()
    torch.testing.assert_close(log_aggregate_posterior(z, mu, logvar, chunk=4), ref)


def test_elbo_surgery_terms_add_up_to_the_average_kl():
    g = torch.Generator().manual_seed(0)
    mu, logvar = 1.5 * torch.randn(300, 2, generator=g), torch.randn(300, 2, generator=g) - 2
    s = elbo_surgery(mu, logvar, samples=20, generator=torch.Generator().manual_seed(1))
    total = s["mutual_information"] + s["marginal_kl"]
    assert abs(total - s["average_kl"]) < 4 * s["sum_se"]
    assert 0 < s["mutual_information"] <= s["log_n"]
    assert s["marginal_kl"] > 0


def test_elbo_surgery_limits():
    # one posterior: the aggregate is that posterior, so no information and all KL is marginal
    s = elbo_surgery(torch.tensor([[1.0, -0.5]]), torch.tensor([[-1.0, 0.3]]), samples=4000,
                     generator=torch.Generator().manual_seed(0))
    assert s["mutual_information"] == pytest.approx(0, abs=1e-12)
    assert abs(s["marginal_kl"] - s["average_kl"]) < 4 * s["marginal_kl_se"]
    # far-apart, narrow posteriors: the code identifies the data point, I = log N
    mu = torch.arange(5.0).unsqueeze(1).repeat(1, 2) * 10
    s = elbo_surgery(mu, torch.full((5, 2), -6.0), samples=50, generator=torch.Generator().manual_seed(0))
    assert s["mutual_information"] == pytest.approx(math.log(5), abs=1e-6)
    # every posterior equal to the prior: both terms vanish
    s = elbo_surgery(torch.zeros(4, 3), torch.zeros(4, 3), samples=10)
    assert s["average_kl"] == 0 and s["mutual_information"] == pytest.approx(0, abs=1e-12)
    assert s["marginal_kl"] == pytest.approx(0, abs=1e-12)


# ------------------------------------------------------------------ gradient SNR


def test_gradient_snr_matches_stored_draws():
    torch.manual_seed(0)
    model = vt.VAE(vt.MLPEncoder(10, [8], 3), vt.MLPDecoder(3, [8], 10))
    x = torch.rand(4, 10, generator=torch.Generator().manual_seed(1)).bernoulli()
    r = iwae_gradient_snr(model, x, 3, repeats=6, generator=torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(2)
    draws = []
    for _ in range(6):
        model.zero_grad()
        vt.iwae_bound(model, x, 3, generator=gen).mean().backward()
        draws.append(torch.cat([p.grad.reshape(-1) for p in model.encoder.parameters()]
                               + [p.grad.reshape(-1) for p in model.decoder.parameters()]).double())
    draws = torch.stack(draws)
    ref = draws.mean(0).abs() / draws.std(0)
    n_enc = sum(p.numel() for p in model.encoder.parameters())
    ok = draws.std(0) > 0
    torch.testing.assert_close(r["encoder"][ok[:n_enc]], ref[:n_enc][ok[:n_enc]])
    torch.testing.assert_close(r["decoder"][ok[n_enc:]], ref[n_enc:][ok[n_enc:]])
    assert r["encoder"].shape == (n_enc,) and r["repeats"] == 6


def test_encoder_snr_falls_and_decoder_snr_rises_with_k():
    # Rainforth et al. 2018 on a small trained model of 8×8 digits
    data = vt.load_dataset("digits", "train", binarize="dynamic")
    torch.manual_seed(0)
    model = vt.VAE(vt.MLPEncoder((1, 8, 8), [32], 4), vt.MLPDecoder(4, [32], (1, 8, 8)))
    vt.fit(model, data, epochs=5, batch_size=64, lr=3e-3, seed=0)
    x = torch.bernoulli(data.images[:8], generator=torch.Generator().manual_seed(0))
    snr = {k: iwae_gradient_snr(model, x, k, repeats=100, generator=torch.Generator().manual_seed(1))
           for k in (1, 16, 256)}
    enc = [float(snr[k]["encoder"].nanmedian()) for k in (1, 16, 256)]
    dec = [float(snr[k]["decoder"].nanmedian()) for k in (1, 16, 256)]
    assert enc[0] > enc[1] > enc[2]
    assert dec[0] < dec[1] < dec[2]
