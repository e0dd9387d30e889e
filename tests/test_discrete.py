"""vae_tutorial.maths.discrete: Gumbel-max sampling, the concrete relaxation, REINFORCE, against enumeration."""
import math

import pytest
import scipy.stats
import torch

from vae_tutorial.maths.discrete import (
    ESTIMATORS,
    categorical_kl_uniform,
    check_gumbel_softmax,
    chi_square_statistic,
    exact_gradient,
    gradient_estimates,
    gumbel_max,
    gumbel_softmax,
    moving_average_baseline,
    sample_gumbel,
)
from vae_tutorial.errors import ArgumentError, ArgumentTypeError

LOGITS = torch.tensor([1.0, 0.5, 0.0, -0.5, -1.0, 0.2], dtype=torch.float64)
TARGET = torch.tensor([0.9, 0.1, 0.6, 0.2, 0.7, 0.0], dtype=torch.float64)


def f(y):
    return ((y - TARGET) ** 2).sum(-1)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_gumbel_noise_has_the_gumbel_law():
    g = sample_gumbel((200_000,), gen(), torch.float64)
    # the mean of a standard Gumbel is the Euler–Mascheroni constant, its variance π²/6
    assert abs(g.mean().item() - 0.5772156649) < 6 * math.sqrt(math.pi**2 / 6 / g.numel())
    ks = scipy.stats.kstest(g.numpy(), scipy.stats.gumbel_r.cdf)
    assert ks.pvalue > 1e-4


def test_gumbel_max_frequencies_match_the_softmax():
    k = gumbel_max(LOGITS.expand(200_000, -1), gen(1))
    counts = torch.bincount(k, minlength=6)
    probs = torch.softmax(LOGITS, 0)
    x2, dof = chi_square_statistic(counts, probs)
    assert dof == 5
    assert scipy.stats.chi2.sf(x2, dof) > 1e-4  # a correct sampler fails this once in 10⁴ seeds
    # and the statistic is scipy's
    ref = scipy.stats.chisquare(counts.numpy(), (probs * counts.sum()).numpy())
    assert x2 == pytest.approx(ref.statistic, rel=1e-9)


def test_a_wrong_sampler_fails_the_same_chi_square_test():
    # Gumbel noise added to the probabilities instead of the logits: the wrong law
    k = (torch.softmax(LOGITS, 0) + sample_gumbel((200_000, 6), gen(2), torch.float64)).argmax(-1)
    x2, dof = chi_square_statistic(torch.bincount(k, minlength=6), torch.softmax(LOGITS, 0))
    assert scipy.stats.chi2.sf(x2, dof) < 1e-10


def test_gumbel_softmax_is_on_the_simplex_and_tends_to_the_gumbel_max_sample():
    g = sample_gumbel((100, 6), gen(3), torch.float64)
    logits = LOGITS.expand(100, -1)
    for tau in (5.0, 1.0, 0.1):
        y = gumbel_softmax(logits, tau, gumbel=g)
        assert (y > 0).all() and torch.allclose(y.sum(-1), torch.ones(100, dtype=torch.float64))
    y = gumbel_softmax(logits, 1e-3, gumbel=g)
    assert torch.equal(y.argmax(-1), (logits + g).argmax(-1))
    assert (y.max(-1).values > 0.99).all()
    assert torch.allclose(gumbel_softmax(logits, 1e6, gumbel=g), torch.full((100, 6), 1 / 6, dtype=torch.float64),
                          atol=1e-5)


def test_straight_through_sample_is_one_hot_with_the_relaxed_gradient():
    g = sample_gumbel((10, 6), gen(4), torch.float64)
    a = LOGITS.expand(10, -1).clone().requires_grad_()
    b = LOGITS.expand(10, -1).clone().requires_grad_()
    hard = gumbel_softmax(a, 0.5, hard=True, gumbel=g)
    soft = gumbel_softmax(b, 0.5, gumbel=g)
    one_hot = torch.nn.functional.one_hot((LOGITS + g).argmax(-1), 6).double()
    assert torch.allclose(hard.detach(), one_hot, rtol=0, atol=1e-15)  # e_c + y − y, up to rounding
    w = torch.randn(10, 6, generator=gen(5), dtype=torch.float64)
    (ga,) = torch.autograd.grad((hard * w).sum(), a)
    (gb,) = torch.autograd.grad((soft * w).sum(), b)
    assert torch.allclose(ga, gb)


def test_exact_gradient_has_the_closed_form():
    # ∂/∂ℓ Σ_k π_k f_k = π ⊙ (f − Σ_k π_k f_k)
    values, grad = exact_gradient(LOGITS, f)
    fk = f(torch.eye(6, dtype=torch.float64))
    pi = torch.softmax(LOGITS, 0)
    assert values.item() == pytest.approx((pi * fk).sum().item(), rel=1e-12)
    assert torch.allclose(grad, pi * (fk - (pi * fk).sum()), atol=1e-12)


@pytest.mark.parametrize("estimator", ["reinforce", "reinforce_baseline"])
def test_reinforce_is_unbiased_within_its_standard_error(estimator):
    n = 200_000
    est = gradient_estimates(LOGITS, f, estimator, n, generator=gen(6))
    _, exact = exact_gradient(LOGITS, f)
    z = (est.mean(0) - exact) / (est.std(0) / math.sqrt(n))
    assert z.abs().max() < 5, z


def test_the_baseline_lowers_the_variance_of_reinforce():
    est = {e: gradient_estimates(LOGITS, f, e, 50_000, generator=gen(7)) for e in ("reinforce", "reinforce_baseline")}
    assert est["reinforce_baseline"].var(0).sum() < 0.5 * est["reinforce"].var(0).sum()


def relaxed_objective_gradient(tau, n=200_000, h=1e-4, seed=8):
    """∇_ℓ E_g[f(softmax((ℓ + g)/τ))] by central differences with common random numbers."""
    g = sample_gumbel((n, 6), gen(seed), torch.float64)
    grad = torch.empty(6, dtype=torch.float64)
    for j in range(6):
        e = torch.zeros(6, dtype=torch.float64)
        e[j] = h
        up = f(torch.softmax((LOGITS + e + g) / tau, -1)).mean()
        down = f(torch.softmax((LOGITS - e + g) / tau, -1)).mean()
        grad[j] = (up - down) / (2 * h)
    return grad


@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_gumbel_softmax_estimates_the_relaxed_gradient_not_the_exact_one(tau):
    est = gradient_estimates(LOGITS, f, "gumbel_softmax", 200_000, tau=tau, generator=gen(8))
    # the same noise as relaxed_objective_gradient(seed=8): the same expectation, up to h²
    assert torch.allclose(est.mean(0), relaxed_objective_gradient(tau), atol=1e-6)
    _, exact = exact_gradient(LOGITS, f)
    se = est.std(0) / math.sqrt(est.shape[0])
    assert ((est.mean(0) - exact).abs() / se).max() > 10  # biased for E_{c~Cat(π)} f(c)


def test_the_relaxation_bias_shrinks_and_its_variance_grows_as_tau_falls():
    _, exact = exact_gradient(LOGITS, f)
    bias, var = [], []
    for tau in (2.0, 1.0, 0.5, 0.2):
        est = gradient_estimates(LOGITS, f, "gumbel_softmax", 100_000, tau=tau, generator=gen(9))
        bias.append((est.mean(0) - exact).norm().item())
        var.append(est.var(0).sum().item())
    assert bias == sorted(bias, reverse=True) and var == sorted(var)


def test_straight_through_is_biased():
    est = gradient_estimates(LOGITS, f, "straight_through", 100_000, tau=1.0, generator=gen(10))
    _, exact = exact_gradient(LOGITS, f)
    se = est.std(0) / math.sqrt(est.shape[0])
    assert ((est.mean(0) - exact).abs() / se).max() > 10


def test_many_variables_reinforce_stays_unbiased_and_the_relaxation_ignores_the_others():
    m, n = 5, 100_000
    logits = LOGITS.expand(m, -1)

    def f_many(y):  # separable: the same f for each of the m variables, summed
        return f(y).sum(-1)

    _, exact = exact_gradient(LOGITS, f)  # each variable's exact gradient is the one-variable one
    est = gradient_estimates(logits, f_many, "reinforce_baseline", n, generator=gen(12))
    assert est.shape == (n, m, 6)
    z = (est.mean(0) - exact) / (est.std(0) / math.sqrt(n))
    assert z.abs().max() < 5.5, z
    # the other variables' values enter (f − b): the variance of variable 0's estimate grows
    one = gradient_estimates(LOGITS, f, "reinforce_baseline", n, generator=gen(13))
    assert est[:, 0].var(0).sum() > 3 * one.var(0).sum()
    # the relaxed gradient of variable 0 does not involve the others: the same law as for m = 1
    gs = gradient_estimates(logits, f_many, "gumbel_softmax", n, tau=0.5, generator=gen(14))
    gs1 = gradient_estimates(LOGITS, f, "gumbel_softmax", n, tau=0.5, generator=gen(15))
    se = (gs1.var(0) / n).sqrt() * math.sqrt(2)
    assert ((gs[:, 0].mean(0) - gs1.mean(0)).abs() / se).max() < 5
    assert abs(gs[:, 0].var(0).sum() / gs1.var(0).sum() - 1) < 0.05


def test_moving_average_baseline_uses_only_earlier_values():
    v = torch.tensor([1.0, 2.0, 4.0, 8.0])
    b = moving_average_baseline(v, decay=0.5, initial=0.0)
    assert b.tolist() == [0.0, 0.5, 1.25, 2.625]
    w = v.clone()
    w[2] = 100.0
    assert torch.equal(moving_average_baseline(w, 0.5)[:3], b[:3])


def test_categorical_kl_to_the_uniform_prior():
    k = 5
    assert categorical_kl_uniform(torch.eye(k)).tolist() == pytest.approx([math.log(k)] * k)
    assert categorical_kl_uniform(torch.full((k,), 1 / k)).item() == pytest.approx(0.0, abs=1e-7)
    q = torch.softmax(torch.randn(3, k, generator=gen(11)), -1)
    direct = (q * (q * k).log()).sum(-1)
    assert torch.allclose(categorical_kl_uniform(q), direct, atol=1e-6)


def test_check_gumbel_softmax_passes_an_independent_correct_answer(capsys):
    def mine(logits, g, tau):
        a = (logits + g) / tau
        e = (a - a.max(-1, keepdim=True).values).exp()
        return e / e.sum(-1, keepdim=True)

    assert check_gumbel_softmax(mine) is True
    assert "PASS" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda ell, g, tau: torch.softmax(ell / tau + g, -1), "only the logits are divided"),
    (lambda ell, g, tau: torch.softmax(ell + g, -1), "temperature is missing"),
    (lambda ell, g, tau: torch.softmax((ell + g) / tau, -1).detach(), "no gradient"),
    (lambda ell, g, tau: torch.softmax((ell + g.detach()) / tau, -1) * 0 + torch.softmax(
        (ell.detach() + g) / tau, -1), "gradient with respect to argument 1"),
    (lambda ell, g, tau: 1 / 0, "ZeroDivisionError"),
])
def test_check_gumbel_softmax_fails_wrong_answers_and_says_why(wrong, words, capsys):
    assert check_gumbel_softmax(wrong) is False
    out = capsys.readouterr().out
    assert "FAIL" in out and words in out


def test_arguments_are_checked():
    with pytest.raises(ArgumentError, match="tau"):
        gumbel_softmax(LOGITS, 0.0)
    with pytest.raises(ArgumentError, match="estimator"):
        gradient_estimates(LOGITS, f, "rebar", 10)
    with pytest.raises(ArgumentError, match="logits"):
        gumbel_max(torch.zeros(3, 4, 1))
    with pytest.raises(ArgumentError, match="gradient_estimates"):
        gradient_estimates(torch.zeros(2, 3, 4), f, "reinforce", 10)
    with pytest.raises(ArgumentError, match="gumbel"):
        gumbel_softmax(LOGITS, 1.0, gumbel=torch.zeros(3))
    with pytest.raises(ArgumentTypeError, match="fn"):
        check_gumbel_softmax(None)
    assert set(ESTIMATORS) == {"reinforce", "reinforce_baseline", "gumbel_softmax", "straight_through"}
