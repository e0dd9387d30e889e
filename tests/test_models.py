"""vae_tutorial.models.vae: shapes, likelihood options, dtype handling, sampling and means."""
import pytest
import torch

import vae_tutorial as vt

IMG = (1, 28, 28)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(b, shape=IMG, seed=0):
    return torch.rand(b, *shape, generator=gen(seed))


def out_shape(shape, likelihood):
    """The decoder's output shape: a discretised logistic needs two numbers per pixel."""
    if likelihood != "discretized_logistic":
        return shape
    return 2 * shape if isinstance(shape, int) else (2 * shape[0], *shape[1:])


@pytest.mark.parametrize("in_features", [784, IMG])
def test_mlp_encoder_decoder_shapes(in_features):
    torch.manual_seed(0)
    enc = vt.MLPEncoder(in_features, [32, 16], 5)
    mu, logvar = enc(images(3))
    assert mu.shape == logvar.shape == (3, 5)
    assert vt.MLPDecoder(5, [16], 784)(mu).shape == (3, 784)
    assert vt.MLPDecoder(5, [16], IMG)(mu).shape == (3, *IMG)
    # no hidden layer: a single linear map each way
    assert vt.MLPEncoder(12, [], 2)(torch.zeros(4, 12))[0].shape == (4, 2)
    assert vt.MLPDecoder(2, [], (3, 4))(torch.zeros(4, 2)).shape == (4, 3, 4)


def test_conv_encoder_decoder_shapes():
    torch.manual_seed(0)
    enc, dec = vt.ConvEncoder(6), vt.ConvDecoder(6)
    mu, logvar = enc(images(2))
    assert mu.shape == logvar.shape == (2, 6)
    assert enc(images(2).reshape(2, 784))[0].shape == (2, 6)  # flattened inputs are accepted
    assert dec(mu).shape == (2, *IMG)
    model = vt.VAE(enc, dec)
    assert model.latent_dim == 6
    t = vt.elbo(model, images(2).round())
    assert t.elbo.shape == (2,) and torch.isfinite(t.elbo).all()


@pytest.mark.parametrize("likelihood", vt.models.LIKELIHOODS)
def test_vae_forward_decode_and_log_likelihood(likelihood):
    torch.manual_seed(0)
    model = vt.VAE(vt.MLPEncoder(IMG, [32], 3), vt.MLPDecoder(3, [32], out_shape(IMG, likelihood)),
                   likelihood)
    x = images(4)
    params, mu, logvar = model(x)
    assert mu.shape == logvar.shape == (4, 3)
    if likelihood in ("gaussian", "discretized_logistic"):
        mean, lv = params
        assert mean.shape == lv.shape == x.shape
    else:
        assert params.shape == x.shape
    ll = model.log_likelihood(x, params)
    assert ll.shape == (4,) and torch.isfinite(ll).all()
    # each option is the matching function of vae_tutorial.maths.losses
    expected = {"bernoulli": lambda: vt.bernoulli_log_likelihood(params, x),
                "continuous_bernoulli": lambda: vt.continuous_bernoulli_log_likelihood(params, x),
                "gaussian": lambda: vt.gaussian_log_likelihood(x, *params),
                "discretized_logistic": lambda: vt.discretized_logistic_log_likelihood(x, *params),
                }[likelihood]()
    torch.testing.assert_close(ll, expected)


def test_gaussian_logvar_learned_is_a_parameter_fixed_is_a_buffer():
    enc, dec = vt.MLPEncoder(8, [], 2), vt.MLPDecoder(2, [], 8)
    learned = vt.VAE(enc, dec, "gaussian", gaussian_logvar="learned")
    assert any(name == "obs_logvar" for name, _ in learned.named_parameters())
    fixed = vt.VAE(vt.MLPEncoder(8, [], 2), vt.MLPDecoder(2, [], 8), "gaussian", gaussian_logvar=-2.0)
    assert "obs_logvar" not in dict(fixed.named_parameters())
    assert "obs_logvar" in dict(fixed.named_buffers())
    assert fixed.obs_logvar.item() == -2.0
    mean, lv = fixed.decode(torch.zeros(3, 2))
    assert torch.equal(lv, torch.full((3, 8), -2.0))
    # the learned one receives a gradient
    x = torch.rand(3, 8)
    (-vt.elbo(learned, x).elbo.mean()).backward()
    assert learned.obs_logvar.grad is not None and learned.obs_logvar.grad != 0


def test_invalid_likelihood_and_gaussian_logvar_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'.*bernoulli"):
        vt.VAE(vt.MLPEncoder(4, [], 2), vt.MLPDecoder(2, [], 4), "poisson")
    with pytest.raises(ValueError, match="gaussian_logvar must be 'learned' or a float"):
        vt.VAE(vt.MLPEncoder(4, [], 2), vt.MLPDecoder(2, [], 4), "gaussian", gaussian_logvar="fixed")


@pytest.mark.parametrize("likelihood", vt.models.LIKELIHOODS)
def test_double_model_works_end_to_end(likelihood):
    torch.manual_seed(0)
    model = vt.VAE(vt.MLPEncoder(16, [8], 2), vt.MLPDecoder(2, [8], out_shape(16, likelihood)), likelihood,
                   gaussian_logvar=-1.0).double()
    x = torch.rand(5, 16, dtype=torch.float64)
    t = vt.elbo(model, x)
    assert t.elbo.dtype == torch.float64
    assert vt.iwae_bound(model, x, 3).dtype == torch.float64
    s = model.sample(4, gen(0))
    assert s.shape == (4, 16) and s.dtype == torch.float64
    assert model.reconstruct(x).dtype == torch.float64


@pytest.mark.parametrize("likelihood", vt.models.LIKELIHOODS)
def test_sample_and_reconstruct(likelihood):
    torch.manual_seed(0)
    model = vt.VAE(vt.MLPEncoder(IMG, [16], 2), vt.MLPDecoder(2, [16], out_shape(IMG, likelihood)),
                   likelihood)
    s = model.sample(7, gen(1))
    assert s.shape == (7, *IMG) and not s.requires_grad
    assert torch.equal(s, model.sample(7, gen(1)))  # the generator makes it reproducible
    if likelihood != "gaussian":
        assert bool(((s >= 0) & (s <= 1)).all())  # means of distributions on [0, 1]
    x = images(3)
    r = model.reconstruct(x)
    assert r.shape == x.shape
    # reconstruct decodes the posterior mean μ_φ(x): deterministic
    torch.testing.assert_close(r, model.mean(model.decode(model.encode(x)[0])))
    assert model.prior_sample(5, gen(0)).shape == (5, 2)


def test_continuous_bernoulli_mean_matches_torch_and_stays_accurate_when_saturated():
    model = vt.VAE(vt.MLPEncoder(4, [], 2), vt.MLPDecoder(2, [], 4), "continuous_bernoulli")
    # torch's mean goes through clamped probabilities: accurate for moderate logits in float64
    logits = torch.tensor([-20.0, -8, -1, -0.2, -0.05, -1e-4, 0.0, 1e-4, 0.05, 0.2, 1, 8, 20],
                          dtype=torch.float64)
    torch.testing.assert_close(model.mean(logits), torch.distributions.ContinuousBernoulli(logits=logits).mean,
                               rtol=1e-7, atol=1e-7)
    # where the sigmoid saturates the mean is 1/(1 − e^{−ℓ}) − 1/ℓ → 1 − 1/ℓ (e.g. 0.98 at ℓ = 50)
    big = torch.tensor([-100.0, -50.0, 50.0, 100.0])
    torch.testing.assert_close(model.mean(big), torch.tensor([0.01, 0.02, 0.98, 0.99]))
    # continuous across the series switch at |ℓ| = 0.1 (float32)
    edge = torch.tensor([0.1 - 1e-6, 0.1 + 1e-6])
    m = model.mean(edge)
    assert abs(m[1] - m[0]) < 1e-5


def test_autoencoder_is_deterministic_and_has_no_posterior():
    torch.manual_seed(0)
    ae = vt.Autoencoder(vt.MLPEncoder(IMG, [16], 2), vt.MLPDecoder(2, [16], IMG))
    x = images(3)
    code, none = ae.encode(x)
    assert code.shape == (3, 2) and none is None
    p1, c1, _ = ae(x)
    p2, c2, _ = ae(x)
    assert torch.equal(p1, p2) and torch.equal(c1, c2)
    assert ae.reconstruct(x).shape == x.shape
    # an encoder returning a bare tensor is accepted too
    ae2 = vt.Autoencoder(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 2)),
                         vt.MLPDecoder(2, [16], IMG))
    assert ae2.encode(x)[0].shape == (3, 2)


def test_conditional_vae_shapes_and_labels():
    torch.manual_seed(0)
    c, z = 10, 3
    cvae = vt.ConditionalVAE(vt.MLPEncoder(784 + c, [32], z), vt.MLPDecoder(z + c, [32], IMG), num_classes=c)
    assert cvae.latent_dim == z
    x, y = images(4), torch.tensor([0, 3, 9, 3])
    mu, logvar = cvae.encode(x, y)
    assert mu.shape == (4, z)
    params, _, _ = cvae(x, y)
    assert params.shape == x.shape
    assert vt.elbo(cvae, x.round(), y=y).elbo.shape == (4,)
    assert vt.iwae_bound(cvae, x.round(), 4, y=y).shape == (4,)
    s = cvae.sample(5, gen(0), y=7)
    assert s.shape == (5, *IMG)
    # the label changes what is decoded from the same z
    assert not torch.allclose(s, cvae.sample(5, gen(0), y=2))
    assert cvae.sample(12, gen(0)).shape == (12, *IMG)  # labels cycle 0, 1, ..., 9, 0, 1
    assert torch.equal(cvae.sample(3, gen(0), y=torch.tensor([1, 2, 3])),
                       cvae.sample(3, gen(0), y=torch.tensor([1, 2, 3])))
    assert cvae.reconstruct(x, y).shape == x.shape
    with pytest.raises(TypeError, match="needs labels"):
        cvae.encode(x, None)
