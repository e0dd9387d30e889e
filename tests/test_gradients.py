"""Score-function and pathwise estimators of ∇ E_{N(μ, σ²)}[f(z)] against closed forms."""
import pytest
import torch

from vae_tutorial import reparameterize
from vae_tutorial.maths.gradients import GradientSamples, pathwise_gradient, score_function_gradient

ESTIMATORS = [score_function_gradient, pathwise_gradient]
MU = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
LOGVAR = torch.tensor([0.0, -1.0, 0.7], dtype=torch.float64)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def assert_unbiased(samples: GradientSamples, want_mu, want_logvar, z=5.0):
    """The mean is within ``z`` standard errors of the exact gradient, coordinate by coordinate."""
    for got, se, want in zip(samples.mean(), samples.standard_error(), (want_mu, want_logvar)):
        assert torch.all((got - want).abs() < z * se + 1e-12), (got, want, se)


def test_standard_error_is_std_over_root_n():
    s = GradientSamples(mu=torch.tensor([[0.0], [2.0], [4.0], [6.0]]), logvar=torch.zeros(4, 1))
    se_mu, se_lv = s.standard_error()
    torch.testing.assert_close(se_mu, torch.tensor([torch.tensor([0.0, 2, 4, 6]).std() / 2]))
    assert se_lv.item() == 0


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_unbiased_for_sum_of_squares(estimator):
    # E[Σ z²] = Σ μ² + σ²  ⇒  ∇_μ = 2μ,  ∇_{log σ²} = σ²
    s = estimator(lambda z: z.pow(2).sum(-1), MU, LOGVAR, 100_000, gen())
    assert_unbiased(s, 2 * MU, LOGVAR.exp())


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_unbiased_for_sine(estimator):
    # E[sin z] = sin μ · exp(−σ²/2)
    s = estimator(lambda z: torch.sin(z).sum(-1), MU, LOGVAR, 100_000, gen(1))
    var = LOGVAR.exp()
    damp = torch.exp(-var / 2)
    assert_unbiased(s, torch.cos(MU) * damp, -0.5 * var * torch.sin(MU) * damp)


def test_pathwise_is_autograd_through_reparameterize():
    f = lambda z: torch.tanh(z).pow(3).sum(-1)  # noqa: E731
    s = pathwise_gradient(f, MU, LOGVAR, 7, gen(3))
    for i in range(7):
        mu = MU.clone().requires_grad_(True)
        lv = LOGVAR.clone().requires_grad_(True)
        z = reparameterize(mu.expand(7, -1), lv.expand(7, -1), gen(3))[i]
        f(z[None]).sum().backward()
        torch.testing.assert_close(s.mu[i], mu.grad)
        torch.testing.assert_close(s.logvar[i], lv.grad)


def test_both_use_the_same_noise():
    # For f(z) = a·z the score estimate is (a·z) ε/σ and the pathwise one is a, with the same z.
    a = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    f = lambda z: z @ a  # noqa: E731
    sf = score_function_gradient(f, MU, LOGVAR, 5, gen(4))
    pw = pathwise_gradient(f, MU, LOGVAR, 5, gen(4))
    torch.testing.assert_close(pw.mu, a.expand(5, -1))
    sigma = torch.exp(0.5 * LOGVAR)
    eps = 2 * pw.logvar / (a * sigma)  # ∂f/∂log σ² = a ½ σ ε
    z = MU + sigma * eps
    torch.testing.assert_close(sf.mu, (z @ a)[:, None] * eps / sigma)


def test_pathwise_variance_is_much_smaller_on_a_smooth_function():
    f = lambda z: z.pow(2).sum(-1)  # noqa: E731
    sf = score_function_gradient(f, MU, LOGVAR, 20_000, gen(5))
    pw = pathwise_gradient(f, MU, LOGVAR, 20_000, gen(5))
    assert pw.mu.var(0).sum() * 5 < sf.mu.var(0).sum()
    assert pw.logvar.var(0).sum() * 5 < sf.logvar.var(0).sum()


def test_constant_function_has_zero_gradient():
    f = lambda z: torch.full((z.shape[0],), 3.0, dtype=z.dtype)  # noqa: E731
    pw = pathwise_gradient(f, MU, LOGVAR, 10, gen())
    assert torch.count_nonzero(pw.mu) == 0 and torch.count_nonzero(pw.logvar) == 0
    sf = score_function_gradient(f, MU, LOGVAR, 50_000, gen())
    assert_unbiased(sf, torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    assert sf.mu.var(0).min() > 1.0  # unbiased, yet noisy: the score function's weakness


def test_shapes_and_mean():
    s = score_function_gradient(lambda z: z.sum(-1), MU, LOGVAR, 4, gen())
    assert s.mu.shape == s.logvar.shape == (4, 3)
    g_mu, g_lv = s.mean()
    torch.testing.assert_close(g_mu, s.mu.mean(0))
    assert g_lv.shape == (3,)


def test_parameters_are_not_modified_and_get_no_grad():
    mu = MU.clone().requires_grad_(True)
    lv = LOGVAR.clone().requires_grad_(True)
    for est in ESTIMATORS:
        est(lambda z: z.pow(2).sum(-1), mu, lv, 3, gen())
    assert mu.grad is None and lv.grad is None
    torch.testing.assert_close(mu.detach(), MU)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_bad_inputs_say_what_is_wrong(estimator):
    f = lambda z: z.sum(-1)  # noqa: E731
    with pytest.raises(ValueError, match="shape \\(Z,\\)"):
        estimator(f, MU[None], LOGVAR[None], 3)
    with pytest.raises(ValueError, match="shape \\(Z,\\)"):
        estimator(f, MU, LOGVAR[:2], 3)
    with pytest.raises(ValueError, match="positive integer"):
        estimator(f, MU, LOGVAR, 0)
    with pytest.raises(ValueError, match="values of shape \\(n,\\)"):
        estimator(lambda z: z, MU, LOGVAR, 3)
    with pytest.raises(TypeError, match="must be a function"):
        estimator("not a function", MU, LOGVAR, 3)
