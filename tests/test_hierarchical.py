"""vae_tutorial.models.hierarchical: the L-layer VAE's bound, its per-layer KL terms, and the fit/evaluate hooks."""
import math

import pytest
import torch

import vae_tutorial as vt
from vae_tutorial.errors import ArgumentError, ArgumentTypeError
from vae_tutorial.models.hierarchical import HierarchicalVAE

KINDS = [("top_down", "precision"), ("top_down", "residual"), ("bottom_up", "precision")]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def binary(b, d=784, seed=0):
    """Structured binary images: noisy copies of four random prototypes (learnable quickly)."""
    g = gen(seed)
    protos = torch.rand(4, d, generator=g)
    idx = torch.randint(0, 4, (b,), generator=g)
    return torch.bernoulli(protos[idx].clamp(0.05, 0.95), generator=g).reshape(b, 1, 28, 28) if d == 784 \
        else torch.bernoulli(protos[idx].clamp(0.05, 0.95), generator=g)


def small(inference="top_down", merge="precision", dims=(6, 3), d=(1, 28, 28), hidden=(32, 16), seed=0):
    torch.manual_seed(seed)
    return HierarchicalVAE.mlp(dims, hidden[:len(dims)], in_features=d, inference=inference, merge=merge)


def randomise(model, scale=0.7, seed=1):
    """Move every weight away from the small initialisation, so the layers interact."""
    g = gen(seed)
    with torch.no_grad():
        for p in model.parameters():  # weights scaled by 1/√fan-in, so activations stay O(1)
            fan_in = p.shape[1] if p.dim() > 1 else 1
            p.add_(scale / math.sqrt(fan_in) * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("inference,merge", KINDS)
@pytest.mark.parametrize("ctor", ["mlp", "conv"])
def test_shapes_and_interface(ctor, inference, merge, skip):
    torch.manual_seed(0)
    model = getattr(HierarchicalVAE, ctor)((5, 3), 16, inference=inference, merge=merge, skip=skip)
    x = binary(4)
    t = vt.elbo(model, x, generator=gen())
    assert t.elbo.shape == t.reconstruction.shape == t.kl.shape == (4,)
    assert t.kl_per_dim.shape == (4, 8)
    torch.testing.assert_close(t.elbo, t.reconstruction - t.kl)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (4, 8) and model.latent_dim == 8
    z_in = mu if skip else mu[:, model.layer_slices()[0]]  # skip: the decoder reads every layer
    assert model.decode(z_in).shape == x.shape
    assert model.reconstruct(x).shape == x.shape
    s = model.sample(3, generator=gen())
    assert s.shape == (3, 1, 28, 28) and s.min() >= 0 and s.max() <= 1
    assert model.layer_kl(x, generator=gen()).shape == (4, 2)
    assert [z.shape for z in model.prior_sample(2, generator=gen())] == [(2, 5), (2, 3)]
    vt.errors.check_model(model)


@pytest.mark.parametrize("inference,merge", KINDS)
def test_layer_kl_sums_to_kl_and_top_down_terms_are_nonnegative(inference, merge):
    model = randomise(small(inference, merge))
    x = binary(16)
    t = model.elbo_terms(x, generator=gen(3))
    per_layer = model.layer_kl(x, generator=gen(3))  # the same noise
    torch.testing.assert_close(per_layer.sum(-1), t.kl)
    for s, col in zip(model.layer_slices(), per_layer.T):
        torch.testing.assert_close(t.kl_per_dim[:, s].sum(-1), col)
    if inference == "top_down":  # analytic KLs between Gaussians: ≥ 0 for every example and dim
        assert (t.kl_per_dim >= -1e-6).all()
    else:  # only the top layer (against N(0, I)) is in closed form
        assert (t.kl_per_dim[:, model.layer_slices()[-1]] >= -1e-6).all()
    # a rate is ≥ 0 in expectation, for every layer's estimator
    many = torch.stack([model.layer_kl(x, generator=gen(s)) for s in range(40)]).mean((0, 1))
    assert (many > 0).all()


def test_top_down_kl_matches_torch_distributions():
    model = randomise(small("top_down", "residual"))
    x = binary(5)
    zs, q, p = model._chain(model._features(x), gen(0))
    mine = model._kl_per_dim(zs, q, p)
    D = torch.distributions
    for i, (mu_q, lv_q) in enumerate(q):
        mu_p, lv_p = p[i] if p[i] is not None else (torch.zeros_like(mu_q), torch.zeros_like(mu_q))
        ref = D.kl_divergence(D.Normal(mu_q, (0.5 * lv_q).exp()), D.Normal(mu_p, (0.5 * lv_p).exp()))
        torch.testing.assert_close(mine[i], ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("inference", ["top_down", "bottom_up"])
def test_one_layer_is_the_plain_vae(inference):
    """With L = 1 the bound is E_q[log p(x|z)] − KL(N(μ, σ²) ‖ N(0, I)), as for vt.VAE."""
    model = randomise(small(inference, dims=(4,), hidden=(32,)), scale=0.3)
    x = binary(6)
    t = model.elbo_terms(x, generator=gen(7))
    h = model.trunk(x)
    mu, lv = model.heads[0](h).chunk(2, -1)
    z = vt.reparameterize(mu, lv, gen(7))
    rec = vt.bernoulli_log_likelihood(model.decoder(z), x)
    torch.testing.assert_close(t.elbo, rec - vt.kl_standard_normal(mu, lv))
    torch.testing.assert_close(model.encode(x)[0], mu)


@pytest.mark.parametrize("inference,merge", KINDS)
def test_bounds_below_the_exact_log_likelihood(inference, merge):
    """Two pixels, two 1-d layers: log p(x) by quadrature; ELBO ≤ IWAE_k ≤ log p(x), IWAE_k → log p(x)."""
    model = randomise(small(inference, merge, dims=(1, 1), d=2, hidden=(8, 8)), scale=0.2).double()
    grid = torch.linspace(-9, 9, 1201, dtype=torch.float64)
    dz = float(grid[1] - grid[0])
    z2 = grid.unsqueeze(1)  # (G, 1)
    mu_p, lv_p = model.priors[0](z2).chunk(2, -1)  # p(z_1 | z_2) on the grid
    z1 = grid.view(1, -1)  # (1, G)
    log_p_z1 = -0.5 * (math.log(2 * math.pi) + lv_p + (z1 - mu_p) ** 2 * torch.exp(-lv_p))  # (G, G)
    log_p_z2 = -0.5 * (math.log(2 * math.pi) + z2 ** 2)
    logits = model.decoder(grid.view(-1, 1))  # (G, 2) over z_1
    xs = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=torch.float64)
    exact = []
    for x in xs:
        log_px_z1 = vt.bernoulli_log_likelihood(logits, x.expand(len(grid), 2))  # (G,)
        joint = log_p_z2 + log_p_z1 + log_px_z1.view(1, -1)
        exact.append(torch.logsumexp(joint.flatten(), 0) + 2 * math.log(dz))
    exact = torch.stack(exact)
    assert abs(float(torch.logsumexp(exact.detach(), 0))) < 1e-6  # the four probabilities sum to one
    x = xs.repeat(2000, 1)
    with torch.no_grad():
        elbo = model.elbo_terms(x, generator=gen(0)).elbo.view(2000, 4).mean(0)
        iwae = torch.stack([vt.iwae_bound(model, xs, 2000, generator=gen(s)) for s in range(5)]).mean(0)
    exact = exact.detach()
    assert (elbo < exact - 0.02).all()  # a real gap: q is not the posterior
    assert (iwae <= exact + 0.01).all() and (iwae > elbo + 0.02).all()
    if merge == "residual":  # light-tailed weights here: IWAE_2000 is within 0.01 nats of log p(x)
        assert (exact - iwae).abs().max() < 0.01


def test_log_weights_chunks_and_iwae():
    model = small()
    x = binary(3)
    chunks = list(model.log_importance_weights(x, 10, generator=gen(), max_elements=3 * 784 * 4))
    assert [c.shape for c in chunks] == [(4, 3), (4, 3), (2, 3)]
    lw = torch.cat(chunks)
    bound = vt.iwae_bound(model, x, 10, generator=gen(), max_elements=3 * 784 * 4)
    torch.testing.assert_close(torch.logsumexp(lw, 0) - math.log(10), bound)
    # k = 1: the log weight is a one-sample ELBO, whose mean matches the ELBO's
    one = torch.cat([next(model.log_importance_weights(x, 1, generator=gen(s))) for s in range(300)]).mean(0)
    e = torch.stack([model.elbo_terms(x, generator=gen(1000 + s)).elbo for s in range(300)]).mean(0)
    torch.testing.assert_close(one.detach(), e.detach(), atol=1.0, rtol=0)


@pytest.mark.parametrize("skip", [False, True])
def test_gradients_flow_to_every_parameter(skip):
    for inference, merge in KINDS:
        torch.manual_seed(0)
        model = HierarchicalVAE.mlp((6, 3), (32, 16), inference=inference, merge=merge, skip=skip)
        loss = -model.elbo_terms(binary(8), generator=gen()).elbo.mean()
        loss.backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, (inference, merge, missing)


@pytest.mark.parametrize("inference", ["top_down", "bottom_up"])
def test_fit_decreases_loss_and_is_seeded(inference, tmp_path):
    data = binary(256, seed=5)
    a, b = small(inference), small(inference)
    before = -float(vt.elbo(a, data, generator=gen()).elbo.detach().mean())
    h = vt.fit(a, data, epochs=1, batch_size=16, lr=3e-3, device="cpu", progress=False, free_bits=0.05)
    after = -float(vt.elbo(a, data, generator=gen()).elbo.detach().mean())
    assert after < before - 10
    vt.fit(b, data, epochs=1, batch_size=16, lr=3e-3, device="cpu", progress=False, free_bits=0.05)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)  # same seed, same weights
    assert len(h["train_elbo"]) == 1


def test_fit_iwae_checkpoint_resume_and_evaluate(tmp_path):
    data = binary(64, seed=2)
    ck = tmp_path / "hvae.pt"
    model = small()
    vt.fit(model, data, epochs=1, batch_size=32, device="cpu", progress=False, objective="iwae", iwae_k=3,
           checkpoint=ck)
    resumed = small()
    h = vt.fit(resumed, data, epochs=2, batch_size=32, device="cpu", progress=False, objective="iwae", iwae_k=3,
               checkpoint=ck)
    assert [r["epoch"] for r in h.records] == [1, 2]
    r = vt.evaluate_model(resumed, data, k=20, device="cpu")
    assert r["nll"] <= -r["elbo"] + 5 and 0 <= r["active_units"] <= 9
    assert math.isfinite(r["bits_per_dim"])


def test_seeded_determinism():
    x = binary(4)
    a, b = small(), small()
    torch.testing.assert_close(a.elbo_terms(x, generator=gen(4)).elbo, b.elbo_terms(x, generator=gen(4)).elbo)
    torch.testing.assert_close(a.sample(2, generator=gen(1)), b.sample(2, generator=gen(1)))
    torch.testing.assert_close(a.encode(x)[0], a.encode(x)[0])


@pytest.mark.parametrize("kwargs,error", [
    ({"latent_dims": ()}, ArgumentError),
    ({"latent_dims": (4, 0)}, ArgumentError),
    ({"latent_dims": 4}, ArgumentTypeError),
    ({"latent_dims": (4, 2), "hidden": (8,)}, ArgumentError),
    ({"inference": "sideways"}, ArgumentError),
    ({"merge": "average"}, ArgumentError),
    ({"activation": "tanhh"}, ArgumentError),
    ({"hidden": "wide"}, ArgumentTypeError),
    ({"skip": "yes"}, ArgumentTypeError),
])
def test_bad_arguments_raise(kwargs, error):
    with pytest.raises(error) as info:
        HierarchicalVAE.mlp(**kwargs)
    assert any(name in str(info.value) for name in kwargs)


def test_bad_conv_channels_and_modules():
    with pytest.raises(ArgumentTypeError, match="channels"):
        HierarchicalVAE.conv(channels=(8,))
    with pytest.raises(ArgumentTypeError, match="trunk"):
        HierarchicalVAE("trunk", torch.nn.Linear(2, 2), (2,), feature_dim=2)


def test_precision_weighted_merge_is_the_normalised_product():
    from vae_tutorial.models.hierarchical import precision_weighted_merge

    g = gen(2)
    mu_a, lv_a, mu_b, lv_b = (torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(4))
    mu, lv = precision_weighted_merge(mu_a, lv_a, mu_b, lv_b)
    torch.testing.assert_close(lv, -torch.log(torch.exp(-lv_a) + torch.exp(-lv_b)))
    torch.testing.assert_close(mu, (mu_a * torch.exp(-lv_a) + mu_b * torch.exp(-lv_b)) * torch.exp(lv))
    # log N(z; a) + log N(z; b) − log N(z; merged) does not depend on z
    z = torch.randn(5, 3, 4, generator=g, dtype=torch.float64)

    def log_n(z, m, v):
        return -0.5 * (math.log(2 * math.pi) + v + (z - m) ** 2 * torch.exp(-v))

    diff = log_n(z, mu_a, lv_a) + log_n(z, mu_b, lv_b) - log_n(z, mu, lv)
    torch.testing.assert_close(diff, diff[:1].expand_as(diff))


def test_top_layer_rate_split():
    from vae_tutorial.models.hierarchical import top_layer_rate_split

    x = binary(3)
    td = randomise(small("top_down"), scale=0.3)
    split = top_layer_rate_split(td, x, samples=64, generator=gen())
    # top-down: q(z_L|x) reads x only, so no information about lower samples
    assert split["noise"].abs().max() < 1e-5
    torch.testing.assert_close(split["data"], split["rate"])
    bu = randomise(small("bottom_up", dims=(6, 3)), scale=1.0)
    split = top_layer_rate_split(bu, x, samples=64, generator=gen())
    assert (split["noise"] > 0.01).all() and (split["noise"] <= math.log(64) + 1e-5).all()
    torch.testing.assert_close(split["rate"], split["noise"] + split["data"])
    # the rate is the top layer's KL of layer_kl, estimated with other noise
    kl_top = torch.stack([bu.layer_kl(x, generator=gen(s))[:, -1] for s in range(200)]).mean(0)
    torch.testing.assert_close(split["rate"], kl_top.detach(), rtol=0.1, atol=0.05)
    with pytest.raises(ArgumentError):
        top_layer_rate_split(small(dims=(4,), hidden=(32,)), x)


# ------------------------------------------------------------------ bounded variances (issue 23, item 1)

def _extreme(model, scale=1e4):
    """Every Gaussian head's last layer multiplied by ``scale``: its raw log-variances reach ±10⁴ and more."""
    with torch.no_grad():
        for net in [*model.priors, *model.heads]:
            net[-1].weight.mul_(scale)
            net[-1].bias.fill_(scale)
    return model


def test_soft_clamp_is_bounded_smooth_and_the_identity_near_zero():
    from vae_tutorial.models.hierarchical import soft_clamp

    v = torch.cat([torch.linspace(-1e6, 1e6, 2001), torch.tensor([-1e30, 1e30, -0.5, 0.0, 0.5])]).requires_grad_()
    out = soft_clamp(v, 10.0)
    assert (out.abs() <= 10).all() and torch.isfinite(out).all()
    assert (out.diff()[:2000] >= 0).all()  # monotone
    torch.testing.assert_close(soft_clamp(torch.tensor([-0.5, 0.0, 0.5]), 10.0),
                               torch.tensor([-0.5, 0.0, 0.5]), atol=5e-4, rtol=0)
    out.sum().backward()
    assert torch.isfinite(v.grad).all() and (v.grad >= 0).all() and v.grad[-2:].max() == 1.0


@pytest.mark.parametrize("inference,merge", KINDS)
def test_variances_stay_finite_and_positive_for_extreme_inputs(inference, merge):
    from vae_tutorial.models.hierarchical import _split

    model = _extreme(small(inference, merge, dims=(6, 3, 2), hidden=(32, 16, 8)))
    b = model.logvar_bound
    x = binary(8)
    _, q, p = model._chain(model._features(x), gen())
    # the prior networks also read parents z_{l+1} far from any posterior sample
    far = [_split(net(1e4 * torch.randn(8, net[0].in_features, generator=gen(2))), b) for net in model.priors]
    assert model.priors[0](torch.zeros(1, 3)).abs().max() > 1e3  # the raw outputs really are extreme
    for _, lv in [*q, *(pp for pp in p if pp is not None), *far]:
        assert (lv >= -b - math.log(2)).all() and (lv <= b).all()  # merged: (−b − log 2, b)
        var = lv.exp()
        assert torch.isfinite(var).all() and (var > 0).all() and torch.isfinite(1 / var).all()
    terms = model.elbo_terms(x, generator=gen())
    assert torch.isfinite(terms.elbo).all() and torch.isfinite(terms.kl_per_dim).all()
    terms.elbo.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    log_w = torch.cat(list(model.log_importance_weights(x, 4, generator=gen())))
    assert torch.isfinite(log_w).all()
    assert all(torch.isfinite(z).all() for z in model.prior_sample(4, generator=gen()))


def test_logvar_bound_is_an_argument_and_part_of_the_identity():
    from vae_tutorial.training.identity import model_identity

    assert HierarchicalVAE.mlp().logvar_bound == 10.0
    tight = _extreme(small(dims=(4, 2)))
    tight.logvar_bound = 2.0
    _, q, p = tight._chain(tight._features(binary(4)), gen())
    assert max(lv.abs().max() for _, lv in [*q, p[0]]) <= 2.0 + math.log(2)
    assert model_identity(HierarchicalVAE.conv(logvar_bound=5.0))["settings"]["logvar_bound"] == 5.0
    for bad, error in [(0.0, ArgumentError), (-1.0, ArgumentError), (math.inf, ArgumentError),
                       (math.nan, ArgumentError), ("10", ArgumentTypeError), (True, ArgumentTypeError)]:
        with pytest.raises(error, match="logvar_bound"):
            HierarchicalVAE.mlp(logvar_bound=bad)


def test_the_configuration_that_diverged_trains_on_without_a_nonfinite_loss():
    """The quality benchmark's hvae row (2 layers, 784-512-512-(32)-256-256-(16), top-down, skip decoder)
    went NaN at epoch 46 with Adam at 1e-3. Accelerated: at 1e-2 on 256 images the unbounded model
    overflows at its third step (measured: its top posterior's log-variance jumps above 25, so z_2 reaches
    ~10⁵ and the prior's log-variance −9·10⁴, whose exp is inf). With bounded variances it trains 40
    epochs (80 Adam steps) with a finite loss through the same kind of spike, and learns."""
    torch.manual_seed(0)
    model = HierarchicalVAE.mlp((32, 16), (512, 256), inference="top_down", skip=True)
    h = vt.fit(model, binary(256, seed=3), epochs=40, batch_size=128, lr=1e-2, device="cpu", progress=False)
    elbo = h["train_elbo"]
    assert all(math.isfinite(e) for e in elbo)
    assert sum(elbo[-5:]) / 5 > elbo[0] + 15  # it trained, not only survived
