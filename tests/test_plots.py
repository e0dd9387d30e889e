"""The pictures of ``vae_tutorial.display.plots`` show what they claim: the right images, points and curves."""
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from vae_tutorial import VAE, Autoencoder, ConditionalVAE, History, MLPDecoder, MLPEncoder  # noqa: E402
from vae_tutorial import plots  # noqa: E402
from vae_tutorial.display.plots import image_grid, interpolate_latents, lerp, slerp  # noqa: E402

SIDE = 8  # 8×8 images keep every test fast


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def tiny_vae(latent_dim=2, seed=0, likelihood="bernoulli"):
    torch.manual_seed(seed)
    shape = (1, SIDE, SIDE)
    return VAE(MLPEncoder(shape, [16], latent_dim), MLPDecoder(latent_dim, [16], shape), likelihood)


def images(n=12, seed=0):
    return torch.rand(n, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(seed))


class FakeData:
    """What ``load_dataset`` returns, minus the loading."""

    def __init__(self, n=30, num_classes=3):
        self.images = images(n)
        self.labels = torch.arange(n) % num_classes
        self.classes = [f"class {c}" for c in range(num_classes)]


def shown(fig) -> np.ndarray:
    """The picture drawn on the single axes of ``fig``."""
    (ax,) = fig.axes
    (im,) = ax.images
    return np.asarray(im.get_array())


def cell(grid, row, col, padding=1, side=SIDE):
    top, left = row * (side + padding), col * (side + padding)
    return grid[top:top + side, left:left + side]


# ----------------------------------------------------------------------------- grids

def test_image_grid_places_each_image_and_pads_the_rest():
    x = images(5)
    grid = image_grid(x, nrow=3, padding=1, pad_value=1.0)
    assert grid.shape == (2 * SIDE + 1, 3 * SIDE + 2)
    for i in range(5):
        r, c = divmod(i, 3)
        np.testing.assert_allclose(cell(grid, r, c), x[i, 0].numpy())
    assert np.all(cell(grid, 1, 2) == 1.0)  # the sixth cell is empty
    assert np.all(grid[SIDE, :] == 1.0)  # the padding row between the two rows
    assert grid.min() >= 0 and grid.max() <= 1


@pytest.mark.parametrize("reshape", [lambda x: x, lambda x: x[:, 0], lambda x: x.reshape(x.shape[0], -1)])
def test_image_grid_accepts_all_documented_shapes(reshape):
    x = images(4)
    np.testing.assert_array_equal(image_grid(reshape(x), nrow=2), image_grid(x, nrow=2))


@pytest.mark.parametrize("bad, message", [
    (torch.rand(3, 50), "square"),
    (torch.rand(3, 3, 8, 8), "grey-scale"),
    (torch.rand(3, 8, 8) * 2, r"\[0, 1\]"),
    (torch.full((2, 8, 8), float("nan")), "NaN"),
    (torch.rand(8), "shaped"),
])
def test_image_grid_rejects_bad_images_with_a_clear_error(bad, message):
    with pytest.raises(ValueError, match=message):
        image_grid(bad, nrow=2)


def test_show_images_draws_the_grid_with_a_title():
    x = images(10)
    fig = plots.show_images(x, nrow=5, title="ten")
    assert isinstance(fig, Figure)
    np.testing.assert_allclose(shown(fig), image_grid(x, nrow=5))
    assert fig.axes[0].get_title() == "ten"
    assert plots.show_images(x).axes[0].get_title() == "10 images"


def test_show_images_draws_into_a_given_axes():
    fig, axes = plt.subplots(1, 2)
    out = plots.show_images(images(4), ax=axes[1])
    assert out is fig and len(axes[1].images) == 1 and len(axes[0].images) == 0


# ----------------------------------------------------------------------------- model pictures

def test_reconstructions_show_inputs_above_reconstructions():
    model = tiny_vae()
    model.train()
    x = images(12)
    fig = plots.plot_reconstructions(model, x, n=6)
    grid = shown(fig)
    assert grid.shape == (2 * SIDE + 1, 6 * SIDE + 5)
    rec = model.reconstruct(x[:6])
    for i in range(6):
        np.testing.assert_allclose(cell(grid, 0, i), x[i, 0].numpy())
        np.testing.assert_allclose(cell(grid, 1, i), rec[i, 0].numpy(), atol=1e-6)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["input", "reconstruction"]
    assert "reconstruction" in ax.get_title()
    assert model.training  # the plot put the model in eval mode only while drawing


def test_reconstructions_of_a_conditional_vae_need_labels():
    torch.manual_seed(0)
    shape, c, z = (1, SIDE, SIDE), 3, 2
    model = ConditionalVAE(MLPEncoder(SIDE * SIDE + c, [16], z), MLPDecoder(z + c, [16], shape), num_classes=c)
    x, y = images(4), torch.tensor([0, 1, 2, 0])
    with pytest.raises(TypeError, match="labels"):
        plots.plot_reconstructions(model, x)
    grid = shown(plots.plot_reconstructions(model, x, y=y))
    np.testing.assert_allclose(cell(grid, 1, 2), model.reconstruct(x, y)[2, 0].numpy(), atol=1e-6)


def test_samples_are_decoded_prior_draws():
    model = tiny_vae()
    fig = plots.plot_samples(model, n=9, generator=torch.Generator().manual_seed(3))
    want = model.sample(9, torch.Generator().manual_seed(3))
    np.testing.assert_allclose(shown(fig), image_grid(want, nrow=3), atol=1e-6)
    assert fig.axes[0].get_title() == "Samples from the prior"


def test_latent_scatter_plots_one_point_per_posterior_mean_with_class_legend():
    model = tiny_vae(latent_dim=2)
    data = FakeData(n=30)
    fig = plots.plot_latent_scatter(model, data)
    ax = fig.axes[0]
    (points,) = ax.collections
    mu, _ = model.encode(data.images)
    np.testing.assert_allclose(points.get_offsets(), mu.detach().numpy(), atol=1e-6)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == data.classes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z1", "z2")
    assert "Posterior means" in ax.get_title()


def test_latent_scatter_says_which_dims_it_shows_and_caps_the_points():
    model = tiny_vae(latent_dim=5)
    data = FakeData(n=30)
    fig = plots.plot_latent_scatter(model, data, max_points=10, dims=(1, 3))
    ax = fig.axes[0]
    assert len(ax.collections[0].get_offsets()) == 10
    assert "Z=5" in ax.get_title() and "z2" in ax.get_title() and "z4" in ax.get_title()
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z2", "z4")


def test_latent_scatter_pca_projection_is_centred_and_unlabelled_data_works():
    model = tiny_vae(latent_dim=4)
    fig = plots.plot_latent_scatter(model, images(25), projection="pca")
    xy = fig.axes[0].collections[0].get_offsets()
    assert xy.shape == (25, 2)
    np.testing.assert_allclose(xy.mean(0), 0, atol=1e-5)
    assert xy[:, 0].var() >= xy[:, 1].var()  # PC 1 carries the most variance
    assert fig.axes[0].get_legend() is None


def test_latent_scatter_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="labels"):
        plots.plot_latent_scatter(tiny_vae(), images(10), labels=torch.zeros(9))


def test_latent_scatter_of_an_autoencoder_shows_codes():
    torch.manual_seed(0)
    ae = Autoencoder(MLPEncoder((1, SIDE, SIDE), [16], 2), MLPDecoder(2, [16], (1, SIDE, SIDE)))
    fig = plots.plot_latent_scatter(ae, FakeData())
    assert fig.axes[0].get_title().startswith("Codes")


@pytest.mark.parametrize("n", [5, 6])
def test_manifold_decodes_a_grid_at_prior_quantiles(n):
    model = tiny_vae(latent_dim=2)
    fig = plots.plot_manifold(model, n=n, span=0.9)
    grid = shown(fig)
    assert grid.shape == (n * SIDE, n * SIDE)
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n, dtype=torch.float64)).float()
    top_left = model.mean(model.decode(torch.stack([q[0], q[-1]])[None]))  # z1 smallest, z2 largest
    bottom_right = model.mean(model.decode(torch.stack([q[-1], q[0]])[None]))
    np.testing.assert_allclose(cell(grid, 0, 0, padding=0), top_left[0, 0].detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(cell(grid, n - 1, n - 1, padding=0), bottom_right[0, 0].detach().numpy(),
                               atol=1e-6)
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z1", "z2")
    ticks = [float(t.get_text()) for t in ax.get_xticklabels()]
    assert ticks[0] == pytest.approx(float(q[0]), abs=0.01) and ticks[-1] == pytest.approx(float(q[-1]), abs=0.01)
    assert ticks[0] == pytest.approx(-1.645, abs=0.01)


def test_manifold_fixes_the_other_dims_and_checks_its_arguments():
    model = tiny_vae(latent_dim=3)
    z_rest = torch.tensor([0.0, 0.0, 1.5])
    grid = shown(plots.plot_manifold(model, n=3, z_rest=z_rest))
    centre = model.mean(model.decode(z_rest[None]))  # n = 3: the centre cell is z1 = z2 = 0
    np.testing.assert_allclose(cell(grid, 1, 1, padding=0), centre[0, 0].detach().numpy(), atol=1e-6)
    assert "fixed" in plt.gcf().axes[0].get_title()
    with pytest.raises(ValueError, match="span"):
        plots.plot_manifold(model, span=1.0)
    with pytest.raises(ValueError, match="dims"):
        plots.plot_manifold(model, dims=(0, 0))


def test_every_model_picture_moves_inputs_to_the_model():
    """A float64 model gets float64 inputs (the same path moves them to a GPU model)."""
    model = tiny_vae(latent_dim=2).double()
    x = images(6)
    figs = [
        plots.plot_reconstructions(model, x, n=3),
        plots.plot_samples(model, n=4),
        plots.plot_latent_scatter(model, x),
        plots.plot_manifold(model, n=3),
        plots.plot_interpolation(model, x[0], x[1], steps=3, method="slerp"),
    ]
    assert all(isinstance(f, Figure) for f in figs)


# ----------------------------------------------------------------------------- interpolation

def test_lerp_shapes_and_values():
    a, b = torch.tensor([0.0, 2.0]), torch.tensor([4.0, -2.0])
    torch.testing.assert_close(lerp(a, b, 0.25), torch.tensor([1.0, 1.0]))
    t = torch.linspace(0, 1, 5)
    assert lerp(a, b, t).shape == (5, 2)
    assert lerp(a.repeat(3, 1), b.repeat(3, 1), t).shape == (5, 3, 2)
    with pytest.raises(ValueError, match="same shape"):
        lerp(a, torch.zeros(3), 0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_slerp_hits_both_endpoints_exactly(dtype):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 6, generator=g, dtype=dtype), torch.randn(4, 6, generator=g, dtype=dtype) * 3
    out = slerp(a, b, torch.tensor([0.0, 1.0]))
    assert out.dtype == dtype
    assert torch.equal(out[0], a) and torch.equal(out[1], b)


def test_slerp_stays_on_the_unit_sphere_and_moves_at_constant_angular_speed():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(10, 8, generator=g), torch.randn(10, 8, generator=g)
    a, b = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    t = torch.linspace(0, 1, 7)
    out = slerp(a, b, t)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(7, 10))
    omega = torch.arccos((a * b).sum(-1))
    angle_from_a = torch.arccos((out * a).sum(-1).clamp(-1, 1))
    torch.testing.assert_close(angle_from_a, t[:, None] * omega, atol=1e-3, rtol=0)


def test_slerp_matches_shoemake_formula_for_unit_vectors():
    a = torch.tensor([1.0, 0.0, 0.0])
    b = torch.tensor([0.0, 1.0, 0.0])
    t = 0.3
    omega = math.pi / 2
    want = (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)
    torch.testing.assert_close(slerp(a, b, t), want)


def test_slerp_tends_to_lerp_for_nearly_parallel_vectors():
    a = torch.tensor([1.0, 2.0, -1.0])
    b = a * 1.5 + 1e-5 * torch.tensor([0.3, -0.2, 0.1])
    t = torch.linspace(0, 1, 9)
    torch.testing.assert_close(slerp(a, b, t), lerp(a, b, t), atol=1e-5, rtol=0)


def test_slerp_is_finite_for_identical_antiparallel_and_zero_inputs():
    a = torch.tensor([0.6, -0.8, 0.0])
    t = torch.linspace(0, 1, 5)
    torch.testing.assert_close(slerp(a, a, t), a.expand(5, 3))
    half = slerp(a, -a, 0.5)  # antiparallel: any great circle; it must be one, of unit norm
    assert torch.isfinite(half).all()
    assert half.norm() == pytest.approx(1.0, abs=1e-6) and (half @ a).abs() < 1e-6
    torch.testing.assert_close(slerp(torch.zeros(3), a, t), lerp(torch.zeros(3), a, t))
    assert torch.isfinite(slerp(torch.zeros(3), torch.zeros(3), t)).all()


def test_interpolate_latents_shapes_and_methods():
    za, zb = torch.randn(4), torch.randn(4)
    for method in ("linear", "slerp"):
        z = interpolate_latents(za, zb, steps=6, method=method)
        assert z.shape == (6, 4)
        torch.testing.assert_close(z[0], za)
        torch.testing.assert_close(z[-1], zb)
    with pytest.raises(ValueError, match="method"):
        interpolate_latents(za, zb, method="cubic")


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_plot_interpolation_decodes_the_path_between_posterior_means(method):
    model = tiny_vae(latent_dim=3)
    x = images(2)
    fig = plots.plot_interpolation(model, x[0], x[1:2], steps=5, method=method)
    grid = shown(fig)
    assert grid.shape == (SIDE, 5 * SIDE + 4)
    mu, _ = model.encode(x)
    path = interpolate_latents(mu[0].detach(), mu[1].detach(), 5, method)
    want = model.mean(model.decode(path)).detach()
    for i in range(5):
        np.testing.assert_allclose(cell(grid, 0, i), want[i, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(cell(grid, 0, 0), model.reconstruct(x[:1])[0, 0].numpy(), atol=1e-6)
    assert fig.axes[0].get_xlabel() == "t"
    assert ("Spherical" if method == "slerp" else "Linear") in fig.axes[0].get_title()


# ----------------------------------------------------------------------------- curves

def make_history(valid=True):
    h = History()
    for epoch in range(1, 5):
        r = {"epoch": epoch, "beta": 1.0, "train_elbo": -100.0 + epoch, "train_reconstruction": -90.0 + 2 * epoch,
             "train_kl": 10.0 + epoch, "seconds": 0.1}
        if valid and epoch % 2 == 0:  # validation every other epoch
            r.update(valid_elbo=-101.0 + epoch, valid_reconstruction=-92.0 + epoch, valid_kl=9.0 + epoch)
        h.records.append(r)
    return h


def test_history_plot_has_three_panels_of_train_and_valid_curves():
    h = make_history()
    fig = plots.plot_history(h)
    assert len(fig.axes) == 3
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["ELBO", "Reconstruction", "KL"]
    for ax, key in zip(fig.axes, ["elbo", "reconstruction", "kl"]):
        train, valid = ax.lines
        np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4])
        np.testing.assert_array_equal(train.get_ydata(), h[f"train_{key}"])
        np.testing.assert_array_equal(valid.get_xdata(), [2, 4])  # plotted at the epochs it was measured
        np.testing.assert_array_equal(valid.get_ydata(), h[f"valid_{key}"])
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel()
    assert fig._suptitle.get_text() == "Training curves"


def test_history_plot_without_valid_and_via_history_plot():
    fig = make_history(valid=False).plot()
    assert [len(ax.lines) for ax in fig.axes] == [1, 1, 1]
    fig = plots.plot_history({"train_elbo": [-3.0, -2.0]})  # a plain dict; missing panels say so
    assert [len(ax.lines) for ax in fig.axes] == [1, 0, 0]
    assert fig.axes[1].texts[0].get_text() == "not recorded"
    with pytest.raises(ValueError, match="History"):
        plots.plot_history(History())
    with pytest.raises(ValueError, match="three"):
        plots.plot_history(make_history(), ax=plt.subplots()[1])


def test_rate_distortion_points_labels_and_elbo_line():
    rates, dist, betas = [2.0, 5.0, 10.0], [120.0, 90.0, 81.0], [4, 1, 0.5]
    fig = plots.plot_rate_distortion(rates, dist, labels=betas)
    ax = fig.axes[0]
    points = ax.lines[0]
    np.testing.assert_array_equal(points.get_xdata(), rates)
    np.testing.assert_array_equal(points.get_ydata(), dist)
    assert [t.get_text() for t in ax.texts] == ["β=4", "β=1", "β=0.5"]
    line = ax.lines[1]  # R + D = const through the best point (10, 81)
    assert "91.0" in line.get_label()
    assert "rate" in ax.get_xlabel() and "distortion" in ax.get_ylabel()
    lo, hi = ax.get_ylim()
    assert lo > 70 and hi < 130  # the reference line does not stretch the view
    assert len(plots.plot_rate_distortion(rates, dist, elbo_line=False).axes[0].lines) == 1
    with pytest.raises(ValueError, match="as many"):
        plots.plot_rate_distortion([1.0], [1.0, 2.0])
