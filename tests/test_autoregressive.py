"""vae_tutorial.models.autoregressive: causal masks, a normalised likelihood, sampling, bounds, fit."""
import itertools
import math

import pytest
import torch

import vae_tutorial as vt
from vae_tutorial.models.autoregressive import (
    MaskedConv2d,
    PixelCNNDecoder,
    PixelVAE,
    causal_mask,
    rate_floor_logvar,
)
from vae_tutorial.errors import ArgumentError, ArgumentTypeError


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def model(shape=(1, 4, 4), z=3, channels=6, layers=2, kernel=3, floor=0.0, seed=0):
    torch.manual_seed(seed)
    dec = PixelCNNDecoder(z, shape, channels=channels, layers=layers, kernel_size=kernel, z_hidden=8)
    return PixelVAE(vt.MLPEncoder(shape, [8], z), dec, rate_floor=floor)


def all_images(h, w):
    """Every binary image of size h × w, (2^(h w), 1, h, w)."""
    bits = torch.tensor(list(itertools.product([0.0, 1.0], repeat=h * w)))
    return bits.view(-1, 1, h, w)


def test_masks_by_hand():
    assert causal_mask(3, "A").tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert causal_mask(3, "B").tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    assert causal_mask(1, "A").sum() == 0 and causal_mask(1, "B").sum() == 1


@pytest.mark.parametrize("layers,kernel", [(0, 3), (2, 3), (1, 5)])
def test_decoder_is_causal_in_raster_order(layers, kernel):
    """d logit_i / d x_j = 0 for every j ≥ i (the type-A mask excludes j = i), and ≠ 0 for some j < i."""
    torch.manual_seed(1)
    h = w = 5
    dec = PixelCNNDecoder(2, (1, h, w), channels=4, layers=layers, kernel_size=kernel, z_hidden=4)
    z = torch.randn(1, 2)
    x = torch.bernoulli(torch.full((1, 1, h, w), 0.5), generator=gen(2))
    jac = torch.autograd.functional.jacobian(lambda v: dec(z, v.view(1, 1, h, w)).reshape(-1),
                                             x.reshape(-1))
    d = h * w
    assert jac.shape == (d, d)
    upper = torch.triu(torch.ones(d, d, dtype=torch.bool))  # j ≥ i, the diagonal included
    assert jac[upper].abs().max() == 0.0
    assert jac[~upper].abs().max() > 0  # the earlier pixels are used
    # the last pixel depends on exactly receptive_field() earlier pixels (away from borders
    # this equals the count; on a 5×5 image the window may be cut off, so ≤)
    assert int(jac[-1].ne(0).sum()) <= dec.receptive_field()


def test_receptive_field_counts():
    def rf(layers, kernel):
        return PixelCNNDecoder(2, (1, 28, 28), 4, layers, kernel).receptive_field()

    assert rf(0, 1) == 0 and rf(0, 3) == 4 and rf(0, 5) == 12 and rf(0, 7) == 24
    assert rf(2, 5) > rf(1, 5) > rf(0, 5)
    # interior pixel of a big image: the Jacobian count equals receptive_field()
    torch.manual_seed(0)
    dec = PixelCNNDecoder(2, (1, 15, 15), 4, 1, 3, z_hidden=4)
    x = torch.bernoulli(torch.full((1, 1, 15, 15), 0.5), generator=gen(1)).requires_grad_()
    dec(torch.zeros(1, 2), x)[0, 0, 10, 7].backward()
    assert int(x.grad.ne(0).sum()) == dec.receptive_field()


def test_likelihood_is_normalised_over_all_images():
    m = model(shape=(1, 3, 3)).double()
    xs = all_images(3, 3).double()  # 512 images
    z = torch.randn(1, 3, generator=gen(3), dtype=torch.float64).expand(len(xs), 3)
    with torch.no_grad():
        logp = m.log_likelihood(xs, m.decode(z, xs))
    assert torch.logsumexp(logp, 0).abs() < 1e-9


def test_sampling_matches_the_likelihood():
    m = model(shape=(1, 2, 2), z=2).eval()
    z = torch.tensor([[0.3, -1.2]])
    xs = all_images(2, 2)
    with torch.no_grad():
        probs = m.log_likelihood(xs, m.decode(z.expand(16, 2), xs)).exp()
        draws = m.sample_given(z.expand(20000, 2), generator=gen(4))
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    codes = (draws.view(-1, 4) * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(1).long()
    freq = torch.bincount(codes, minlength=16).float() / len(codes)
    assert 0.5 * (freq - probs).abs().sum() < 0.02  # total variation; its noise is ≈ 0.01


def test_elbo_and_iwae_bound_log_p_on_an_exactly_computable_case():
    """Z = 1, 2×2 images: log p_θ(x) by quadrature over z; ELBO ≤ L_k ≈ log p_θ(x)."""
    m = model(shape=(1, 2, 2), z=1, seed=3).double().eval()
    x = all_images(2, 2).double()[[0, 5, 15]]
    grid = torch.linspace(-8, 8, 4001, dtype=torch.float64)
    with torch.no_grad():
        xx = x.repeat_interleave(len(grid), 0)
        zz = grid.repeat(len(x)).unsqueeze(1)
        logp_xz = m.log_likelihood(xx, m.decode(zz, xx)).view(len(x), -1)
        log_joint = logp_xz - 0.5 * grid**2 - 0.5 * math.log(2 * math.pi)
        log_px = torch.logsumexp(log_joint, 1) + math.log(grid[1] - grid[0])
        elbo = torch.stack([vt.elbo(m, x, generator=gen(s)).elbo for s in range(400)]).mean(0)
        iwae = vt.iwae_bound(m, x, 4000, generator=gen(5))
    assert (elbo <= log_px + 1e-3).all()
    assert torch.allclose(iwae, log_px, atol=0.02)


def test_elbo_terms_shapes_determinism_and_gradients():
    m = model()
    x = torch.bernoulli(torch.full((5, 1, 4, 4), 0.4), generator=gen(0))
    t1 = vt.elbo(m, x, beta=2.0, generator=gen(7))
    t2 = vt.elbo(m, x, beta=2.0, generator=gen(7))
    assert t1.elbo.shape == t1.kl.shape == t1.reconstruction.shape == (5,)
    assert t1.kl_per_dim.shape == (5, 3)
    assert torch.equal(t1.elbo, t2.elbo)
    assert torch.allclose(t1.elbo, t1.reconstruction - 2.0 * t1.kl)
    mu, logvar = m.encode(x)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * logvar).exp()), torch.distributions.Normal(0.0, 1.0)
    ).sum(-1)
    assert torch.allclose(t1.kl, ref, atol=1e-5)
    (-t1.elbo.mean()).backward()
    for part in (m.encoder, m.decoder.first, m.decoder.blocks[0], m.decoder.z_net):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    # the masked-out weights get no gradient
    first = m.decoder.first
    assert first.weight.grad[first.mask == 0].abs().max() == 0


def test_iwae_chunks_sum_to_k():
    m = model()
    x = torch.bernoulli(torch.full((3, 1, 4, 4), 0.4), generator=gen(0))
    chunks = list(m.log_importance_weights(x, 10, generator=gen(1), max_elements=3 * 6 * 16 * 4))
    assert [c.shape for c in chunks] == [(4, 3), (4, 3), (2, 3)]
    with pytest.raises(ArgumentError):
        list(m.log_importance_weights(x, 0))


def test_rate_floor_guarantees_the_kl():
    for delta in (0.01, 0.5, 3.0):
        s = math.exp(rate_floor_logvar(delta))
        assert s < 1 and abs(0.5 * (s - 1 - math.log(s)) - delta) < 1e-9
    assert rate_floor_logvar(0.0) == 0.0
    m = model(floor=6.0)
    x = torch.bernoulli(torch.full((64, 1, 4, 4), 0.5), generator=gen(0))
    with torch.no_grad():  # extreme encoder outputs too
        m.encoder.net[-1].bias.fill_(0.0)
        m.encoder.net[-1].bias[3:].fill_(40.0)  # a huge log σ² before the cap
        kl = vt.elbo(m, x).kl
    assert kl.min() >= 6.0 - 1e-5
    assert vt.elbo(model(floor=0.0), x).kl.min() < 1.0


def test_fit_evaluate_and_sample_integration():
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(
        torch.bernoulli(torch.full((48, 1, 8, 8), 0.3), generator=gen(0)), torch.zeros(48)
    )
    m = model(shape=(1, 8, 8), z=2, floor=1.0)
    hist = vt.fit(m, data, epochs=2, batch_size=16, beta=vt.linear_warmup(1), free_bits=0.1,
                  progress=False)
    assert len(hist) == 2 and all(math.isfinite(v) for v in hist["train_elbo"])
    r = vt.evaluate_model(m, data, k=5, max_examples=20)
    assert r["nll"] <= -r["elbo"] + 1.0 and r["kl"] >= 1.0 - 1e-4
    assert 0 <= r["active_units"] <= 2
    samples = m.sample(3, generator=gen(1))
    assert samples.shape == (3, 1, 8, 8) and set(samples.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(samples, m.sample(3, generator=gen(1)))
    rec = m.reconstruct(data.tensors[0][:4])
    assert rec.shape == (4, 1, 8, 8) and ((rec > 0) & (rec < 1)).all()


def test_bad_arguments():
    with pytest.raises(ArgumentError, match="odd"):
        causal_mask(4, "A")
    with pytest.raises(ArgumentError, match="mask_type"):
        MaskedConv2d(1, 2, 3, "C")
    with pytest.raises(ArgumentError, match="one channel"):
        PixelCNNDecoder(2, (3, 8, 8))
    with pytest.raises(ArgumentTypeError, match="image_shape"):
        PixelCNNDecoder(2, 784)
    with pytest.raises(ArgumentError, match="layers"):
        PixelCNNDecoder(2, (1, 8, 8), layers=-1)
    with pytest.raises(ArgumentTypeError, match="PixelCNNDecoder"):
        PixelVAE(vt.MLPEncoder(4, [4], 2), vt.MLPDecoder(2, [4], 4))
    with pytest.raises(ArgumentError, match="rate_floor"):
        model(floor=-1.0)
    with pytest.raises(ArgumentError, match="delta_per_dim"):
        rate_floor_logvar(-0.1)
