"""vae_tutorial.maths.losses: KL terms, reparameterisation, log-likelihoods, ELBO and IWAE bounds."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import vae_tutorial as vt
from vae_tutorial import losses
from vae_tutorial.maths.ppca import LinearGaussian

D = torch.distributions
FAST = settings(max_examples=40, deadline=None, database=None)


def floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=64)


def gaussian_params(z=st.integers(1, 6), mu=floats(-10, 10), logvar=floats(-10, 10)):
    """(mu, logvar) float64 tensors of shape (B, Z) drawn by hypothesis (0 is included, so the prior is hit)."""
    @st.composite
    def build(draw):
        b, zz = draw(st.integers(1, 4)), draw(z)
        m = draw(st.lists(mu, min_size=b * zz, max_size=b * zz))
        v = draw(st.lists(logvar, min_size=b * zz, max_size=b * zz))
        return (torch.tensor(m, dtype=torch.float64).view(b, zz),
                torch.tensor(v, dtype=torch.float64).view(b, zz))
    return build()


def normal(mu, logvar):
    return D.Normal(mu, torch.exp(0.5 * logvar))


def small_vae(likelihood="bernoulli", seed=0, d=(1, 4, 4), z=2):
    torch.manual_seed(seed)
    return vt.VAE(vt.MLPEncoder(d, [16], z), vt.MLPDecoder(z, [16], d), likelihood)


def binary(*shape, seed=0):
    return torch.bernoulli(torch.full(shape, 0.4), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- KL


@FAST
@given(gaussian_params())
def test_kl_standard_normal_matches_torch_and_is_nonnegative(params):
    mu, logvar = params
    kl = vt.kl_standard_normal(mu, logvar)
    ref = D.kl_divergence(normal(mu, logvar), normal(torch.zeros_like(mu), torch.zeros_like(logvar))).sum(-1)
    assert kl.shape == (mu.shape[0],)
    torch.testing.assert_close(kl, ref, rtol=1e-9, atol=1e-9)
    assert bool((kl >= 0).all())


@FAST
@given(gaussian_params(mu=floats(-3, 3), logvar=floats(-3, 3)))
def test_kl_is_zero_only_at_the_prior(params):
    mu, logvar = params
    kl = vt.kl_standard_normal(mu, logvar)
    at_prior = (mu == 0).all(-1) & (logvar == 0).all(-1)
    assert bool((kl[at_prior] == 0).all())
    # away from the prior it is strictly positive (KL ≈ μ²/2 + v²/4 near it: "away" means
    # further than 1e-6, or the float64 value underflows to 0)
    away = (mu.abs() > 1e-6).any(-1) | (logvar.abs() > 1e-6).any(-1)
    assert bool((kl[away] > 0).all())


def test_kl_exactly_zero_at_prior_and_accurate_near_it():
    zeros = torch.zeros(3, 5)
    assert torch.equal(vt.kl_standard_normal(zeros, zeros), torch.zeros(3))
    # logvar = 1e-4: KL = ½(e^v − 1 − v) ≈ v²/4 = 2.5e-9 per dim; a naive float32 1 + v − e^v loses it
    lv = torch.full((1, 4), 1e-4)
    torch.testing.assert_close(vt.kl_standard_normal(torch.zeros(1, 4), lv),
                               torch.tensor([4 * (1e-4) ** 2 / 4]), rtol=1e-3, atol=0)


@FAST
@given(gaussian_params(), gaussian_params())
def test_kl_normal_matches_torch(q, p):
    mu_q, lv_q = q
    b, z = mu_q.shape
    mu_p, lv_p = p[0].flatten()[: b * z], p[1].flatten()[: b * z]
    mu_p = torch.cat([mu_p, torch.zeros(b * z - mu_p.numel(), dtype=mu_p.dtype)]).view(b, z)
    lv_p = torch.cat([lv_p, torch.zeros(b * z - lv_p.numel(), dtype=lv_p.dtype)]).view(b, z)
    kl = vt.kl_normal(mu_q, lv_q, mu_p, lv_p)
    ref = D.kl_divergence(normal(mu_q, lv_q), normal(mu_p, lv_p)).sum(-1)
    torch.testing.assert_close(kl, ref, rtol=1e-9, atol=1e-9)
    assert bool((kl >= 0).all())


@FAST
@given(gaussian_params())
def test_kl_normal_with_standard_prior_is_kl_standard_normal(params):
    mu, logvar = params
    torch.testing.assert_close(vt.kl_normal(mu, logvar, torch.zeros_like(mu), torch.zeros_like(logvar)),
                               vt.kl_standard_normal(mu, logvar), rtol=1e-12, atol=1e-12)
    # and a broadcast (Z,) prior works too
    torch.testing.assert_close(vt.kl_normal(mu, logvar, torch.zeros(mu.shape[1], dtype=mu.dtype), 0 * logvar[0]),
                               vt.kl_standard_normal(mu, logvar), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- reparameterisation


def test_reparameterize_shape_dtype_device_and_generator():
    for dtype in (torch.float32, torch.float64):
        mu, logvar = torch.zeros(3, 4, dtype=dtype), torch.zeros(3, 4, dtype=dtype)
        z = vt.reparameterize(mu, logvar, torch.Generator().manual_seed(1))
        assert z.shape == (3, 4) and z.dtype == dtype and z.device == mu.device
        same = vt.reparameterize(mu, logvar, torch.Generator().manual_seed(1))
        other = vt.reparameterize(mu, logvar, torch.Generator().manual_seed(2))
        assert torch.equal(z, same) and not torch.equal(z, other)
    # non-contiguous inputs
    mu = torch.randn(5, 3).t()
    assert vt.reparameterize(mu, torch.zeros_like(mu)).shape == (3, 5)


def test_reparameterize_statistics():
    n = 50_000
    mu = torch.tensor([-2.0, 0.0, 3.0]).expand(n, 3)
    logvar = torch.tensor([-4.0, 0.0, 2.0]).expand(n, 3)
    z = vt.reparameterize(mu, logvar, torch.Generator().manual_seed(0)).double()
    sigma = torch.exp(0.5 * logvar[0]).double()
    # standard errors: σ/√n for the mean, ≈ σ/√(2n) for the std; allow 5 of them
    assert bool(((z.mean(0) - mu[0]).abs() < 5 * sigma / math.sqrt(n)).all())
    assert bool(((z.std(0) / sigma - 1).abs() < 5 / math.sqrt(2 * n)).all())


def test_reparameterize_gradients():
    mu = torch.randn(6, 3, requires_grad=True)
    logvar = torch.randn(6, 3, requires_grad=True)
    z = vt.reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    z.sum().backward()
    eps = (z - mu) / torch.exp(0.5 * logvar)
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))
    torch.testing.assert_close(logvar.grad, (0.5 * torch.exp(0.5 * logvar) * eps).detach())


# ----------------------------------------------------------------------------- likelihoods


def test_bernoulli_matches_torch_distribution():
    g = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(5, 1, 3, 3, generator=g)
    x = binary(5, 1, 3, 3, seed=1)
    ref = D.Bernoulli(logits=logits).log_prob(x).reshape(5, -1).sum(-1)
    torch.testing.assert_close(vt.bernoulli_log_likelihood(logits, x), ref)
    # non-contiguous inputs give the same numbers
    lt, xt = logits.reshape(5, 9).t().contiguous().t(), x.reshape(5, 9).t().contiguous().t()
    assert not lt.is_contiguous()
    torch.testing.assert_close(vt.bernoulli_log_likelihood(lt, xt), ref)


def test_bernoulli_finite_for_extreme_logits_where_naive_is_not():
    logits = torch.tensor([[100.0, -100.0, 100.0, -100.0]])
    x = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    ll = vt.bernoulli_log_likelihood(logits, x)
    assert torch.isfinite(ll).all()
    torch.testing.assert_close(ll, torch.tensor([-200.0]))  # two pixels wrong by 100 nats each
    p = torch.sigmoid(logits)
    naive = (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(-1)
    assert not torch.isfinite(naive).all()


def test_gaussian_matches_torch_distribution():
    g = torch.Generator().manual_seed(0)
    x, mean = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    logvar = torch.randn(4, 6, generator=g)
    ref = normal(mean, logvar).log_prob(x).sum(-1)
    torch.testing.assert_close(vt.gaussian_log_likelihood(x, mean, logvar), ref)
    ref0 = D.Normal(mean, math.exp(0.5 * -1.5)).log_prob(x).sum(-1)
    torch.testing.assert_close(vt.gaussian_log_likelihood(x, mean, -1.5), ref0)  # a float logvar


def cb_ll(logits, x):
    return vt.continuous_bernoulli_log_likelihood(logits, x)


def test_continuous_bernoulli_matches_torch_where_torch_is_accurate():
    # torch computes C(λ) from clamped probabilities: accurate for moderate |logits| in float64
    g = torch.Generator().manual_seed(0)
    logits = torch.cat([6 * torch.randn(4, 20, generator=g, dtype=torch.float64),
                        torch.tensor([[-20.0, -5, -0.5, -0.01, 0.01, 0.5, 5, 20] * 2 + [1, 2, 3, 4]],
                                     dtype=torch.float64)])
    x = torch.rand(5, 20, generator=g, dtype=torch.float64)
    ref = D.ContinuousBernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(cb_ll(logits, x), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("logit", [0.0, 1e-4, -1e-4, 1e-2, -1e-2, 50.0, -50.0])
def test_continuous_bernoulli_finite_and_smooth(logit):
    logits = torch.full((1, 3), logit, requires_grad=True)
    x = torch.tensor([[0.0, 0.3, 1.0]])
    ll = cb_ll(logits, x)
    assert torch.isfinite(ll).all()
    ll.sum().backward()
    assert torch.isfinite(logits.grad).all()
    # the gradient is continuous: compare with the float64 value a hair away
    l64 = torch.full((1, 3), logit + 1e-7, dtype=torch.float64, requires_grad=True)
    cb_ll(l64, x.double()).sum().backward()
    torch.testing.assert_close(logits.grad.double(), l64.grad, rtol=1e-3, atol=1e-3)


def test_continuous_bernoulli_log_norm_is_continuous_at_the_series_switch():
    # the Taylor branch is used below |ℓ| = 1e-2: both sides agree there (float64)
    a = torch.tensor([1e-2 - 1e-12, 1e-2 + 1e-12], dtype=torch.float64)
    v = losses.continuous_bernoulli_log_norm(a)
    assert abs(v[0] - v[1]) < 1e-11
    torch.testing.assert_close(losses.continuous_bernoulli_log_norm(torch.tensor([0.0])),
                               torch.tensor([math.log(2.0)]))


@pytest.mark.parametrize("logit", [-30.0, -3.0, 0.0, 1e-3, 2.0, 40.0])
def test_continuous_bernoulli_integrates_to_one(logit):
    x = torch.linspace(0, 1, 200_001, dtype=torch.float64)[:, None]
    dens = torch.exp(cb_ll(torch.full_like(x, logit), x))
    assert abs(torch.trapezoid(dens, x[:, 0]).item() - 1) < 1e-6


# ----------------------------------------------------------------------------- ELBO


def test_elbo_is_reconstruction_minus_beta_kl():
    model, x = small_vae(), binary(5, 1, 4, 4)
    for beta in (0.0, 1.0, 4.0):
        t = vt.elbo(model, x, beta, generator=torch.Generator().manual_seed(3))
        assert t.elbo.shape == t.reconstruction.shape == t.kl.shape == (5,)
        assert t.kl_per_dim.shape == (5, 2)
        torch.testing.assert_close(t.elbo, t.reconstruction - beta * t.kl)
        torch.testing.assert_close(t.kl, t.kl_per_dim.sum(-1))
    # the terms are what they claim to be, with the same noise
    mu, logvar = model.encode(x)
    z = vt.reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    torch.testing.assert_close(t.reconstruction, vt.bernoulli_log_likelihood(model.decoder(z), x))
    torch.testing.assert_close(t.kl, vt.kl_standard_normal(mu, logvar))


def test_elbo_batch_of_one_float64_and_noncontiguous():
    model, x = small_vae(), binary(4, 1, 4, 4)
    one = vt.elbo(model, x[:1], generator=torch.Generator().manual_seed(0))
    assert one.elbo.shape == (1,)
    m64 = small_vae().double()
    t64 = vt.elbo(m64, x.double(), generator=torch.Generator().manual_seed(0))
    assert t64.elbo.dtype == torch.float64
    t32 = vt.elbo(model, x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(t64.elbo.float(), t32.elbo, rtol=1e-4, atol=1e-4)
    xt = x.permute(3, 2, 1, 0).contiguous().permute(3, 2, 1, 0)
    assert not xt.is_contiguous()
    tt = vt.elbo(model, xt, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(tt.elbo, t32.elbo)


def test_autoencoder_elbo_is_reconstruction_with_zero_kl():
    torch.manual_seed(0)
    ae = vt.Autoencoder(vt.MLPEncoder((1, 4, 4), [8], 2), vt.MLPDecoder(2, [8], (1, 4, 4)))
    x = binary(3, 1, 4, 4)
    t = vt.elbo(ae, x, beta=5.0)
    assert torch.equal(t.kl, torch.zeros(3)) and t.kl_per_dim is None
    torch.testing.assert_close(t.elbo, t.reconstruction)
    with pytest.raises(TypeError, match="needs a VAE"):
        vt.iwae_bound(ae, x, 3)


# ----------------------------------------------------------------------------- IWAE


def linear_gaussian(posterior_offset=0.0, logvar_offset=0.0, dtype=torch.float64):
    """A PPCA model (D = 5, Z = 2) and a VAE with its linear decoder and a linear encoder.

    With both offsets 0 the encoder is the exact posterior (WᵀW is diagonal so it is a
    diagonal Gaussian); the offsets make q deliberately wrong.
    """
    d, z, noise = 5, 2, 0.3
    q, _ = torch.linalg.qr(torch.randn(d, z, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    w = q * torch.tensor([1.5, 0.8], dtype=torch.float64)
    b = torch.linspace(-0.5, 0.5, d, dtype=torch.float64)
    ppca = LinearGaussian(w, b, noise)
    m = w.T @ w + noise * torch.eye(z, dtype=torch.float64)
    a = torch.linalg.solve(m, w.T)
    # hidden=[]: one linear layer each way; the Gaussian decoder's mean is W z + b
    model = vt.VAE(vt.MLPEncoder(d, [], z), vt.MLPDecoder(z, [], d), "gaussian",
                   gaussian_logvar=math.log(noise)).double()
    with torch.no_grad():
        enc, dec = model.encoder.net[-1], model.decoder.net[-1]
        enc.weight.zero_()
        enc.weight[:z] = a
        enc.bias[:z] = -a @ b + posterior_offset
        enc.bias[z:] = torch.log(noise / m.diagonal()) + logvar_offset
        dec.weight.copy_(w)
        dec.bias.copy_(b)
        model.obs_logvar.fill_(math.log(noise))  # the buffer was made in float32: reset it exactly
    return model.to(dtype), ppca


def test_iwae_with_exact_posterior_is_log_px_for_every_k():
    model, ppca = linear_gaussian()
    x, _ = ppca.sample(6, torch.Generator().manual_seed(1))
    exact = ppca.log_marginal(x)
    # sanity: the encoder really is the posterior
    mean, cov = ppca.posterior(x)
    torch.testing.assert_close(model.encode(x)[0], mean)
    for k in (1, 3, 50):
        torch.testing.assert_close(vt.iwae_bound(model, x, k, generator=torch.Generator().manual_seed(k)),
                                   exact, rtol=1e-10, atol=1e-10)


def test_iwae_increases_with_k_and_stays_below_log_px():
    model, ppca = linear_gaussian(posterior_offset=0.8, logvar_offset=-1.0)
    x, _ = ppca.sample(200, torch.Generator().manual_seed(2))
    exact = ppca.log_marginal(x)
    g = torch.Generator().manual_seed(3)
    # average over 200 examples × 5 repeats of (L_k − log p(x)), with its standard error
    gaps = {k: torch.stack([vt.iwae_bound(model, x, k, generator=g) - exact for _ in range(5)]).flatten()
            for k in (1, 10, 100)}
    means = {k: v.mean().item() for k, v in gaps.items()}
    ses = {k: v.std().item() / math.sqrt(v.numel()) for k, v in gaps.items()}
    assert means[1] + 5 * ses[1] < means[10], (means, ses)
    assert means[10] + 5 * ses[10] < means[100], (means, ses)
    assert means[100] < 0  # below log p(x) in expectation
    # and the ELBO gap is exactly KL(q ‖ p(z|x)), the iwae L_1 mean agrees with it statistically
    mu, logvar = model.encode(x)
    kl_gap = ppca.posterior_kl(x, mu, logvar)
    assert abs(means[1] + kl_gap.mean().item()) < 5 * ses[1]


def test_iwae_k1_is_the_single_sample_elbo_with_the_same_noise():
    model, x = small_vae(), binary(6, 1, 4, 4)
    l1 = vt.iwae_bound(model, x, 1, generator=torch.Generator().manual_seed(4))
    # L_1 = log p(x|z) + log p(z) − log q(z|x) at the z the ELBO draws with the same seed
    t = vt.elbo(model, x, generator=torch.Generator().manual_seed(4))
    mu, logvar = model.encode(x)
    z = vt.reparameterize(mu, logvar, torch.Generator().manual_seed(4))
    log_ratio = vt.gaussian_log_likelihood(z, torch.zeros_like(z), 0.0) - vt.gaussian_log_likelihood(z, mu, logvar)
    torch.testing.assert_close(l1, t.reconstruction + log_ratio)
    # and E[L_1] = ELBO: the closed-form KL is the expectation of −log p(z) + log q(z|x).
    # Repeating each example 500 times in the batch gives 500 independent draws in one call.
    reps = 500
    xr = x.repeat_interleave(reps, 0)
    l1 = vt.iwae_bound(model, xr, 1, generator=torch.Generator().manual_seed(5)).view(6, reps)
    ref = vt.elbo(model, xr, generator=torch.Generator().manual_seed(6)).elbo.view(6, reps)
    se = (l1.var(1) / reps + ref.var(1) / reps).sqrt()
    assert bool(((l1.mean(1) - ref.mean(1)).abs() < 5 * se).all())


def test_iwae_chunking_matches_running_logsumexp_and_unchunked():
    model, x = small_vae(), binary(4, 1, 4, 4)
    k = 12
    # max_elements = 4 samples × 4 examples × 16 pixels: chunks of 4 samples, 3 chunks
    small = 4 * 4 * 16
    chunks = list(losses.iwae_log_weights(model, x, k, generator=torch.Generator().manual_seed(0),
                                          max_elements=small))
    assert [c.shape for c in chunks] == [(4, 4)] * 3
    chunked = vt.iwae_bound(model, x, k, generator=torch.Generator().manual_seed(0), max_elements=small)
    torch.testing.assert_close(chunked, torch.logsumexp(torch.cat(chunks), 0) - math.log(k))
    # Each chunk draws 4·4·2 = 32 normals, a multiple of torch's 16-value block, so the chunked
    # draws are the same stream as one (12, 4, 2) draw: identical weights, identical bound.
    whole = vt.iwae_bound(model, x, k, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(chunked, whole)


def test_iwae_chunked_agrees_in_distribution_with_uneven_chunks():
    model, x = small_vae(), binary(4, 1, 4, 4)
    reps = 300  # each example repeated: independent draws of L_10 in one call
    xr = x.repeat_interleave(reps, 0)
    b = xr.shape[0]
    # chunks of 3 samples for k = 10 (3 + 3 + 3 + 1): a different random stream from one draw
    with torch.no_grad():  # values only: no graph for 12 000 samples
        chunked = vt.iwae_bound(model, xr, 10, generator=torch.Generator().manual_seed(1),
                                max_elements=3 * b * 16).view(4, reps)
        whole = vt.iwae_bound(model, xr, 10, generator=torch.Generator().manual_seed(2)).view(4, reps)
    se = (chunked.var(1) / reps + whole.var(1) / reps).sqrt()
    assert bool(((chunked.mean(1) - whole.mean(1)).abs() < 5 * se).all())
    # a bound that dropped a chunk or mis-normalised by log 3 instead of log 10 would be off by
    # far more than that: log(10/3) ≈ 1.2 nats
    assert float(se.max()) < 0.1


def test_iwae_k5000_never_decodes_all_samples_at_once():
    torch.manual_seed(0)
    model = vt.VAE(vt.MLPEncoder(784, [8], 2), vt.MLPDecoder(2, [8], 784))
    rows = []
    decode = model.decode
    model.decode = lambda z: (rows.append(z.shape[0]), decode(z))[1]
    x = binary(16, 784)
    out = vt.estimate_log_likelihood(model, x, k=5000, generator=torch.Generator().manual_seed(0))
    assert out.shape == (16,) and torch.isfinite(out).all()
    assert sum(rows) == 5000 * 16  # every sample decoded once ...
    default_max = 1 << 23  # iwae_bound's max_elements
    assert max(rows) * 784 <= default_max < 5000 * 16 * 784  # ... but never all at once
    assert len(rows) == 8  # chunks of ⌊2²³ / (16·784)⌋ = 668 samples


def test_estimate_log_likelihood_restores_mode_and_needs_no_grad():
    model, x = small_vae(), binary(3, 1, 4, 4)
    for mode in (True, False):
        model.train(mode)
        out = vt.estimate_log_likelihood(model, x, k=5)
        assert model.training is mode
        assert not out.requires_grad


@pytest.mark.parametrize("k", [0, -1, 2.5])
def test_iwae_rejects_bad_k(k):
    with pytest.raises(ValueError, match="positive integer"):
        vt.iwae_bound(small_vae(), binary(2, 1, 4, 4), k)


class _OwnBound(torch.nn.Module):
    """A model that computes its own bound: a VAE whose terms are scaled copies of a plain
    VAE's, so that delegation (and not the Gaussian path) is what the test sees."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.encode, self.decode, self.log_likelihood = inner.encode, inner.decode, inner.log_likelihood

    def elbo_terms(self, x, beta, generator=None):
        t = vt.elbo(self.inner, x, beta, generator=generator)
        return vt.losses.ELBOTerms(elbo=t.elbo - 1.0, reconstruction=t.reconstruction - 1.0, kl=t.kl,
                                   kl_per_dim=t.kl_per_dim)

    def log_importance_weights(self, x, k, generator=None, max_elements=1 << 23):
        for lw in vt.losses.iwae_log_weights(self.inner, x, k, generator=generator, max_elements=max_elements):
            yield lw - 1.0


def test_models_with_their_own_bound_are_delegated_to():
    torch.manual_seed(0)
    inner = vt.VAE(vt.MLPEncoder(6, [5], 2), vt.MLPDecoder(2, [5], 6))
    own = _OwnBound(inner)
    x = torch.rand(4, 6).round()
    a = vt.elbo(inner, x, generator=torch.Generator().manual_seed(1))
    b = vt.elbo(own, x, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(b.elbo, a.elbo - 1.0)
    ia = vt.iwae_bound(inner, x, 7, generator=torch.Generator().manual_seed(2))
    ib = vt.iwae_bound(own, x, 7, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(ib, ia - 1.0)
