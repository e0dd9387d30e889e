"""The research helpers validate like the core does (issue 21, root cause 8).

Catalogue tests for the second red-team round (../shared/reviews/redteam-2026-12-07.md): every
public entry of ``compare``, ``compression``, ``amortisation``, ``aggregate_posterior``,
``gradient_snr`` and ``plots`` checks its inputs before any work (integer arguments, shapes
against the model, finite values and weights) and refuses a Part III model it cannot handle,
naming what it supports. Each case is a clear :class:`VAETutorialError` or a right result.

The cases of the same round whose fix lies outside the research helpers (``fit``'s data
reader and ``elbo_fn``, ``subset``, ``VAE.sample``, the homework checks) are kept here too.
"""
from __future__ import annotations

import contextlib
import sys

import numpy as np
import pytest
import torch

import vae_tutorial as vt
from vae_tutorial import aggregate_posterior as ap
from vae_tutorial import amortisation as am
from vae_tutorial import check, compare, compression, gradient_snr, plots
from vae_tutorial.models.autoregressive import PixelCNNDecoder, PixelVAE
from vae_tutorial.errors import (
    ArgumentError,
    ArgumentTypeError,
    DataError,
    VAETutorialError,
)

FIT = {"epochs": 1, "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def X():
    return vt.load_dataset("digits", "train").subset(32).images.round()


def vae(z: int = 2, likelihood: str = "bernoulli") -> vt.VAE:
    torch.manual_seed(0)
    return vt.VAE(vt.MLPEncoder((1, 8, 8), [8], z), vt.MLPDecoder(z, [8], (1, 8, 8)), likelihood)


def cvae() -> vt.ConditionalVAE:
    torch.manual_seed(0)
    return vt.ConditionalVAE(vt.MLPEncoder(64 + 10, [8], 2), vt.MLPDecoder(2 + 10, [8], (1, 8, 8)),
                             num_classes=10)


def hvae() -> vt.HierarchicalVAE:
    torch.manual_seed(0)
    return vt.HierarchicalVAE.mlp((2, 2), (8, 8), in_features=(1, 8, 8))


def pixel_vae() -> PixelVAE:
    torch.manual_seed(0)
    return PixelVAE(vt.MLPEncoder((1, 8, 8), [8], 2), PixelCNNDecoder(2, (1, 8, 8), channels=4))


def diffusion() -> vt.DiffusionModel:
    torch.manual_seed(0)
    return vt.DiffusionModel(shape=(1, 8, 8), steps=2, hidden=8)


def nan_weight(model):
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    return model


def posteriors(n: int = 20, z: int = 2):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, z, generator=g), 0.1 * torch.randn(n, z, generator=g)


@contextlib.contextmanager
def raises(cls, *words):
    """Expect ``cls`` (a VAETutorialError) with every word of ``words`` in its message; another
    exception propagates as itself."""
    assert issubclass(cls, VAETutorialError)
    with pytest.raises(cls) as info:
        yield info
    message = str(info.value)
    assert all(w in message for w in words), (words, message)


# ----------------------------------------------------------------------------- compare

def test_R02_mean_se_refuses_nan_values():  # was (nan, nan) without a word
    with raises(DataError, "values", "NaN"):
        compare.mean_se(torch.tensor([float("nan"), 1.0, 2.0]))
    with raises(ArgumentTypeError, "values"):  # R03
        compare.mean_se("abc")
    m, se = compare.mean_se(np.array([1.0, 2.0, 3.0]))  # NumPy works as before
    assert m == 2.0 and se == pytest.approx(1 / np.sqrt(3))


@pytest.mark.parametrize("shape", [(2, 1, 1, 1), (2, 1, 1, 8), (0, 1, 8, 8)])
def test_R05_edge_energy_refuses_images_without_neighbours(shape):  # 1×1 gave NaN
    with raises(ArgumentError, "images", "2 × 2"):
        compare.edge_energy(torch.rand(shape))


def test_edge_energy_refuses_nan_pixels_and_still_measures_sharpness():
    x = torch.rand(2, 1, 4, 4)
    x[1, 0, 2, 2] = float("nan")
    with raises(DataError, "images", "NaN"):
        compare.edge_energy(x)
    flat, checker = torch.full((1, 1, 4, 4), 0.5), (torch.arange(16).reshape(1, 1, 4, 4) % 2).float()
    assert compare.edge_energy(flat).item() == 0 and compare.edge_energy(checker).item() == 1


# ----------------------------------------------------------------------------- aggregate posterior

@pytest.mark.parametrize("case, samples", [("R11", 0), ("R12", -1), ("R12b", 2.5), ("R12c", True)])
def test_R11_R12_elbo_surgery_refuses_a_bad_number_of_samples(case, samples):
    mu, lv = posteriors()
    with raises(VAETutorialError, "samples"):
        ap.elbo_surgery(mu, lv, samples=samples)


def test_R13_elbo_surgery_refuses_mu_and_logvar_of_different_shapes():
    mu, _ = posteriors()
    with raises(ArgumentError, "mu and logvar", "(20, 2)", "(20, 3)"):
        ap.elbo_surgery(mu, torch.zeros(20, 3))
    with raises(ArgumentError, "logvar", "dimension"):
        ap.elbo_surgery(mu, torch.zeros(20))


def test_R14_log_aggregate_posterior_refuses_query_points_of_another_width():
    mu, lv = posteriors()
    with raises(ArgumentError, "z", "Z = 2"):
        ap.log_aggregate_posterior(torch.randn(5, 3), mu, lv)


def test_R15_log_aggregate_posterior_refuses_chunk_zero():
    mu, lv = posteriors()
    with raises(ArgumentError, "chunk"):
        ap.log_aggregate_posterior(torch.randn(5, 2), mu, lv, chunk=0)
    with raises(ArgumentError, "chunk"):
        ap.elbo_surgery(mu, lv, chunk=-3)


@pytest.mark.parametrize("which", ["mu", "logvar"])
def test_R16_elbo_surgery_refuses_nan_posteriors(which):  # was a dict of NaNs
    mu, lv = posteriors()
    (mu if which == "mu" else lv)[3, 1] = float("nan")
    with raises(DataError, which, "NaN"):
        ap.elbo_surgery(mu, lv)
    with raises(DataError, which, "NaN"):
        ap.log_aggregate_posterior(torch.randn(4, 2), mu, lv)


def test_elbo_surgery_needs_two_draws_for_its_standard_errors():
    with raises(ArgumentError, "samples", "2 draws"):
        ap.elbo_surgery(torch.zeros(1, 2), torch.zeros(1, 2), samples=1)
    s = ap.elbo_surgery(torch.zeros(2, 2), torch.zeros(2, 2), samples=1)  # 2 draws in all: fine
    assert all(np.isfinite(v) for v in s.values())


def test_log_aggregate_posterior_keeps_the_inputs_dtype():
    mu, lv = posteriors()
    z = torch.randn(5, 2)
    assert ap.log_aggregate_posterior(z, mu, lv).dtype == torch.float32
    assert ap.log_aggregate_posterior(z.double(), mu, lv).dtype == torch.float64


# ----------------------------------------------------------------------------- amortisation

def test_R17_gaussian_elbo_refuses_samples_zero(X):
    mu, lv = posteriors(2)
    with raises(ArgumentError, "samples"):
        am.gaussian_elbo(vae(), X[:2], mu, lv, samples=0)


@pytest.mark.parametrize("steps", [-5, 0])
def test_R18_optimal_gaussian_refuses_steps_that_would_report_no_gap(X, steps):
    mu, lv = posteriors(2)
    with raises(ArgumentError, "steps"):
        am.optimal_gaussian(vae(), X[:2], mu, lv, steps=steps)
    with raises(ArgumentError, "steps"):
        am.inference_gaps(vae(), X[:2], steps=steps, k=2, eval_samples=2)


@pytest.mark.parametrize("lr", [float("nan"), 0.0, -1e-2, float("inf")])
def test_R19_optimal_gaussian_refuses_a_bad_learning_rate(X, lr):
    mu, lv = posteriors(2)
    with raises(ArgumentError, "lr"):
        am.optimal_gaussian(vae(), X[:2], mu, lv, steps=2, lr=lr)


@pytest.mark.parametrize("k, words", [(3, ["k must", "(2)"]), (0, ["k must"]), (2.0, ["k must"])])
def test_R20_R21_the_mixture_bound_needs_k_a_multiple_of_the_proposals(X, k, words):
    mu, lv = posteriors(2)
    with raises(VAETutorialError, *words):
        am.mixture_iwae_bound(vae(), X[:2], [(mu, lv)] * 2, k=k)
    with raises(VAETutorialError, "k"):
        am.inference_gaps(vae(), X[:2], steps=2, k=k if k != 2.0 else 3)


def test_amortisation_checks_mu_and_logvar_against_the_model(X):
    mu, lv = posteriors(2, z=3)  # the model's latent_dim is 2
    with raises(ArgumentError, "mu", "latent_dim", "(2, 2)"):
        am.gaussian_elbo(vae(), X[:2], mu, lv)
    mu, lv = posteriors(3)  # 3 rows for a batch of 2
    with raises(ArgumentError, "mu0", "(2, 2)"):
        am.optimal_gaussian(vae(), X[:2], mu, lv, steps=1)
    with raises(ArgumentError, "proposals[1]"):
        am.mixture_iwae_bound(vae(), X[:2], [posteriors(2), (mu, lv)], k=2)
    mu, lv = posteriors(2)
    mu[0, 0] = float("inf")
    with raises(DataError, "mu", "NaN or infinite"):
        am.gaussian_elbo(vae(), X[:2], mu, lv)


def test_amortisation_checks_the_images_and_the_weights(X):
    with raises(DataError, "inference_gaps", "(1, 8, 8)", "(1, 28, 28)"):
        am.inference_gaps(vae(), torch.zeros(2, 1, 28, 28), steps=1, k=2, eval_samples=2)
    with raises(ArgumentError, "non-finite"):
        am.inference_gaps(nan_weight(vae()), X[:2], steps=1, k=2, eval_samples=2)
    with raises(ArgumentTypeError, "seed"):
        am.inference_gaps(vae(), X[:2], steps=1, k=2, eval_samples=2, seed=0.5)


@pytest.mark.parametrize("make", [hvae, pixel_vae, diffusion, cvae])
def test_amortisation_names_what_it_supports_for_other_models(X, make):
    with raises(ArgumentTypeError, "inference_gaps", "supports", "VAE", type(make()).__name__):
        am.inference_gaps(make(), X[:2], steps=1, k=2, eval_samples=2)


def test_amortisation_still_works_and_moves_nothing_it_should_not(X):
    model = vae()
    gaps = am.inference_gaps(model, X[:3], steps=2, samples=2, eval_samples=4, k=4)
    assert gaps["log_px"].shape == (3,) and bool(torch.isfinite(gaps["amortisation_gap"]).all())
    assert all(p.grad is None for p in model.parameters())


# ----------------------------------------------------------------------------- gradient SNR

@pytest.mark.parametrize("repeats", [float("nan"), 2.5, True, 1])
def test_R07_gradient_snr_refuses_a_bad_number_of_repeats(X, repeats):
    with raises(VAETutorialError, "repeats"):
        gradient_snr.iwae_gradient_snr(vae(), X[:4], k=2, repeats=repeats)


@pytest.mark.parametrize("make", [hvae, diffusion])
def test_R09_gradient_snr_names_the_models_it_supports(X, make):
    with raises(ArgumentTypeError, "iwae_gradient_snr", "encoder", "PixelVAE", type(make()).__name__):
        gradient_snr.iwae_gradient_snr(make(), X[:4], k=2, repeats=2)


def test_gradient_snr_works_for_a_pixel_vae(X):  # encoder and decoder modules: supported
    r = gradient_snr.iwae_gradient_snr(pixel_vae(), X[:2], k=2, repeats=3,
                                       generator=torch.Generator().manual_seed(0))
    model = pixel_vae()
    assert r["encoder"].numel() == sum(p.numel() for p in model.encoder.parameters())
    assert r["decoder"].numel() == sum(p.numel() for p in model.decoder.parameters())
    assert bool(torch.isfinite(r["decoder"]).any())


def test_gradient_snr_checks_k_the_images_and_the_weights(X):
    with raises(ArgumentError, "k"):
        gradient_snr.iwae_gradient_snr(vae(), X[:4], k=0, repeats=2)
    with raises(DataError, "iwae_gradient_snr", "(1, 28, 28)"):
        gradient_snr.iwae_gradient_snr(vae(), torch.zeros(2, 1, 28, 28), k=2, repeats=2)
    with raises(ArgumentError, "non-finite"):
        gradient_snr.iwae_gradient_snr(nan_weight(vae()), X[:4], k=2, repeats=2)
    with raises(ArgumentTypeError, "conditional"):
        gradient_snr.iwae_gradient_snr(cvae(), X[:4], k=2, repeats=2)


# ----------------------------------------------------------------------------- compression

@pytest.mark.parametrize("make", [hvae, pixel_vae, diffusion, cvae])
def test_the_codecs_name_what_they_support_for_other_models(X, make):
    for call in (lambda m: compression.bits_back_encode(m, X[:1]),
                 lambda m: compression.bits_back_decode(m, (2**40, ()), 1, (1, 8, 8)),
                 lambda m: compression.two_part_codelength(m, X[:1], 0.5)):
        with raises(ArgumentTypeError, "supports", type(make()).__name__):
            call(make())


def test_the_codecs_check_images_shapes_and_weights(X):
    model = vae().eval()
    with raises(DataError, "bits_back_encode", "(1, 8, 8)"):
        compression.bits_back_encode(model, torch.zeros(1, 1, 28, 28))
    with raises(DataError, "two_part_codelength", "(1, 8, 8)"):
        compression.two_part_codelength(model, torch.zeros(1, 1, 28, 28), 0.5)
    with raises(DataError, "two_part_codelength", "neither 0 nor 1"):
        compression.two_part_codelength(model, torch.full((1, 1, 8, 8), 0.5), 0.5)
    with raises(DataError, "shape"):
        compression.bits_back_decode(model, (2**40, ()), 1, (1, 28, 28))
    with raises(ArgumentError, "n"):
        compression.bits_back_decode(model, (2**40, ()), 0, (1, 8, 8))
    with raises(ArgumentError, "non-finite"):
        compression.bits_back_encode(nan_weight(vae()), X[:1])
    with raises(ArgumentTypeError, "seed"):
        compression.bits_back_encode(model, X[:1], seed=1.5)


def test_R30_lossless_baselines_refuses_an_empty_or_grey_set():
    with raises(DataError, "non-empty (N, H, W)"):
        compression.lossless_baselines(np.zeros((0, 8, 8)))
    with raises(DataError, "(N, H, W)", "images[:, 0]"):
        compression.lossless_baselines(np.zeros((2, 1, 8, 8)))
    with raises(DataError, "neither 0 nor 1"):
        compression.lossless_baselines(np.full((2, 8, 8), 0.5))
    out = compression.lossless_baselines(np.zeros((2, 8, 8)))  # 0/1 floats are binary images
    assert all(np.isfinite(v) and v > 0 for v in out.values())


@pytest.mark.parametrize("call, words", [
    (lambda: compression.prior_bucket_centres(-1), ["latent_bits"]),
    (lambda: compression.prior_bucket_centres(2.5), ["latent_bits"]),
    (lambda: compression.bernoulli_frequencies(torch.zeros(4), -1), ["pixel_bits"]),
    (lambda: compression.bernoulli_frequencies(torch.tensor([0.0, float("nan")]), 8), ["logits", "NaN"]),
    (lambda: compression.gaussian_bucket_frequencies(np.zeros(2), np.ones(2), -2, 8), ["latent_bits"]),
    (lambda: compression.gaussian_bucket_frequencies(np.zeros(2), np.zeros(2), 2, 8), ["sigma > 0"]),
    (lambda: compression.gaussian_bucket_frequencies(np.zeros(2), np.ones(3), 2, 8), ["one length"]),
    (lambda: compression.gaussian_bucket_frequencies(np.array([0.0, np.nan]), np.ones(2), 2, 8), ["mu", "NaN"]),
])
def test_the_coders_building_blocks_check_their_arguments(call, words):
    with raises(VAETutorialError, *words):
        call()


# ----------------------------------------------------------------------------- plots

@pytest.mark.parametrize("case, make", [("R53", hvae), ("R55", diffusion), ("R53b", pixel_vae)])
def test_R53_R55_plot_manifold_names_the_models_it_supports(case, make):
    with raises(ArgumentTypeError, "plot_manifold", "supports", type(make()).__name__, "plot_samples"):
        plots.plot_manifold(make())
    with raises(ArgumentTypeError, "decode_mean"):
        plots.decode_mean(make(), torch.zeros(1, 2))


@pytest.mark.parametrize("make", [hvae, pixel_vae, diffusion])
def test_the_plots_that_can_draw_part_iii_models_do(X, make):
    import matplotlib.pyplot as plt

    for draw in (lambda m: plots.plot_samples(m, n=2), lambda m: plots.plot_reconstructions(m, X, n=2)):
        fig = draw(make())
        assert fig.axes and fig.axes[0].images
        plt.close(fig)


def test_the_plots_check_images_dims_and_weights(X):
    with raises(DataError, "plot_reconstructions", "(1, 8, 8)", "(1, 28, 28)"):
        plots.plot_reconstructions(vae(), torch.zeros(4, 1, 28, 28), n=2)
    with raises(DataError, "encode_mean", "(1, 28, 28)"):
        plots.encode_mean(vae(), torch.zeros(4, 1, 28, 28))
    with raises(ArgumentTypeError, "dims[1]"):
        plots.plot_manifold(vae(3), dims=(0, 1.7))
    with raises(ArgumentTypeError, "dims[0]"):
        plots.plot_latent_scatter(vae(3), X, dims=(0.5, 1))
    with raises(ArgumentTypeError, "max_points"):
        plots.plot_latent_scatter(vae(), X, max_points=10.5)
    with raises(DataError, "z_rest", "NaN"):
        plots.plot_manifold(vae(3), z_rest=[0.0, 0.0, float("nan")])
    with raises(ArgumentError, "non-finite"):
        plots.plot_samples(nan_weight(vae()), n=2)


# ----------------------------------------------------------------------------- outside the research helpers

def test_F08_fit_refuses_one_hot_labels_for_a_conditional_model(X):
    from torch.utils.data import TensorDataset
    y = torch.nn.functional.one_hot(torch.arange(len(X)) % 10, 10)
    with raises(DataError, "labels"):
        vt.fit(cvae(), TensorDataset(X, y), **FIT)


def test_F19_fit_refuses_a_1d_tensor():
    with raises(DataError, "shape"):
        vt.fit(vae(), torch.rand(200), **FIT)


def test_F20_fit_refuses_an_array_of_strings():
    with raises(VAETutorialError, "data"):
        vt.fit(vae(), np.array(["a", "b"]), **FIT)


def test_F21_fit_refuses_a_data_set_name_given_as_data():
    with raises(VAETutorialError, "load_dataset"):
        vt.fit(vae(), "digits", **FIT)


def test_F22_fit_refuses_a_dict(X):
    with raises(ArgumentTypeError, "dict"):
        vt.fit(vae(), {"images": X}, **FIT)


def test_F39_fit_refuses_an_elbo_fn_that_returns_no_terms(X):
    with raises(ArgumentTypeError, "elbo_fn", "ELBOTerms"):
        vt.fit(vae(), X, elbo_fn=lambda m, x, b, y=None, generator=None: 3, **FIT)


def test_F55_subset_refuses_a_short_boolean_mask():
    with raises(ArgumentError, "mask"):
        vt.load_dataset("digits").subset(torch.tensor([True, False]))


def test_F61_sample_refuses_a_negative_count():
    with raises(ArgumentError, "n"):
        vae().sample(-1)


def test_F62_conditional_sample_refuses_a_class_out_of_range():
    with raises(ArgumentError, "y", "num_classes"):
        cvae().sample(3, y=12)


def test_W50_a_check_survives_student_code_that_calls_sys_exit():
    result = check.kl_standard_normal(lambda mu, logvar: sys.exit())
    assert not result


# ----------------------------------------------------------------------------- PPCA

def test_ppca_refuses_non_finite_parameters_and_data():
    from vae_tutorial.maths.ppca import LinearGaussian

    w = torch.eye(4, 2, dtype=torch.float64)
    bad = w.clone()
    bad[0, 0] = float("nan")
    with raises(DataError, "weight W", "NaN"):
        LinearGaussian(bad, torch.zeros(4), 0.5)
    with raises(DataError, "bias b", "NaN"):
        LinearGaussian(w, torch.tensor([0.0, float("inf"), 0.0, 0.0]), 0.5)
    model = LinearGaussian(w, torch.zeros(4), 0.5)
    x = torch.zeros(2, 4, dtype=torch.float64)
    x[1, 2] = float("nan")
    with raises(DataError, "x", "NaN"):  # was a NaN log p(x) without a word
        model.log_marginal(x)
    with raises(DataError, "mu", "NaN"):
        model.elbo(torch.zeros(2, 4), torch.full((2, 2), float("nan")), torch.zeros(2, 2))
    assert bool(torch.isfinite(model.log_marginal(torch.zeros(2, 4))).all())


def test_a_model_on_the_meta_device_is_refused_by_name():
    # the meta device holds shapes, not values: a clear error, not torch's "Cannot copy out of meta tensor"
    model = vae().to("meta")
    with raises(ArgumentError, "meta device", "encoder"):
        plots.plot_samples(model, n=2)
    with raises(ArgumentError, "meta device"):
        vt.evaluate_model(model, torch.rand(4, 1, 8, 8))
