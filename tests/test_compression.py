"""Tests for vae_tutorial.analysis.compression: rANS, bits-back coding with a VAE, and the baselines."""
import math

import numpy as np
import pytest
import torch

import vae_tutorial as vt
from vae_tutorial import compression as C


def test_ans_round_trip_and_codelength():
    rng = np.random.default_rng(1)
    prec = 12
    probs = rng.dirichlet(np.ones(7) * 0.5, size=3000)           # a different table per symbol
    freqs = C._quantise(probs, prec)
    assert (freqs >= 1).all() and (freqs.sum(1) == 1 << prec).all()
    starts = np.cumsum(freqs, 1) - freqs
    symbols = [int(rng.choice(7, p=p)) for p in probs]
    stack = C.ANSStack(np.random.default_rng(0))
    start_state = stack.state()
    for s, f, c in zip(symbols, freqs, starts):
        stack.push(int(c[s]), int(f[s]), prec)
    ideal = sum(prec - math.log2(f[s]) for s, f in zip(symbols, freqs))
    # rANS costs the information content plus at most a few words of head and rounding.
    assert ideal <= stack.bit_length() <= ideal + 100 + 64
    decoded = []
    for f, c in zip(freqs[::-1], starts[::-1]):
        r = stack.peek(prec)
        s = int(np.searchsorted(c, r, side="right") - 1)
        stack.pop(int(c[s]), int(f[s]), prec)
        decoded.append(s)
    assert decoded[::-1] == symbols
    assert stack.state() == start_state and stack.clean_words == 0


def test_ans_rejects_bad_symbols():
    stack = C.ANSStack()
    with pytest.raises(ValueError):
        stack.push(0, 0, 8)
    r = stack.peek(8)
    with pytest.raises(ValueError):
        stack.pop((r + 1) % 256, 1, 8)


def test_pop_from_empty_message_draws_clean_bits():
    stack = C.ANSStack(np.random.default_rng(3))
    for _ in range(10):                       # each pop reads 16 bits: 160 bits > the 64-bit head
        stack.pop(stack.peek(16), 1, 16)
    assert stack.clean_words >= 2


def test_gaussian_bucket_frequencies():
    f = C.gaussian_bucket_frequencies(np.array([0.0, 2.0]), np.array([1.0, 0.05]), 6, 16)
    assert f.shape == (2, 64) and (f >= 1).all() and (f.sum(1) == 1 << 16).all()
    # At the prior the buckets have equal mass; a narrow posterior concentrates on few buckets.
    assert f[0].max() - f[0].min() <= 8          # rounding only: 1024 ± a few
    centres = C.prior_bucket_centres(6)
    assert abs(centres[f[1].argmax()] - 2.0) < 0.2 and f[1].max() > 0.3 * (1 << 16)
    assert np.allclose(centres, -centres[::-1])


def test_bernoulli_frequencies_clip():
    f = C.bernoulli_frequencies(torch.tensor([-100.0, 0.0, 100.0]), 8)
    assert f.tolist() == [1, 128, 255]


@pytest.fixture(scope="module")
def tiny_vae():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(4, 16, generator=g) > 0.5).float()
    x = protos[torch.randint(0, 4, (512,), generator=g)]
    x = torch.where(torch.rand(x.shape, generator=g) < 0.05, 1 - x, x)
    vae = vt.VAE(vt.MLPEncoder(16, [32], 3), vt.MLPDecoder(3, [32], 16))
    opt = torch.optim.Adam(vae.parameters(), 1e-2)
    for _ in range(300):
        opt.zero_grad()
        (-vt.elbo(vae, x).elbo.mean()).backward()
        opt.step()
    vae.eval()
    return vae, x


def test_bits_back_round_trip_and_rate(tiny_vae):
    vae, x = tiny_vae
    images = x[:60]
    res = C.bits_back_encode(vae, images, latent_bits=8, posterior_bits=16, seed=1)
    decoded, leftover = C.bits_back_decode(vae, res.message, len(images), (16,), latent_bits=8,
                                           posterior_bits=16)
    assert torch.equal(decoded, images)                     # lossless
    assert leftover[0] == C.ANSStack(np.random.default_rng(1)).head   # the clean bits come back
    assert len(leftover[1]) * 32 + 64 == res.clean_bits
    # The message grows by the ideal bits-back codelength, up to the coder's rounding.
    assert abs(res.bits - res.clean_bits - sum(res.ideal_bits)) < 64 + 0.01 * sum(res.ideal_bits)
    # ... and that codelength is close to −ELBO in bits (the discretisation costs little).
    with torch.no_grad():
        neg_elbo_bits = -vt.elbo(vae, images).elbo.mean().item() / math.log(2)
    assert abs(np.mean(res.ideal_bits) - neg_elbo_bits) < 1.0
    assert np.mean(res.ideal_bits) < 16                     # it compresses: raw is 16 bits


def test_bits_back_rejects_gaussian_decoder():
    vae = vt.VAE(vt.MLPEncoder(4, [8], 2), vt.MLPDecoder(2, [8], 4), likelihood="gaussian")
    with pytest.raises(ValueError):
        C.bits_back_encode(vae, torch.zeros(1, 4))


def test_lossless_baselines():
    rng = np.random.default_rng(0)
    zeros = np.zeros((20, 28, 28), dtype=bool)
    noise = rng.random((20, 28, 28)) < 0.5
    bz, bn = C.lossless_baselines(zeros), C.lossless_baselines(noise)
    keys = {f"{c}, {m}" for c in ("zlib", "gzip", "bz2", "lzma", "PNG") for m in ("per image", "whole set")}
    assert set(bz) == keys and set(bn) == keys
    for k in keys:
        assert bz[k] < bn[k]                                 # structure compresses, noise does not
    for c in ("zlib", "gzip", "bz2", "lzma"):
        assert bn[f"{c}, whole set"] >= 784                  # no codec beats 1 bit per fair coin
        assert bz[f"{c}, whole set"] < 100


def test_bits_back_parts_add_up(tiny_vae):
    vae, x = tiny_vae
    res = C.bits_back_encode(vae, x[:10], latent_bits=8, posterior_bits=16)
    assert len(res.lengths) == 10 and res.lengths[-1] == res.bits
    assert all(p == 8 * 3 for p in res.prior_bits)
    for t, a, b, c in zip(res.ideal_bits, res.prior_bits, res.pixel_bits, res.refund_bits):
        assert t == pytest.approx(a + b - c) and c > 0


def _two_part_by_hand(vae, x, delta):
    """The two-part codelength computed independently: scalar math.erf for the prior's cell
    masses and an explicit Bernoulli sum for the pixels, one image at a time."""
    out = []
    with torch.no_grad():
        for xi in x:
            mu = vae.encode(xi[None])[0][0].tolist()
            cell_bits = 0.0
            centre = []
            for m in mu:
                c = delta * round(m / delta)
                centre.append(c)
                cdf = [0.5 * (1 + math.erf(e / math.sqrt(2))) for e in (c - delta / 2, c + delta / 2)]
                cell_bits -= math.log2(cdf[1] - cdf[0])
            p1 = torch.sigmoid(vae.decode(torch.tensor([centre]))[0]).double().tolist()
            pix_bits = -sum(math.log2(p if v > 0.5 else 1 - p) for p, v in zip(p1, xi.tolist()))
            out.append((cell_bits, pix_bits))
    return np.array(out)


@pytest.mark.parametrize("delta", [0.3, 1.0, 2.5])
def test_two_part_codelength_matches_a_calculation_by_hand(tiny_vae, delta):
    vae, x = tiny_vae
    code = C.two_part_codelength(vae, x[:20], delta, batch_size=7)   # batches of 7, 7, 6
    ref = _two_part_by_hand(vae, x[:20], delta)
    assert code.cells.shape == (20, 3) and code.bits.shape == (20,)
    np.testing.assert_allclose(code.latent_bits.numpy(), ref[:, 0], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(code.pixel_bits.numpy(), ref[:, 1], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(code.bits.numpy(), ref.sum(1), rtol=1e-5, atol=1e-4)
    assert (code.cells * delta - vae.encode(x[:20])[0].detach()).abs().max() <= delta / 2 + 1e-6


def test_two_part_code_is_no_shorter_than_the_discretised_marginal(tiny_vae):
    # Sending one cell can never beat −log₂ Σ_cells P(cell) p(x|cell), the codelength of the
    # discretised model's marginal; the excess is −log₂ of the chosen cell's posterior mass.
    vae, x = tiny_vae
    delta, half = 1.0, 7
    code = C.two_part_codelength(vae, x[:30], delta)
    k = torch.arange(-half, half + 1, dtype=torch.float64)
    grid = torch.cartesian_prod(k, k, k)                              # (15³, 3) cell indices
    mass = torch.special.ndtr((grid + 0.5) * delta) - torch.special.ndtr((grid - 0.5) * delta)
    log_prior = mass.log().sum(1)                                     # ln P(cell)
    with torch.no_grad():
        logits = vae.decode((grid * delta).float())                   # (cells, 16)
        for n, xi in enumerate(x[:30]):
            log_px = vt.bernoulli_log_likelihood(logits, xi.expand_as(logits)).double()
            marginal_bits = -torch.logsumexp(log_prior + log_px, 0).item() / math.log(2)
            assert code.bits[n].item() >= marginal_bits - 1e-6
    # the prior over this window holds all but a negligible share of the mass
    assert mass.prod(1).sum().item() > 1 - 1e-9


def test_two_part_cell_costs_one_more_bit_per_coordinate_when_delta_halves(tiny_vae):
    vae, x = tiny_vae
    fine = C.two_part_codelength(vae, x[:50], 1e-3)
    finer = C.two_part_codelength(vae, x[:50], 5e-4)
    # P(z̄) ≈ p(z̄) δ^Z for small δ: halving δ adds Z = 3 bits, the pixels barely change
    np.testing.assert_allclose((finer.latent_bits - fine.latent_bits).numpy(), 3.0, atol=0.01)
    np.testing.assert_allclose(finer.pixel_bits.numpy(), fine.pixel_bits.numpy(), atol=0.05)


def test_two_part_codelength_rejects_bad_arguments(tiny_vae):
    vae, x = tiny_vae
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(vt.errors.ArgumentError, match="delta"):
            C.two_part_codelength(vae, x[:2], bad)
    gauss = vt.VAE(vt.MLPEncoder(4, [8], 2), vt.MLPDecoder(2, [8], 4), likelihood="gaussian")
    with pytest.raises(vt.errors.ArgumentError, match="bernoulli"):
        C.two_part_codelength(gauss, torch.zeros(1, 4), 1.0)
