"""The discretised logistic likelihood: a normalised mass function on grey levels, usable by a VAE."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import vae_tutorial as vt
from vae_tutorial.maths.losses import discretized_logistic_log_likelihood as dl_log_p
from vae_tutorial.maths.losses import discretized_logistic_mean

FAST = settings(max_examples=40, deadline=None, database=None)


def all_levels(levels, dtype=torch.float64):
    """``(L, 1)``: every grey level ``k/(L−1)`` as a batch of one-pixel images."""
    return (torch.arange(levels, dtype=dtype) / (levels - 1))[:, None]


def level_probs(loc, log_scale, levels=256, dtype=torch.float64):
    """``(L,)`` probabilities of every level for one pixel with parameters ``(loc, log_scale)``."""
    x = all_levels(levels, dtype)
    return dl_log_p(x, torch.full_like(x, loc), torch.full_like(x, log_scale), levels).exp()


@FAST
@given(st.floats(-3, 4), st.floats(-9, 4), st.sampled_from([2, 16, 256]))
def test_probabilities_of_all_levels_sum_to_one(loc, log_scale, levels):
    p = level_probs(loc, log_scale, levels)
    assert bool((p >= 0).all()) and bool((p <= 1).all())
    torch.testing.assert_close(p.sum(), torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-10)


@pytest.mark.parametrize("loc,log_scale", [(0.3, -3.0), (0.0, -4.0), (1.0, -2.0), (-0.2, -1.0), (0.7, 1.0)])
def test_matches_scipy_logistic_cdf(loc, log_scale):
    levels = 256
    c = all_levels(levels).squeeze(1).numpy()
    cdf = stats.logistic(loc=loc, scale=math.exp(log_scale)).cdf
    h = 0.5 / (levels - 1)
    ref = cdf(c + h) - cdf(c - h)
    ref[0], ref[-1] = cdf(h), 1 - cdf(1 - h)  # the edge bins take the tails
    p = level_probs(loc, log_scale, levels)
    torch.testing.assert_close(p, torch.as_tensor(ref), rtol=1e-9, atol=1e-12)


def test_sums_over_pixels_and_rounds_to_the_nearest_level():
    g = torch.Generator().manual_seed(0)
    k = torch.randint(0, 256, (3, 1, 4, 4), generator=g)
    loc = torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64)
    ls = torch.full_like(loc, -3.0)
    x = k.double() / 255
    per_pixel = torch.stack([dl_log_p(x.reshape(-1, 1)[i:i + 1], loc.reshape(-1, 1)[i:i + 1],
                                      ls.reshape(-1, 1)[i:i + 1]) for i in range(48)]).view(3, 16)
    total = dl_log_p(x, loc, ls)
    assert total.shape == (3,)
    torch.testing.assert_close(total, per_pixel.sum(1))
    # a value off the grid by less than half a level is scored as that level; a float log-scale works too
    torch.testing.assert_close(dl_log_p(x + 0.4 / 255, loc, -3.0), total)


def test_float32_is_accurate_in_the_tails_where_the_naive_difference_is_zero():
    x = torch.tensor([[0.5], [0.0], [1.0], [128 / 255]])
    loc = torch.tensor([[-30.0], [5.0], [-5.0], [128 / 255]])
    ls = torch.tensor([[-6.0], [-3.0], [-3.0], [-12.0]])
    lp32 = dl_log_p(x, loc, ls)
    lp64 = dl_log_p(x.double(), loc.double(), ls.double())
    assert bool(torch.isfinite(lp32).all())
    torch.testing.assert_close(lp32.double(), lp64, rtol=1e-5, atol=1e-3)
    naive = torch.sigmoid((x + 0.5 / 255 - loc) / ls.exp()) - torch.sigmoid((x - 0.5 / 255 - loc) / ls.exp())
    assert float(naive[0]) == 0.0  # log of it would be −inf: the stable form is needed
    # a sharp logistic centred on a level puts almost all of its mass there
    assert float(lp64[3]) > -1e-9


def test_gradients_pass_gradcheck_including_the_edge_levels():
    g = torch.Generator().manual_seed(1)
    x = torch.tensor([[0.0, 1.0, 0.5, 3 / 255, 254 / 255, 128 / 255]], dtype=torch.float64).repeat(2, 1)
    loc = torch.randn(2, 6, generator=g, dtype=torch.float64).mul(0.4).add(0.5).requires_grad_()
    ls = torch.randn(2, 6, generator=g, dtype=torch.float64).sub(2.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda m, s: dl_log_p(x, m, s), (loc, ls))
    # finite gradients far in the tails, in float32
    loc32 = torch.tensor([[-40.0, 40.0, 0.5]], requires_grad=True)
    ls32 = torch.tensor([[-6.0, -6.0, -15.0]], requires_grad=True)
    dl_log_p(torch.tensor([[0.5, 0.5, 0.5]]), loc32, ls32).sum().backward()
    assert bool(torch.isfinite(loc32.grad).all()) and bool(torch.isfinite(ls32.grad).all())


@pytest.mark.parametrize("loc,log_scale", [(0.3, -3.0), (-2.0, -2.0), (1.4, -1.0), (0.5, 2.0)])
def test_mean_is_the_expected_grey_level(loc, log_scale):
    p = level_probs(loc, log_scale)
    expected = (p * all_levels(256).squeeze(1)).sum()
    m = discretized_logistic_mean(torch.tensor(loc, dtype=torch.float64), log_scale)
    torch.testing.assert_close(m, expected, rtol=1e-10, atol=1e-12)


def test_rejects_bad_levels():
    with pytest.raises(ValueError, match="levels"):
        dl_log_p(torch.zeros(1, 1), torch.zeros(1, 1), 0.0, levels=1)


def dl_vae(seed=0, shape=(1, 6, 6), z=2):
    torch.manual_seed(seed)
    return vt.VAE(vt.MLPEncoder(shape, [32], z), vt.MLPDecoder(z, [32], (2 * shape[0], *shape[1:])),
                  "discretized_logistic")


def grey_images(n, seed=0):
    """Smooth-ish 6×6 grey-level images on the 256 levels, with some pixels exactly 0."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 1, 1, 1, generator=g)
    ramp = torch.linspace(0, 1, 6).view(1, 1, 1, 6)
    x = (a * ramp + 0.05 * torch.rand(n, 1, 6, 6, generator=g)).clamp(0, 1)
    x[..., 0] = 0.0
    return torch.round(x * 255) / 255


def test_vae_option_decodes_two_channels_and_scores_with_the_loss_function():
    model = dl_vae()
    x = grey_images(5)
    loc, log_scale = model.decode(torch.zeros(5, 2))
    assert loc.shape == log_scale.shape == x.shape
    params, _, _ = model(x)
    torch.testing.assert_close(model.log_likelihood(x, params), dl_log_p(x, *params))
    mean = model.mean(params)
    assert mean.shape == x.shape and bool(((mean >= 0) & (mean <= 1)).all())
    with pytest.raises(ValueError, match="twice the data's channels"):
        vt.VAE(vt.MLPEncoder(4, [], 2), vt.MLPDecoder(2, [], (3, 4)), "discretized_logistic").decode(
            torch.zeros(1, 2))


def test_vae_bounds_fit_and_evaluation_in_bits_per_dim():
    x = grey_images(256)
    data = torch.utils.data.TensorDataset(x, torch.zeros(256, dtype=torch.long))
    model = dl_vae()
    # a probability, so log P(x|z) ≤ 0 and so are the ELBO and every IWAE bound
    t = vt.elbo(model, x[:8], generator=torch.Generator().manual_seed(0))
    assert bool((t.reconstruction <= 0).all())
    before = vt.evaluate_model(model, data, k=20, device="cpu")
    vt.fit(model, data, epochs=15, batch_size=32, lr=3e-3, seed=0, progress=False, device="cpu")
    after = vt.evaluate_model(model, data, k=20, device="cpu")
    assert after["nll"] >= 0 and after["nll"] <= -after["elbo"] + 1e-6  # NLL ≥ 0; IWAE(20) ≥ ELBO here
    assert math.isclose(after["bits_per_dim"], after["nll"] / (36 * math.log(2)), rel_tol=1e-12)
    # training moves the model well below a uniform code over the 256 levels (8 bits/dim)
    assert after["bits_per_dim"] < 8 - 1 and after["bits_per_dim"] < before["bits_per_dim"] - 1
    with torch.no_grad():
        bound = vt.iwae_bound(model, x[:4], 50, generator=torch.Generator().manual_seed(3))
    assert bound.shape == (4,) and bool((bound <= 0).all())  # a bound on a log-probability


@pytest.mark.parametrize("kind,hidden", [("mlp", [16]), ("conv", [32])])
def test_cli_builds_a_two_channel_decoder_for_the_discretised_logistic(kind, hidden):
    from vae_tutorial.cli import build_model

    model = build_model({"model": kind, "image_shape": [1, 28, 28], "latent_dim": 3, "hidden": hidden,
                         "likelihood": "discretized_logistic"})
    loc, log_scale = model.decode(torch.zeros(2, 3))
    assert loc.shape == log_scale.shape == (2, 1, 28, 28)
    x = torch.rand(2, 1, 28, 28)
    assert vt.elbo(model, x).elbo.shape == (2,)
