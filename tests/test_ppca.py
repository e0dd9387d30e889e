"""Probabilistic PCA: exact evidence, posterior and ELBO against independent computations."""
import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from vae_tutorial import kl_standard_normal
from vae_tutorial.maths.ppca import LinearGaussian

D, Z = 6, 3


def model(seed=0, noise_var=0.3):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(D, Z, generator=g, dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64)
    return LinearGaussian(w, b, noise_var)


def data(m, n=5, seed=1):
    return m.sample(n, torch.Generator().manual_seed(seed))[0]


def random_q(n, seed=2):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, Z, generator=g, dtype=torch.float64),
            torch.randn(n, Z, generator=g, dtype=torch.float64))


def test_log_marginal_matches_dense_multivariate_normal():
    m = model()
    x = data(m)
    want = MultivariateNormal(m.bias, covariance_matrix=m.marginal_covariance()).log_prob(x)
    torch.testing.assert_close(m.log_marginal(x), want)


def test_posterior_satisfies_bayes_rule():
    # log p(x|z) + log p(z) − log p(z|x) is the same number, log p(x), for every z
    m = model(3)
    x = data(m, n=1)
    mean, cov = m.posterior(x)
    z = torch.randn(7, Z, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    joint = m.log_likelihood(x.expand(7, -1), z) + Normal(0.0, 1.0).log_prob(z).sum(-1)
    post = MultivariateNormal(mean[0], covariance_matrix=cov).log_prob(z)
    torch.testing.assert_close(joint - post, m.log_marginal(x).expand(7))


def test_gap_identity_for_arbitrary_q():
    m = model(5)
    x = data(m, n=8)
    mu, logvar = random_q(8)
    gap = m.log_marginal(x) - m.elbo(x, mu, logvar)
    torch.testing.assert_close(gap, m.posterior_kl(x, mu, logvar))
    assert torch.all(gap > 0)


def test_posterior_kl_matches_torch_distributions():
    m = model(6)
    x = data(m, n=4)
    mu, logvar = random_q(4, seed=7)
    mean, cov = m.posterior(x)
    q = MultivariateNormal(mu, covariance_matrix=torch.diag_embed(logvar.exp()))
    p = MultivariateNormal(mean, covariance_matrix=cov.expand(4, Z, Z))
    torch.testing.assert_close(m.posterior_kl(x, mu, logvar), torch.distributions.kl_divergence(q, p))


def test_elbo_equals_log_marginal_at_diagonal_posterior():
    # a W with orthogonal columns (what `fit` returns) has a diagonal posterior covariance
    q_, _ = torch.linalg.qr(torch.randn(D, Z, generator=torch.Generator().manual_seed(8), dtype=torch.float64))
    m = LinearGaussian(q_ * torch.tensor([3.0, 2.0, 0.5], dtype=torch.float64), torch.zeros(D, dtype=torch.float64), 0.2)
    x = data(m, n=5)
    mean, cov = m.posterior(x)
    torch.testing.assert_close(cov, torch.diag(cov.diagonal()))
    logvar = cov.diagonal().log().expand(5, Z)
    torch.testing.assert_close(m.elbo(x, mean, logvar), m.log_marginal(x))
    assert torch.all(m.posterior_kl(x, mean, logvar).abs() < 1e-10)


def test_elbo_closed_form_matches_monte_carlo():
    m = model(9)
    x = data(m, n=3)
    mu, logvar = random_q(3, seed=10)
    est, se = m.elbo_monte_carlo(x, mu, logvar, 20_000, torch.Generator().manual_seed(11))
    exact = m.elbo(x, mu, logvar)
    assert torch.all((est - exact).abs() < 5 * se), (est, exact, se)


def test_elbo_monte_carlo_with_full_joint_estimator():
    # E_q[log p(x|z) + log p(z) − log q(z)], every term sampled, agrees with the closed form
    m = model(12)
    x = data(m, n=1)
    mu, logvar = random_q(1, seed=13)
    q = Normal(mu[0], (0.5 * logvar[0]).exp())
    z = q.sample((50_000,))
    w = m.log_likelihood(x.expand(len(z), -1), z) + Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
    se = w.std() / math.sqrt(len(z))
    assert abs(w.mean() - m.elbo(x, mu, logvar)[0]) < 5 * se


def test_elbo_kl_part_is_kl_standard_normal():
    # with W = 0 the data carry no information: ELBO = log N(x; b, σ²I) − KL(q‖p(z))
    m = LinearGaussian(torch.zeros(D, Z, dtype=torch.float64), torch.zeros(D, dtype=torch.float64), 1.0)
    x = data(m, n=4)
    mu, logvar = random_q(4)
    want = Normal(0.0, 1.0).log_prob(x).sum(-1) - kl_standard_normal(mu, logvar)
    torch.testing.assert_close(m.elbo(x, mu, logvar), want)


def test_fit_recovers_the_generating_covariance():
    q_, _ = torch.linalg.qr(torch.randn(D, Z, generator=torch.Generator().manual_seed(14), dtype=torch.float64))
    truth = LinearGaussian(q_ * torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64),
                           torch.arange(D, dtype=torch.float64), 0.25)
    x, _ = truth.sample(100_000, torch.Generator().manual_seed(15))
    fitted = LinearGaussian.fit(x, Z)
    torch.testing.assert_close(fitted.marginal_covariance(), truth.marginal_covariance(), atol=0.1, rtol=0.05)
    torch.testing.assert_close(fitted.bias, truth.bias, atol=0.05, rtol=0)
    assert abs(fitted.noise_var.item() - 0.25) < 0.01
    w = fitted.weight
    gram = w.T @ w
    torch.testing.assert_close(gram, torch.diag(gram.diagonal()))  # orthogonal columns


def test_fit_maximises_likelihood_locally():
    x = data(model(16), n=400, seed=17)
    fitted = LinearGaussian.fit(x, Z)
    best = fitted.log_marginal(x).mean()
    g = torch.Generator().manual_seed(18)
    for _ in range(5):
        w = fitted.weight + 0.05 * torch.randn(D, Z, generator=g, dtype=torch.float64)
        for s2 in (fitted.noise_var * 0.9, fitted.noise_var * 1.1):
            assert LinearGaussian(w, fitted.bias, s2).log_marginal(x).mean() < best


def test_flattens_image_shaped_inputs():
    m = LinearGaussian(torch.randn(4, 2, dtype=torch.float64), torch.zeros(4, dtype=torch.float64), 1.0)
    x = torch.randn(3, 1, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(m.log_marginal(x), m.log_marginal(x.reshape(3, 4)))


@pytest.mark.parametrize("args, match", [
    ((torch.zeros(4), torch.zeros(4), 1.0), "weight"),
    ((torch.zeros(4, 2), torch.zeros(3), 1.0), "bias"),
    ((torch.zeros(4, 2), torch.zeros(4), 0.0), "noise_var"),
    ((torch.zeros(4, 2), torch.zeros(4), -1.0), "noise_var"),
])
def test_bad_parameters_are_explained(args, match):
    with pytest.raises(ValueError, match=match):
        LinearGaussian(*args)


def test_bad_inputs_are_explained():
    m = model()
    with pytest.raises(ValueError, match="D = 6"):
        m.log_marginal(torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="broadcast"):
        m.elbo(torch.zeros(2, D, dtype=torch.float64), torch.zeros(2, Z + 1), torch.zeros(2, Z + 1))
    with pytest.raises(ValueError, match="latent_dim"):
        LinearGaussian.fit(torch.zeros(10, D, dtype=torch.float64), D)
    with pytest.raises(ValueError, match="n_samples"):
        m.elbo_monte_carlo(torch.zeros(1, D), torch.zeros(1, Z), torch.zeros(1, Z), 1)
