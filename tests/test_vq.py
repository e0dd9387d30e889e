"""vae_tutorial.models.vq: nearest codes by brute force, straight-through and loss gradients by autograd, the code prior."""
import itertools
import math

import pytest
import scipy.stats
import torch

from vae_tutorial.maths.discrete import chi_square_statistic
from vae_tutorial.errors import ArgumentError, ArgumentTypeError
from vae_tutorial.models.vq import (
    VQVAE,
    CodePrior,
    VectorQuantizer,
    check_straight_through,
    nearest_code,
    straight_through,
    vq_bound,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_nearest_code_is_the_brute_force_argmin():
    z = torch.randn(3, 4, 5, 6, generator=gen(), dtype=torch.float64)
    codebook = torch.randn(7, 4, generator=gen(1), dtype=torch.float64)
    got = nearest_code(z, codebook)
    for b, i, j in itertools.product(range(3), range(5), range(6)):
        distances = [float(((z[b, :, i, j] - codebook[k]) ** 2).sum()) for k in range(7)]
        assert got[b, i, j].item() == min(range(7), key=distances.__getitem__)


def test_straight_through_gradient_wrt_z_e_is_the_gradient_wrt_z_q():
    z_e = torch.randn(2, 3, 4, 4, generator=gen(2), dtype=torch.float64, requires_grad=True)
    z_q = torch.randn(2, 3, 4, 4, generator=gen(3), dtype=torch.float64, requires_grad=True)

    def loss(v):  # any downstream function: a nonlinear one
        return (torch.tanh(v) ** 3).sum() + (v[:, 0] * v[:, 1]).sum()

    out = straight_through(z_e, z_q)
    assert torch.allclose(out.detach(), z_q.detach(), rtol=0, atol=1e-14)  # z_e + (z_q − z_e), rounded
    g_e, g_q = torch.autograd.grad(loss(out), (z_e, z_q), allow_unused=True)
    (g_at_zq,) = torch.autograd.grad(loss(z_q), z_q)
    assert torch.allclose(g_e, g_at_zq)
    assert g_q is None or not g_q.any()  # no gradient reaches the codebook through this path


def quantiser(k=5, d=3, seed=4):
    torch.manual_seed(seed)
    vq = VectorQuantizer(k, d).double()
    with torch.no_grad():
        vq.codebook.copy_(torch.randn(k, d, generator=gen(seed), dtype=torch.float64))
    return vq


def test_codebook_loss_moves_only_the_codes_towards_the_encoder_outputs():
    vq = quantiser()
    z_e = torch.randn(2, 3, 2, 2, generator=gen(5), dtype=torch.float64, requires_grad=True)
    _, idx, codebook, _ = vq(z_e)
    g_z, g_c = torch.autograd.grad(codebook.sum(), (z_e, vq.codebook), allow_unused=True)
    assert g_z is None or not g_z.any()
    # by hand: ∂/∂e_k Σ_{positions with code k} ‖z_e − e_k‖² = Σ 2 (e_k − z_e); unused codes get 0
    want = torch.zeros_like(vq.codebook)
    flat_z = z_e.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    for pos, k in enumerate(idx.flatten().tolist()):
        want[k] += 2 * (vq.codebook[k].detach() - flat_z[pos])
    assert torch.allclose(g_c, want)


def test_commitment_loss_moves_only_the_encoder_outputs():
    vq = quantiser()
    z_e = torch.randn(2, 3, 2, 2, generator=gen(6), dtype=torch.float64, requires_grad=True)
    _, idx, _, commitment = vq(z_e)
    g_z, g_c = torch.autograd.grad(commitment.sum(), (z_e, vq.codebook), allow_unused=True)
    assert g_c is None or not g_c.any()
    e = vq.codebook.detach()[idx].permute(0, 3, 1, 2)
    assert torch.allclose(g_z, 2 * (z_e.detach() - e))


def test_the_two_terms_are_the_same_squared_distance_per_image():
    vq = quantiser()
    z_e = torch.randn(4, 3, 3, 3, generator=gen(7), dtype=torch.float64)
    _, idx, codebook, commitment = vq(z_e)
    brute = torch.tensor([sum(float(((z_e[b, :, i, j] - vq.codebook.detach()[idx[b, i, j]]) ** 2).sum())
                              for i in range(3) for j in range(3)) for b in range(4)], dtype=torch.float64)
    assert torch.allclose(codebook.detach(), brute) and torch.allclose(commitment.detach(), brute)


def test_vqvae_loss_routes_each_gradient_where_it_belongs():
    torch.manual_seed(0)
    model = VQVAE(num_codes=8, code_dim=4, channels=4).double()
    x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.3, dtype=torch.float64), generator=gen(8))
    t = model.terms(x)
    assert torch.allclose(t.loss, -t.reconstruction + t.codebook + model.beta * t.commitment)
    assert t.indices.shape == (3, 7, 7)
    enc, dec, cb = list(model.encoder.parameters()), list(model.decoder.parameters()), model.quantizer.codebook
    grads = torch.autograd.grad(-t.reconstruction.sum(), enc + dec + [cb], allow_unused=True)
    assert all(g is not None and g.any() for g in grads[:-1])  # the encoder learns through the straight-through path
    assert grads[-1] is None or not grads[-1].any()  # the codebook does not learn from the reconstruction
    grads = torch.autograd.grad(t.codebook.sum(), dec + [cb], allow_unused=True)
    assert all(g is None or not g.any() for g in grads[:-1]) and grads[-1].any()


def test_vq_bound_adds_the_rate_of_the_prior():
    torch.manual_seed(0)
    model = VQVAE(num_codes=8, code_dim=4, channels=4).eval()
    x = torch.bernoulli(torch.full((2, 1, 28, 28), 0.3), generator=gen(9))
    uniform = vq_bound(model, None, x)
    assert torch.allclose(uniform["rate"], torch.full((2,), 49 * math.log(8)))
    prior = CodePrior(8, (7, 7), channels=4, layers=1)
    learned = vq_bound(model, prior, x)
    assert torch.allclose(learned["distortion"], uniform["distortion"])
    assert torch.allclose(learned["rate"], -prior.log_prob(model.encode_indices(x)))
    assert torch.allclose(learned["bound"], learned["distortion"] + learned["rate"])


def test_code_prior_is_normalised_over_every_grid():
    torch.manual_seed(1)
    prior = CodePrior(3, (2, 2), channels=5, layers=2, kernel_size=3).double()
    grids = torch.tensor(list(itertools.product(range(3), repeat=4))).view(-1, 2, 2)
    with torch.no_grad():
        total = prior.log_prob(grids).exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-12)


def test_code_prior_is_causal():
    torch.manual_seed(2)
    prior = CodePrior(4, (4, 4), channels=6, layers=2, kernel_size=3)
    k = torch.randint(0, 4, (1, 4, 4), generator=gen(10))
    with torch.no_grad():
        base = prior.logits(k)
        for pos in range(16):  # change one code: no logit at or before it in raster order moves
            other = k.clone()
            other.view(-1)[pos] = (other.view(-1)[pos] + 1) % 4
            moved = (prior.logits(other) - base).abs().amax(1).flatten().gt(1e-6)
            assert not moved[: pos + 1].any()


def test_code_prior_samples_have_the_prior_law():
    torch.manual_seed(3)
    prior = CodePrior(3, (1, 2), channels=5, layers=1, kernel_size=3).double()
    with torch.no_grad():
        grids = torch.tensor(list(itertools.product(range(3), repeat=2))).view(-1, 1, 2)
        probs = prior.log_prob(grids).exp()
        draws = prior.sample(30_000, generator=gen(11))
    counts = torch.bincount(draws[:, 0, 0] * 3 + draws[:, 0, 1], minlength=9)
    x2, dof = chi_square_statistic(counts, probs)
    assert scipy.stats.chi2.sf(x2, dof) > 1e-4


def test_check_straight_through(capsys):
    assert check_straight_through(lambda ze, zq: ze + (zq - ze).detach()) is True
    assert "PASS" in capsys.readouterr().out
    for wrong, words in [(lambda ze, zq: zq, "gradient with respect to argument 1"),
                         (lambda ze, zq: ze, "must be the quantised"),
                         (lambda ze, zq: ze + (zq - ze), "gradient with respect to argument 1"),
                         (lambda ze, zq: zq.detach(), "no gradient")]:
        assert check_straight_through(wrong) is False
        out = capsys.readouterr().out
        assert "FAIL" in out and words in out, out


def test_arguments_are_checked():
    with pytest.raises(ArgumentError, match="num_codes"):
        VectorQuantizer(1, 3)
    with pytest.raises(ArgumentError, match="z_e"):
        quantiser()(torch.zeros(1, 4, 2, 2, dtype=torch.float64))
    with pytest.raises(ArgumentError, match="init_from"):
        quantiser(k=5).init_from(torch.zeros(1, 3, 2, 2, dtype=torch.float64))
    with pytest.raises(ArgumentError, match="28"):
        VQVAE(8, 4, 4).terms(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ArgumentTypeError, match="grid"):
        CodePrior(4, 7)
    with pytest.raises(ArgumentError, match="indices"):
        CodePrior(4, (7, 7)).log_prob(torch.zeros(2, 6, 6, dtype=torch.long))
    with pytest.raises(ArgumentTypeError, match="fn"):
        check_straight_through(3)
