"""Planar flows and the flow-posterior VAE, against independent references (autograd Jacobians,
brute-force densities by numerical integration)."""
import math

import pytest
import torch

import vae_tutorial as vt
from vae_tutorial.errors import ArgumentError, VAETutorialError
from vae_tutorial.models.flows import (
    FlowVAE,
    PlanarFlow,
    check_flow_logdet,
    planar_log_det,
    planar_transform,
    planar_u_hat,
)


def _params(z_dim, scale, seed):
    g = torch.Generator().manual_seed(seed)
    u, w = (scale * torch.randn(z_dim, generator=g, dtype=torch.float64) for _ in range(2))
    return u, w, torch.tensor(0.4, dtype=torch.float64)


@pytest.mark.parametrize("z_dim,scale,seed", [(1, 1.0, 0), (2, 3.0, 1), (4, 0.5, 2), (6, 2.0, 3)])
def test_log_det_matches_autograd_jacobian(z_dim, scale, seed):
    u, w, b = _params(z_dim, scale, seed)
    z = torch.randn(9, z_dim, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64)
    got = planar_log_det(z, u, w, b)
    for row, ld in zip(z, got):
        jac = torch.autograd.functional.jacobian(lambda r: planar_transform(r[None], u, w, b)[0][0], row)
        sign, ref = torch.linalg.slogdet(jac)
        assert sign > 0  # invertible and orientation-preserving, as the û constraint promises
        assert torch.allclose(ld, ref, atol=1e-10)


def test_u_hat_makes_every_map_invertible():
    g = torch.Generator().manual_seed(0)
    u = 5 * torch.randn(1000, 3, generator=g, dtype=torch.float64)
    w = 5 * torch.randn(1000, 3, generator=g, dtype=torch.float64)
    assert ((w * u).sum(-1) < -1).any()  # the raw parameters would fold some maps
    wu_hat = (w * planar_u_hat(u, w)).sum(-1)
    # wᵀû = softplus(wᵀu) − 1 > −1; it rounds to −1 where softplus underflows (wᵀu ≪ 0)
    assert (wu_hat >= -1 - 1e-9).all()
    assert torch.allclose(wu_hat, torch.nn.functional.softplus((w * u).sum(-1)) - 1, atol=1e-8)
    # where wᵀu is large, m(a) = softplus(a) − 1 ≈ a − 1
    big = (w * u).sum(-1) > 30
    assert torch.allclose((w * planar_u_hat(u, w)).sum(-1)[big], (w * u).sum(-1)[big] - 1, atol=1e-9)


def test_one_dimensional_flow_is_monotone_and_density_integrates_to_one():
    # Z = 1: push N(0, 1) through 3 maps; the change-of-variables density of z_K, on a fine
    # grid of z_0, integrates to 1 (∫ q_K(z_K) dz_K = ∫ q_0(z_0) dz_0 by substitution) and the map
    # is strictly increasing.
    flow = PlanarFlow(1, 3, scale=2.0, generator=torch.Generator().manual_seed(4)).double()
    z0 = torch.linspace(-9, 9, 200001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        zk, log_det = flow(z0)
    assert (zk[1:, 0] > zk[:-1, 0]).all()
    log_q0 = -0.5 * (z0[:, 0] ** 2 + math.log(2 * math.pi))
    q_k = torch.exp(log_q0 - log_det)
    mass = torch.trapezoid(q_k, zk[:, 0])
    assert abs(mass.item() - 1) < 1e-6


def test_flow_vae_log_q_matches_density_of_samples_in_1d():
    # independent check of log q_K(z|x): histogram of many samples vs the formula's density
    torch.manual_seed(0)
    enc, dec = vt.MLPEncoder(4, [8], 1), vt.MLPDecoder(1, [8], 4)
    model = FlowVAE(enc, dec, length=2, flow_hidden=8).double()
    with torch.no_grad():
        model.flow_net[-1].bias.mul_(5)  # strongly non-Gaussian maps
    x = torch.ones(1, 4, dtype=torch.float64)
    with torch.no_grad():
        z, log_q = model.posterior_sample(x, torch.Generator().manual_seed(1), samples=400000)
    z, order = z[:, 0, 0].sort()
    q = log_q[order, 0].exp()
    # the formula's density integrated along the sorted samples is their empirical CDF
    cdf = torch.cat([q.new_zeros(1), torch.cumulative_trapezoid(q, z)])
    empirical = torch.arange(len(z), dtype=torch.float64) / len(z)
    assert (cdf - empirical).abs().max() < 0.005
    assert abs(cdf[-1].item() - 1) < 0.005


def test_flow_vae_works_with_elbo_iwae_and_fit():
    torch.manual_seed(0)
    data = (torch.rand(64, 1, 4, 4) > 0.5).float()
    model = FlowVAE(vt.MLPEncoder((1, 4, 4), [16], 2), vt.MLPDecoder(2, [16], (1, 4, 4)), length=3)
    terms = vt.elbo(model, data, generator=torch.Generator().manual_seed(0))
    assert terms.elbo.shape == (64,) and terms.kl_per_dim is None
    with torch.no_grad():
        bound = vt.iwae_bound(model, data[:8], 256, generator=torch.Generator().manual_seed(0))
        el = torch.stack([vt.elbo(model, data[:8]).elbo for _ in range(256)]).mean(0)
    assert (bound >= el - 0.05).all()  # IWAE with the flow's density is the tighter bound
    before = -vt.elbo(model, data, generator=torch.Generator().manual_seed(0)).elbo.mean().item()
    vt.fit(model, data, epochs=30, batch_size=32, lr=1e-2, seed=0, progress=False)
    after = -vt.elbo(model, data, generator=torch.Generator().manual_seed(0)).elbo.mean().item()
    assert after < before


def test_flow_density_is_normalised_in_2d_and_elbo_stays_below_exact_log_px():
    # E_{z~q_K}[g(z) / q_K(z|x)] = ∫ g = 1 for the density g of N(0, I) only if the formula's
    # q_K is the density of the samples; log p(x) by a grid integral over z (2-D) bounds the ELBO
    torch.manual_seed(1)
    model = FlowVAE(vt.MLPEncoder(6, [16], 2), vt.MLPDecoder(2, [16], 6), length=3, flow_hidden=8).double()
    with torch.no_grad():
        model.flow_net[-1].bias.mul_(4)  # maps that bend the Gaussian visibly
    x = (torch.rand(3, 6, generator=torch.Generator().manual_seed(2)) > 0.5).double()
    with torch.no_grad():
        z, log_q = model.posterior_sample(x, torch.Generator().manual_seed(0), samples=100000)
        ratio = torch.exp(-0.5 * z.pow(2).sum(-1) - math.log(2 * math.pi) - log_q)  # (S, B)
        se = ratio.std(0) / math.sqrt(ratio.shape[0])
        assert ((ratio.mean(0) - 1).abs() < 4 * se + 1e-3).all()
        t = torch.linspace(-7, 7, 701, dtype=torch.float64)
        zz = torch.cartesian_prod(t, t)
        logits = model.decode(zz)
        ll = x @ logits.T - torch.nn.functional.softplus(logits).sum(-1)
        lp = -0.5 * zz.pow(2).sum(-1) - math.log(2 * math.pi)
        exact = torch.logsumexp(ll + lp, 1) + 2 * math.log(t[1] - t[0])
        terms = [vt.elbo(model, x, generator=torch.Generator().manual_seed(i)).elbo for i in range(3000)]
        elbo = torch.stack(terms)
    assert (elbo.mean(0) + 3 * elbo.std(0) / math.sqrt(len(terms)) < exact).all()


def test_gaussian_view_shares_modules_and_reconstruct_uses_flow():
    model = FlowVAE(vt.MLPEncoder(6, [8], 2), vt.MLPDecoder(2, [8], 6), length=2)
    view = model.gaussian_view()
    assert view.encoder is model.encoder and view.decoder is model.decoder
    assert not callable(getattr(view, "elbo_terms", None))
    x = torch.rand(5, 6)
    rec = model.reconstruct(x)
    assert rec.shape == x.shape and not torch.allclose(rec, view.reconstruct(x))


def test_check_flow_logdet_accepts_correct_and_names_the_wrong():
    check_flow_logdet(planar_log_det)

    def no_u_hat(z, u, w, b):
        h = torch.tanh(z @ w + b)
        return torch.log((1 + (1 - h ** 2) * (w @ u)).abs())

    with pytest.raises(VAETutorialError, match="u instead of û"):
        check_flow_logdet(no_u_hat)

    def detached(z, u, w, b):
        return planar_log_det(z, u, w, b).detach()

    with pytest.raises(VAETutorialError, match="no gradient"):
        check_flow_logdet(detached)

    def wrong_grad(z, u, w, b):  # right values, gradient cut through b
        return planar_log_det(z, u, w, b.detach())

    with pytest.raises(VAETutorialError, match="gradient with respect to b"):
        check_flow_logdet(wrong_grad)

    def sign_error(z, u, w, b):
        return -planar_log_det(z, u, w, b)

    with pytest.raises(VAETutorialError, match="values differ"):
        check_flow_logdet(sign_error)


def test_errors_name_the_argument():
    with pytest.raises(ArgumentError, match="length"):
        FlowVAE(vt.MLPEncoder(6, [8], 2), vt.MLPDecoder(2, [8], 6), length=0)
    with pytest.raises(ArgumentError, match="latent_dim"):
        PlanarFlow(2, 2)(torch.zeros(3, 5))
    with pytest.raises(VAETutorialError, match="fn must be a function"):
        check_flow_logdet(3)
