"""Issue 11: the public functions of plots, widgets, ppca and gradients refuse bad arguments
at the boundary with one of the package's documented errors, whose message names the argument;
valid calls keep working."""
import matplotlib

matplotlib.use("Agg")

import re

import matplotlib.pyplot as plt
import pytest
import torch

from vae_tutorial import VAE, MLPDecoder, MLPEncoder, plots, widgets
from vae_tutorial.errors import ArgumentError, ArgumentTypeError, VAETutorialError
from vae_tutorial.maths.gradients import pathwise_gradient, score_function_gradient
from vae_tutorial.maths.ppca import LinearGaussian

SIDE = 8
Z = 2


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _vae():
    torch.manual_seed(0)
    shape = (1, SIDE, SIDE)
    return VAE(MLPEncoder(shape, [8], Z), MLPDecoder(Z, [8], shape), "bernoulli")


MODEL = _vae()
X = torch.rand(6, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
MU, LV = torch.zeros(3), torch.zeros(3)


def _square(z):
    return (z ** 2).sum(-1)


def _ppca():
    x = torch.randn(20, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return LinearGaussian.fit(x, 2)


PPCA = _ppca()
XP = torch.zeros(2, 5, dtype=torch.float64)
ZP = torch.zeros(2, 2, dtype=torch.float64)

# (call, error class, a word the message must contain)
BAD = {
    "image_grid nrow=0": (lambda: plots.image_grid(X, nrow=0), ArgumentError, "nrow"),
    "image_grid nrow=2.5": (lambda: plots.image_grid(X, nrow=2.5), ArgumentTypeError, "nrow"),
    "image_grid padding=-1": (lambda: plots.image_grid(X, padding=-1), ArgumentError, "padding"),
    "image_grid pad_value=nan": (lambda: plots.image_grid(X, pad_value=float("nan")), ArgumentError, "pad_value"),
    "image_grid NaN images": (lambda: plots.image_grid(X * float("nan")), ArgumentError, "NaN"),
    "image_grid empty": (lambda: plots.image_grid(X[:0]), ArgumentError, "empty"),
    "show_images nrow=0": (lambda: plots.show_images(X, nrow=0), ArgumentError, "nrow"),
    "show_images nrow='4'": (lambda: plots.show_images(X, nrow="4"), ArgumentTypeError, "nrow"),
    "decode_mean wrong Z": (lambda: plots.decode_mean(MODEL, torch.zeros(4, Z + 1)), ArgumentError, "z"),
    "decode_mean not a model": (lambda: plots.decode_mean(object(), torch.zeros(4, Z)), ArgumentTypeError, "model"),
    "encode_mean batch_size=0": (lambda: plots.encode_mean(MODEL, X, batch_size=0), ArgumentError, "batch_size"),
    "encode_mean scalar x": (lambda: plots.encode_mean(MODEL, torch.tensor(1.0)), ArgumentError, "x"),
    "plot_reconstructions n=0": (lambda: plots.plot_reconstructions(MODEL, X, n=0), ArgumentError, "n"),
    "plot_reconstructions n=nan": (lambda: plots.plot_reconstructions(MODEL, X, n=float("nan")),
                                   ArgumentTypeError, "n"),
    "plot_samples n=0": (lambda: plots.plot_samples(MODEL, n=0), ArgumentError, "n"),
    "plot_samples n=1.5": (lambda: plots.plot_samples(MODEL, n=1.5), ArgumentTypeError, "n"),
    "plot_samples nrow=0": (lambda: plots.plot_samples(MODEL, n=4, nrow=0), ArgumentError, "nrow"),
    "plot_samples model=None": (lambda: plots.plot_samples(None, n=4), ArgumentTypeError, "model"),
    "plot_manifold n=1": (lambda: plots.plot_manifold(MODEL, n=1), ArgumentError, "n"),
    "plot_manifold span=nan": (lambda: plots.plot_manifold(MODEL, span=float("nan")), ArgumentError, "span"),
    "plot_manifold span=1": (lambda: plots.plot_manifold(MODEL, span=1.0), ArgumentError, "span"),
    "plot_manifold ticks=0": (lambda: plots.plot_manifold(MODEL, n=3, ticks=0), ArgumentError, "ticks"),
    "plot_manifold dims": (lambda: plots.plot_manifold(MODEL, n=3, dims=(0, 0)), ArgumentError, "dims"),
    "plot_manifold z_rest": (lambda: plots.plot_manifold(MODEL, n=3, z_rest=torch.zeros(5)), ArgumentError, "z_rest"),
    "interpolate_latents steps=1": (lambda: plots.interpolate_latents(MU, LV, steps=1), ArgumentError, "steps"),
    "interpolate_latents steps=inf": (lambda: plots.interpolate_latents(MU, LV, steps=float("inf")),
                                      ArgumentTypeError, "steps"),
    "interpolate_latents shapes": (lambda: plots.interpolate_latents(torch.zeros(2), torch.zeros(3)),
                                   ArgumentError, "z_a"),
    "interpolate_latents method": (lambda: plots.interpolate_latents(MU, LV, method="cubic"), ArgumentError, "method"),
    "lerp shapes": (lambda: plots.lerp(torch.zeros(2), torch.zeros(3), 0.5), ArgumentError, "shape"),
    "slerp t matrix": (lambda: plots.slerp(MU, LV, torch.zeros(2, 2)), ArgumentError, "t"),
    "plot_interpolation steps=0": (lambda: plots.plot_interpolation(MODEL, X[0], X[1], steps=0), ArgumentError, "steps"),
    "plot_interpolation method": (lambda: plots.plot_interpolation(MODEL, X[0], X[1], method="x"),
                                  ArgumentError, "method"),
    "plot_interpolation shapes": (lambda: plots.plot_interpolation(MODEL, X[0], X[:3]), ArgumentError, "x_a"),
    "plot_rate_distortion nan": (lambda: plots.plot_rate_distortion([float("nan")], [1.0]), ArgumentError, "finite"),
    "plot_rate_distortion lengths": (lambda: plots.plot_rate_distortion([1.0, 2.0], [1.0]), ArgumentError, "rates"),
    "decode_to_png scale=0": (lambda: widgets.decode_to_png(MODEL, torch.zeros(Z), scale=0), ArgumentError, "scale"),
    "decode_to_png scale=2.5": (lambda: widgets.decode_to_png(MODEL, torch.zeros(Z), scale=2.5),
                                ArgumentTypeError, "scale"),
    "decode_to_png z batch": (lambda: widgets.decode_to_png(MODEL, torch.zeros(3, Z)), ArgumentError, "z"),
    "decode_to_png wrong Z": (lambda: widgets.decode_to_png(MODEL, torch.zeros(Z + 3)), ArgumentError, "z"),
    "latent_explorer span=0": (lambda: widgets.latent_explorer(MODEL, span=0), ArgumentError, "span"),
    "latent_explorer step=nan": (lambda: widgets.latent_explorer(MODEL, step=float("nan")), ArgumentError, "step"),
    "latent_explorer dims=0": (lambda: widgets.latent_explorer(MODEL, dims=0), ArgumentError, "dims"),
    "latent_explorer dims>Z": (lambda: widgets.latent_explorer(MODEL, dims=Z + 1), ArgumentError, "dims"),
    "latent_explorer z0": (lambda: widgets.latent_explorer(MODEL, z0=torch.zeros(Z + 1)), ArgumentError, "z0"),
    "latent_explorer scale=0": (lambda: widgets.latent_explorer(MODEL, scale=0), ArgumentError, "scale"),
    "latent_explorer seed=-1": (lambda: widgets.latent_explorer(MODEL, seed=-1), ArgumentError, "seed"),
    "latent_explorer model": (lambda: widgets.latent_explorer(torch.nn.Identity()), ArgumentTypeError, "model"),
    "explorer_html span=-1": (lambda: widgets.explorer_html(MODEL, torch.zeros(Z), span=-1.0), ArgumentError, "span"),
    "explorer_html z": (lambda: widgets.explorer_html(MODEL, torch.zeros(Z + 1)), ArgumentError, "z"),
    "explorer_html dims": (lambda: widgets.explorer_html(MODEL, torch.zeros(Z), dims=0), ArgumentError, "dims"),
    "ppca weight 1-D": (lambda: LinearGaussian(torch.zeros(3), torch.zeros(3), 1.0), ArgumentError, "weight"),
    "ppca bias shape": (lambda: LinearGaussian(torch.zeros(3, 2), torch.zeros(2), 1.0), ArgumentError, "bias"),
    "ppca noise_var=0": (lambda: LinearGaussian(torch.zeros(3, 2), torch.zeros(3), 0.0), ArgumentError, "noise_var"),
    "ppca noise_var=inf": (lambda: LinearGaussian(torch.zeros(3, 2), torch.zeros(3), float("inf")),
                           ArgumentError, "noise_var"),
    "ppca fit latent_dim=0": (lambda: LinearGaussian.fit(XP.repeat(3, 1), 0), ArgumentError, "latent_dim"),
    "ppca fit latent_dim=D": (lambda: LinearGaussian.fit(XP.repeat(3, 1), 5), ArgumentError, "latent_dim"),
    "ppca fit latent_dim=1.5": (lambda: LinearGaussian.fit(XP.repeat(3, 1), 1.5), ArgumentTypeError, "latent_dim"),
    "ppca fit numpy x": (lambda: LinearGaussian.fit(XP.numpy(), 1), ArgumentTypeError, "x"),
    "ppca fit NaN x": (lambda: LinearGaussian.fit(XP.repeat(3, 1) * float("nan"), 1), ArgumentError, "x"),
    "ppca fit one example": (lambda: LinearGaussian.fit(XP[:1], 1), ArgumentError, "examples"),
    "ppca sample n=0": (lambda: PPCA.sample(0), ArgumentError, "n"),
    "ppca sample n=2.5": (lambda: PPCA.sample(2.5), ArgumentTypeError, "n"),
    "ppca log_marginal wrong D": (lambda: PPCA.log_marginal(torch.zeros(2, 4)), ArgumentError, "x"),
    "ppca elbo mu shape": (lambda: PPCA.elbo(XP, torch.zeros(2, 3), ZP), ArgumentError, "mu"),
    "ppca elbo_monte_carlo n_samples=1": (lambda: PPCA.elbo_monte_carlo(XP, ZP, ZP, 1), ArgumentError, "n_samples"),
    "ppca elbo_monte_carlo n_samples=2.5": (lambda: PPCA.elbo_monte_carlo(XP, ZP, ZP, 2.5),
                                            ArgumentTypeError, "n_samples"),
    "pathwise f": (lambda: pathwise_gradient(None, MU, LV, 4), ArgumentTypeError, "f"),
    "pathwise n=0": (lambda: pathwise_gradient(_square, MU, LV, 0), ArgumentError, "n"),
    "pathwise n=2.5": (lambda: pathwise_gradient(_square, MU, LV, 2.5), ArgumentTypeError, "n"),
    "pathwise mu list": (lambda: pathwise_gradient(_square, [0.0, 0.0], LV[:2], 4), ArgumentTypeError, "mu"),
    "pathwise shapes": (lambda: pathwise_gradient(_square, MU, torch.zeros(2), 4), ArgumentError, "logvar"),
    "pathwise NaN mu": (lambda: pathwise_gradient(_square, MU * float("nan"), LV, 4), ArgumentError, "mu"),
    "pathwise f shape": (lambda: pathwise_gradient(lambda z: z, MU, LV, 4), ArgumentError, "f"),
    "score n=-1": (lambda: score_function_gradient(_square, MU, LV, -1), ArgumentError, "n"),
    "score logvar int": (lambda: score_function_gradient(_square, MU, torch.zeros(3, dtype=torch.long), 4),
                         ArgumentTypeError, "logvar"),
    "score inf logvar": (lambda: score_function_gradient(_square, MU, LV + float("inf"), 4), ArgumentError, "logvar"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_call_raises_documented_error_naming_the_argument(name):
    call, error, word = BAD[name]
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, VAETutorialError)
    assert re.search(rf"\b{re.escape(word)}\b", str(info.value)), str(info.value)


GOOD = {
    "image_grid": lambda: plots.image_grid(X, nrow=3, padding=0, pad_value=0),
    "image_grid numpy int nrow": lambda: plots.image_grid(X, nrow=__import__("numpy").int64(2)),
    "show_images": lambda: plots.show_images(X, nrow=3, title="t"),
    "decode_mean 1-D": lambda: plots.decode_mean(MODEL, torch.zeros(Z)),
    "encode_mean": lambda: plots.encode_mean(MODEL, X, batch_size=4),
    "plot_reconstructions": lambda: plots.plot_reconstructions(MODEL, X, n=20),
    "plot_samples": lambda: plots.plot_samples(MODEL, n=5, generator=torch.Generator().manual_seed(0)),
    "plot_samples nrow": lambda: plots.plot_samples(MODEL, n=4, nrow=2),
    "plot_manifold": lambda: plots.plot_manifold(MODEL, n=3, span=0.9),
    "interpolate_latents": lambda: plots.interpolate_latents(torch.zeros(Z), torch.ones(Z), 10, "slerp"),
    "plot_interpolation": lambda: plots.plot_interpolation(MODEL, X[0], X[1:2], steps=3),
    "decode_to_png": lambda: widgets.decode_to_png(MODEL, torch.zeros(1, Z), scale=2),
    "latent_explorer": lambda: widgets.latent_explorer(MODEL, z0=torch.zeros(Z), span=3, step=0.05),
    "explorer_html": lambda: widgets.explorer_html(MODEL, torch.zeros(Z), span=3, step=0.1),
    "ppca": lambda: (PPCA.sample(3), PPCA.elbo_monte_carlo(XP, ZP, ZP, 10), PPCA.log_marginal(XP)),
    "pathwise": lambda: pathwise_gradient(_square, MU, LV, 4, torch.Generator().manual_seed(0)),
    "score": lambda: score_function_gradient(_square, MU.requires_grad_(False), LV, 4),
}


@pytest.mark.parametrize("name", list(GOOD))
def test_valid_call_still_works(name):
    GOOD[name]()
