"""Pictures of a VAE: image grids, reconstructions, prior samples, the latent space, curves.

Every ``plot_*`` function returns the matplotlib ``Figure`` it drew on (it never calls
``plt.show``), with a title and, where the axes mean something, axis labels. Functions
that draw on a single axes accept ``ax=`` to draw into an existing figure.

Images are tensors (or arrays) shaped ``(N, 1, H, W)``, ``(N, H, W)`` or ``(N, D)`` with
``D`` a square number, with values in ``[0, 1]``; one helper, :func:`image_grid`, turns
any such batch into a single picture. Models may live on any device: inputs are moved
to the model's device and results back to the CPU.

Notation: encoder ``q_φ(z|x) = N(μ_φ(x), diag σ_φ²(x))``, decoder ``p_θ(x|z)``, prior
``p(z) = N(0, I)``.
"""
from __future__ import annotations

import contextlib
import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..errors import (
    ArgumentError,
    ArgumentTypeError,
    check_finite_parameters,
    check_float,
    check_images,
    check_int,
    check_one_latent_vae,
    check_tensor,
)
from ..models.vae import Autoencoder, ConditionalVAE
from ..training.data import dataset_tensors

__all__ = [
    "decode_mean",
    "encode_mean",
    "image_grid",
    "interpolate_latents",
    "lerp",
    "plot_history",
    "plot_interpolation",
    "plot_latent_scatter",
    "plot_manifold",
    "plot_rate_distortion",
    "plot_reconstructions",
    "plot_samples",
    "show_images",
    "slerp",
    "to_image_array",
]

_RANGE_TOLERANCE = 0.5  # a Gaussian decoder's mean may leave [0, 1] a little; far outside means logits were passed


# ----------------------------------------------------------------------------- images

def to_image_array(images) -> np.ndarray:
    """Any image batch as a float NumPy array ``(N, H, W)`` with values in ``[0, 1]``.

    Accepts ``(N, 1, H, W)``, ``(N, H, W)`` or ``(N, D)`` with ``D = H²`` (tensors on any
    device, or arrays). Values slightly outside ``[0, 1]`` (a Gaussian decoder's mean) are
    clipped for display. Raises ``ValueError`` for other shapes, non-finite values, or values
    far outside ``[0, 1]`` (logits passed by mistake).
    """
    if isinstance(images, Tensor):
        arr = images.detach().to("cpu", torch.float32).numpy()
    else:
        arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 4:
        if arr.shape[1] != 1:
            raise ArgumentError(f"expected grey-scale images (N, 1, H, W), got shape {tuple(arr.shape)} "
                                f"with {arr.shape[1]} channels; pass one channel, e.g. images[:, :1]")
        arr = arr[:, 0]
    elif arr.ndim == 2:
        side = math.isqrt(arr.shape[1])
        if side * side != arr.shape[1]:
            raise ArgumentError(f"flat images (N, D) need D to be a square number, got D={arr.shape[1]}; "
                                "reshape them to (N, 1, H, W) first")
        arr = arr.reshape(arr.shape[0], side, side)
    elif arr.ndim != 3:
        raise ArgumentError(f"expected images shaped (N, 1, H, W), (N, H, W) or (N, D), got shape "
                            f"{tuple(arr.shape)}; add a batch dimension for a single image (x[None])")
    if arr.shape[0] == 0:
        raise ArgumentError("got an empty batch of images (N = 0)")
    if not np.isfinite(arr).all():
        raise ArgumentError("images contain NaN or infinite values; check the model's output")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -_RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
        raise ArgumentError(f"image values must lie in [0, 1], got [{lo:.3g}, {hi:.3g}]; pass decoder means "
                            "(model.mean(...)) rather than logits, or rescale the images to [0, 1]")
    return np.clip(arr, 0.0, 1.0)


def image_grid(images, nrow: int = 8, padding: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile a batch of images into one picture, ``nrow`` images per row, row-major.

    Args:
        images: ``(N, 1, H, W)``, ``(N, H, W)`` or ``(N, D)`` with ``D = H²``, values in ``[0, 1]``.
        nrow: images per row (the number of columns).
        padding: pixels of ``pad_value`` between neighbouring images (none around the border).
        pad_value: grey level of the padding (1 = white).

    Returns:
        ``(R·H + (R−1)·padding, C·W + (C−1)·padding)`` float array in ``[0, 1]`` with
        ``C = min(nrow, N)`` columns and ``R = ⌈N / nrow⌉`` rows; unused cells are ``pad_value``.
    """
    nrow = check_int("nrow", nrow)  # the type; the ranges below
    padding = check_int("padding", padding)
    pad_value = check_float("pad_value", pad_value, min=0.0, max=1.0)
    arr = to_image_array(images)
    if int(nrow) < 1:
        raise ArgumentError(f"nrow must be a positive number of images per row, got {nrow}")
    if padding < 0:
        raise ArgumentError(f"padding must be >= 0 pixels, got {padding}")
    n, h, w = arr.shape
    cols = min(int(nrow), n)
    rows = math.ceil(n / cols)
    grid = np.full((rows * h + (rows - 1) * padding, cols * w + (cols - 1) * padding),
                   float(pad_value), dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = r * (h + padding), c * (w + padding)
        grid[top:top + h, left:left + w] = arr[i]
    return grid


def _new_axes(ax, figsize: tuple[float, float]):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")  # room for labels and legends
        return fig, ax
    return ax.figure, ax


def _grid_figsize(grid_shape: tuple[int, int], cells: tuple[int, int], max_width: float = 9.0,
                  max_height: float = 8.0, min_width: float = 4.0):
    """Figure size for a picture of ``cells = (rows, cols)`` images: about 0.75 in per image,
    shrunk to fit ``max_width × max_height``, plus room for the title, ticks and labels."""
    _, cols = cells
    h, w = grid_shape
    scale = min(0.75 * cols / w, max_width / w, max_height / h)  # inches per pixel
    return (max(w * scale + 1.4, min_width), h * scale + 1.0)


def _draw_grid(ax, grid: np.ndarray, title: str) -> None:
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def show_images(images, nrow: int = 8, title: str | None = None, ax=None, padding: int = 1) -> Figure:
    """Show an image batch as one grid (see :func:`image_grid`); returns the figure.

    ``title`` defaults to ``"N images"``.
    """
    nrow = check_int("nrow", nrow, min=1)
    padding = check_int("padding", padding, min=0)
    arr = to_image_array(images)
    grid = image_grid(arr, nrow=nrow, padding=padding)
    n = arr.shape[0]
    cols = min(int(nrow), n)
    fig, ax = _new_axes(ax, _grid_figsize(grid.shape, (math.ceil(n / cols), cols)))
    _draw_grid(ax, grid, title if title is not None else f"{n} images")
    return fig


# ----------------------------------------------------------------------------- models

def _device(model) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _to_model(model, x: Tensor) -> Tensor:
    """``x`` on the model's device, in its floating dtype (a float64 model takes float64 inputs)."""
    p = next(iter(model.parameters()), None)
    if p is None:
        return x
    return x.to(p.device, p.dtype if x.is_floating_point() else x.dtype)


@contextlib.contextmanager
def _evaluating(model):
    """Eval mode and no gradients inside; the model's training flag is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _check_module(model, name: str = "model") -> None:
    """Refuse a model argument that is not a torch module, or has NaN/inf weights (cheap, once per call)."""
    if not isinstance(model, torch.nn.Module):
        raise ArgumentTypeError(f"{name} must be a torch.nn.Module such as vae_tutorial.VAE, "
                                f"got {type(model).__name__}")
    check_finite_parameters(model, name)  # else the pictures would be blank or the error a NaN pixel


def _check_decodable(model, what: str) -> None:
    """Refuse a model whose ``decode(z)`` does not map prior codes ``z ~ N(0, I)`` of
    ``latent_dim`` values to images (a Part III model), naming what ``what`` supports."""
    _check_module(model)
    check_one_latent_vae(model, what, conditional=True, autoencoder=True,
                         instead="plot_samples and plot_reconstructions, which draw every model")


def _is_conditional(model) -> bool:
    return isinstance(model, ConditionalVAE)


def _labels_for(model, y, n: int, what: str):
    """``y`` as a ``(n,)`` long tensor on the model's device for a ConditionalVAE, else ``()``."""
    if not _is_conditional(model):
        return ()
    if y is None:
        raise ArgumentTypeError(f"{what}: a ConditionalVAE needs labels; pass y= (an int class or a (N,) tensor)")
    if isinstance(y, int) or (isinstance(y, Tensor) and y.dim() == 0):
        y = torch.full((n,), int(y), dtype=torch.long)
    y = torch.as_tensor(y).long()
    if y.shape != (n,):
        raise ArgumentError(f"{what}: expected y of shape ({n},), got {tuple(y.shape)}")
    return (y.to(_device(model)),)


def decode_mean(model, z: Tensor, y=None) -> Tensor:
    """The mean of ``p_θ(x|z)`` for codes ``z`` ``(B, Z)``, on the CPU; shaped like the data.

    ``y`` (an int or a ``(B,)`` tensor) is the class for a :class:`ConditionalVAE`.
    Part III models (hierarchical, autoregressive, diffusion) have no such ``decode(z)``
    and are refused; draw from them with :func:`plot_samples`.
    """
    _check_decodable(model, "decode_mean")
    z = check_tensor("z", z)
    if z.dim() == 1:
        z = z[None]
    latent = getattr(model, "latent_dim", None)
    if z.dim() != 2 or (isinstance(latent, int) and z.shape[1] != latent):
        raise ArgumentError(f"z must be codes of shape (B, Z) or (Z,) with Z = {latent} (the model's "
                            f"latent_dim), got shape {tuple(z.shape)}")
    with _evaluating(model):
        z = _to_model(model, z.float())
        cond = _labels_for(model, y, z.shape[0], "decode_mean")
        return model.mean(model.decode(z, *cond)).cpu()


def encode_mean(model, x: Tensor, y=None, batch_size: int = 1024) -> Tensor:
    """Posterior means ``μ_φ(x) = E_{q_φ(z|x)}[z]`` ``(N, Z)`` on the CPU, computed in batches.

    For an :class:`Autoencoder` these are its codes ``f(x)``.
    """
    _check_module(model)
    batch_size = check_int("batch_size", batch_size, min=1)
    x = check_tensor("x", x)
    if x.dim() < 2 or x.shape[0] == 0:
        raise ArgumentError(f"x must be a non-empty batch of examples (N, ...), got shape {tuple(x.shape)}")
    x = check_images(model, x, "encode_mean: x")
    cond_all = _labels_for(model, y, x.shape[0], "encode_mean")
    out = []
    with _evaluating(model):
        for i in range(0, x.shape[0], batch_size):
            cond = tuple(c[i:i + batch_size] for c in cond_all)
            mu, _ = model.encode(_to_model(model, x[i:i + batch_size]), *cond)
            out.append(mu.float().cpu())
    return torch.cat(out)


def plot_reconstructions(model, x, n: int = 8, y=None,
                         title: str = "Inputs (top) and reconstructions (bottom)", ax=None) -> Figure:
    """First ``n`` inputs above their reconstructions, the mean of ``p_θ(x|z = μ_φ(x))``.

    Args:
        model: a :class:`VAE` (or :class:`Autoencoder`, :class:`ConditionalVAE`).
        x: images ``(N, ...)`` as the model takes them, or a data set with ``.images``
            (and ``.labels``, used as ``y`` for a conditional model).
        n: how many to show (at most ``N``).
        y: labels ``(N,)`` for a :class:`ConditionalVAE`.
    """
    _check_module(model)
    n = check_int("n", n)  # the type; the range below
    x, labels = dataset_tensors(x)
    if y is None:
        y = labels if _is_conditional(model) else None
    n = min(int(n), x.shape[0])
    if n < 1:
        raise ArgumentError(f"plot_reconstructions needs at least one image: n must be ≥ 1 and x non-empty, "
                            f"got n={n} and {x.shape[0]} images")
    xb = check_images(model, x[:n], "plot_reconstructions: x")
    if y is not None and not isinstance(y, int):
        y = torch.as_tensor(y)[:n]
    cond = _labels_for(model, y, n, "plot_reconstructions")
    with _evaluating(model):
        rec = model.reconstruct(_to_model(model, xb), *cond).cpu()
    pics = np.concatenate([to_image_array(xb), to_image_array(rec)])
    padding = 1
    grid = image_grid(pics, nrow=n, padding=padding)
    fig, ax = _new_axes(ax, _grid_figsize(grid.shape, (2, n)))
    _draw_grid(ax, grid, title)
    h = pics.shape[1]
    ax.set_yticks([h / 2 - 0.5, h + padding + h / 2 - 0.5], ["input", "reconstruction"])
    return fig


def plot_samples(model, n: int = 64, generator: torch.Generator | None = None,
                 title: str = "Samples from the prior", nrow: int | None = None, y=None, ax=None) -> Figure:
    """Decode ``z ~ p(z) = N(0, I)``: shows the means of ``p_θ(x|z)`` (``model.sample``).

    ``y`` picks the classes of a :class:`ConditionalVAE` (int, ``(n,)`` tensor, or ``None``
    for 0, 1, 2, … cycling). ``nrow`` defaults to ``⌈√n⌉``.
    """
    _check_module(model)
    n = check_int("n", n)
    if n < 1:
        raise ArgumentError(f"n must be a positive number of samples, got {n}")
    if nrow is not None:
        nrow = check_int("nrow", nrow, min=1)
    with _evaluating(model):
        if _is_conditional(model):
            imgs = model.sample(n, generator, y=y)
        else:
            imgs = model.sample(n, generator)
    nrow = min(nrow or math.ceil(math.sqrt(n)), n)
    grid = image_grid(imgs.cpu(), nrow=nrow)
    fig, ax = _new_axes(ax, _grid_figsize(grid.shape, (math.ceil(n / nrow), nrow)))
    _draw_grid(ax, grid, title)
    return fig


def _two_dims(dims) -> tuple[int, int]:
    """``dims`` as two integer latent coordinates (``(0, 2.7)`` is refused, not truncated)."""
    if not isinstance(dims, (tuple, list)) or len(dims) != 2:
        raise ArgumentError(f"dims must be two latent coordinates, e.g. (0, 1), got {dims!r}")
    return check_int("dims[0]", dims[0]), check_int("dims[1]", dims[1])


def _subset(n: int, max_points: int) -> Tensor:
    """A fixed random subset of ``range(n)`` (fixed seed: the same picture every run)."""
    if n <= max_points:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:max_points].sort().values


def plot_latent_scatter(model, data_or_x, labels=None, classes: Sequence[str] | None = None,
                        max_points: int = 5000, dims: tuple[int, int] = (0, 1), projection: str = "dims",
                        title: str | None = None, ax=None, point_size: float = 4.0) -> Figure:
    """Posterior means ``μ_φ(x)`` in the plane, one point per image, coloured by label.

    Args:
        data_or_x: a data set with ``.images``/``.labels``/``.classes``, or images ``(N, ...)``.
        labels: ``(N,)`` class indices (taken from the data set when omitted).
        classes: names of the classes for the legend (``data.classes`` when present).
        max_points: at most this many points (a fixed random subset).
        dims: for ``Z > 2`` and ``projection="dims"``, the two latent coordinates shown;
            the title says so. We show coordinates rather than a projection by default
            because the axes then keep their meaning under the prior ``N(0, I)``.
        projection: ``"dims"`` or ``"pca"`` (the first two principal components of the means).

    A :class:`ConditionalVAE` is encoded with the labels as ``y``.
    """
    _check_module(model)
    max_points = check_int("max_points", max_points, min=1)
    x, data_labels = dataset_tensors(data_or_x)
    if labels is None:
        labels = data_labels
    if classes is None:
        classes = getattr(data_or_x, "classes", None)
    if labels is not None:
        labels = torch.as_tensor(labels).reshape(-1)
        if labels.shape[0] != x.shape[0]:
            raise ArgumentError(f"got {x.shape[0]} images but {labels.shape[0]} labels")
    idx = _subset(x.shape[0], int(max_points))
    x = x[idx]
    labels = None if labels is None else labels[idx]
    mu = encode_mean(model, x, y=labels if _is_conditional(model) else None)
    z_dim = mu.shape[1]
    what = "Codes f(x)" if isinstance(model, Autoencoder) else "Posterior means μ_φ(x)"
    if projection == "pca":
        if z_dim < 2:
            raise ArgumentError("PCA needs a latent space of at least 2 dimensions")
        centred = mu.double() - mu.double().mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        xy = (centred @ v[:2].T).float().numpy()
        axis_names = ("PC 1 of μ_φ(x)", "PC 2 of μ_φ(x)")
        suffix = f" (first two principal components of Z={z_dim})"
    elif projection == "dims":
        d0, d1 = _two_dims(dims)
        if z_dim == 1:
            raise ArgumentError("a 1-D latent space has no plane to scatter; use a histogram of the means")
        if not (0 <= d0 < z_dim and 0 <= d1 < z_dim) or d0 == d1:
            raise ArgumentError(f"dims must be two different indices in [0, {z_dim}), got {dims}")
        xy = mu[:, [d0, d1]].numpy()
        axis_names = (f"z{d0 + 1}", f"z{d1 + 1}")
        suffix = "" if z_dim == 2 else f" (dimensions z{d0 + 1}, z{d1 + 1} of Z={z_dim})"
    else:
        raise ArgumentError(f"projection must be 'dims' or 'pca', got {projection!r}")

    fig, ax = _new_axes(ax, (6.5, 5.0))
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=point_size, alpha=0.6, linewidths=0)
    else:
        lab = labels.numpy()
        n_classes = int(lab.max()) + 1 if classes is None else len(classes)
        cmap = "tab10" if n_classes <= 10 else ("tab20" if n_classes <= 20 else "viridis")
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=lab, s=point_size, alpha=0.7, linewidths=0, cmap=cmap,
                        vmin=-0.5, vmax=n_classes - 0.5)
        if n_classes <= 20:
            present = sorted(int(v) for v in np.unique(lab))
            handles = [plt.Line2D([], [], marker="o", linestyle="", color=sc.cmap(sc.norm(c))) for c in present]
            names = [classes[c] if classes is not None else str(c) for c in present]
            ax.legend(handles, names, title="class", loc="center left", bbox_to_anchor=(1.01, 0.5),
                      fontsize="small", frameon=False)
        else:
            fig.colorbar(sc, ax=ax, label="class")
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title(title if title is not None else what + suffix)
    return fig


def plot_manifold(model, n: int = 15, span: float = 0.9, dims: tuple[int, int] = (0, 1), z_rest=None,
                  y=None, title: str | None = None, ax=None, ticks: int = 5) -> Figure:
    """Decoded means of ``p_θ(x|z)`` over an ``n × n`` grid of a 2-D latent plane.

    As in Kingma & Welling (2014, fig. 4) the grid is evenly spaced in *probability*, not in
    ``z``: coordinate ``Φ⁻¹(p)`` for ``p`` evenly spaced over the central ``span`` of the prior
    mass (``Φ⁻¹`` = ``torch.distributions.Normal(0, 1).icdf``), so each cell covers equal prior
    mass. ``z1`` grows to the right, ``z2`` upwards.

    Args:
        n: grid points per axis; the picture is ``(n·H, n·W)`` pixels (no padding).
        span: central prior mass covered on each axis, in ``(0, 1)`` (0.9: from the 5 % to the
            95 % quantile).
        dims: the two latent coordinates varied when ``Z > 2``.
        z_rest: ``(Z,)`` values of the other coordinates (default 0, the prior mean).
        y: the class (int) for a :class:`ConditionalVAE`.
        ticks: how many tick labels (z values) per axis.
    """
    _check_decodable(model, "plot_manifold")
    n = check_int("n", n)  # the types; the ranges below
    span = check_float("span", span)
    ticks = check_int("ticks", ticks, min=1)
    if not 0 < span < 1:
        raise ArgumentError(f"span is the prior mass covered per axis and must lie in (0, 1), got {span}")
    if int(n) < 2:
        raise ArgumentError(f"n must be at least 2 grid points per axis, got {n}")
    z_dim = int(model.latent_dim)
    d0, d1 = _two_dims(dims)
    if z_dim < 2 or not (0 <= d0 < z_dim and 0 <= d1 < z_dim) or d0 == d1:
        raise ArgumentError(f"dims must be two different indices in [0, {z_dim}) of a latent space with Z >= 2, "
                            f"got dims={dims}")
    probs = torch.linspace((1 - span) / 2, (1 + span) / 2, n, dtype=torch.float64)
    values = torch.distributions.Normal(0.0, 1.0).icdf(probs).float()
    base = torch.zeros(z_dim) if z_rest is None else check_tensor("z_rest", z_rest).float().reshape(-1)
    if base.shape != (z_dim,):
        raise ArgumentError(f"z_rest must have shape ({z_dim},), got {tuple(base.shape)}")
    z = base.repeat(n * n, 1)
    rows, cols = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    z[:, d0] = values[cols.reshape(-1)]
    z[:, d1] = values.flip(0)[rows.reshape(-1)]  # top row = largest z2
    imgs = decode_mean(model, z, y=y)
    grid = image_grid(imgs, nrow=n, padding=0)
    h = grid.shape[0] // n
    w = grid.shape[1] // n

    fig, ax = _new_axes(ax, (6.0, 6.3))
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    pick = np.unique(np.linspace(0, n - 1, min(ticks, n)).round().astype(int))
    ax.set_xticks(pick * w + (w - 1) / 2, [f"{values[i]:.2f}" for i in pick])
    ax.set_yticks(pick * h + (h - 1) / 2, [f"{values.flip(0)[i]:.2f}" for i in pick])
    ax.set_xlabel(f"z{d0 + 1}")
    ax.set_ylabel(f"z{d1 + 1}")
    if title is None:
        title = f"Decoded grid over (z{d0 + 1}, z{d1 + 1}) at prior quantiles"
        if z_dim > 2:
            title += f"\nother {z_dim - 2} latent dims fixed ({'0' if z_rest is None else 'z_rest'})"
    ax.set_title(title)
    return fig


# ----------------------------------------------------------------------------- interpolation

def _interp_inputs(a, b, t):
    a = torch.as_tensor(a)
    b = torch.as_tensor(b)
    if a.shape != b.shape:
        raise ArgumentError(f"endpoints must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() not in (1, 2):
        raise ArgumentError(f"endpoints must be codes (Z,) or batches (B, Z), got shape {tuple(a.shape)}")
    if not a.is_floating_point():
        a, b = a.float(), b.float()
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    if t.dim() > 1:
        raise ArgumentError(f"t must be a scalar or a (T,) vector, got shape {tuple(t.shape)}")
    # (T,) -> (T, 1) or (T, 1, 1) so that the output is (T, *a.shape)
    tt = t.reshape(t.shape + (1,) * a.dim())
    return a, b, t, tt


def lerp(a, b, t) -> Tensor:
    """Linear interpolation ``(1 − t)·a + t·b``.

    ``a``, ``b``: ``(Z,)`` or ``(B, Z)``; ``t``: a scalar (output shaped like ``a``) or
    ``(T,)`` (output ``(T, *a.shape)``).
    """
    a, b, _, tt = _interp_inputs(a, b, t)
    return (1 - tt) * a + tt * b


def _perpendicular(u: Tensor) -> Tensor:
    """A unit vector orthogonal to each unit row of ``u`` ``(..., Z)``, ``Z >= 2``."""
    k = u.abs().argmin(dim=-1, keepdim=True)  # the axis least aligned with u
    e = torch.zeros_like(u).scatter_(-1, k, 1.0)
    v = e - (e * u).sum(-1, keepdim=True) * u
    return v / v.norm(dim=-1, keepdim=True)


def slerp(a, b, t, eps: float = 1e-7) -> Tensor:
    """Spherical interpolation: along the great circle in direction, linearly in norm.

    With ``â = a/‖a‖``, ``b̂ = b/‖b‖`` and the angle ``Ω`` between them,
    ``slerp(a, b, t) = ((1 − t)‖a‖ + t‖b‖) · (cos(tΩ)·â + sin(tΩ)·v)``, where ``v`` is the
    unit vector orthogonal to ``â`` in the plane of ``â`` and ``b̂``. For unit vectors this is
    Shoemake's ``sin((1 − t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b`` and stays on the unit sphere
    (White 2016 recommends it for Gaussian latents, whose mass lies near a sphere).

    Robust where the textbook formula divides by ``sin Ω ≈ 0``: for (nearly) parallel
    endpoints it tends to :func:`lerp`; for antiparallel ones it turns through a fixed
    perpendicular direction; a zero endpoint takes the other's direction. ``Ω`` comes from
    ``atan2``, accurate for small angles. The endpoints ``t = 0, 1`` are returned exactly.
    For ``Z = 1`` there is no circle and this is :func:`lerp`.

    Shapes as for :func:`lerp`.
    """
    a, b, t, tt = _interp_inputs(a, b, t)
    if a.shape[-1] == 1:
        return lerp(a, b, t)
    dtype = a.dtype
    a64, b64, tt64 = a.double(), b.double(), tt.double()
    ra = a64.norm(dim=-1, keepdim=True)
    rb = b64.norm(dim=-1, keepdim=True)
    first_axis = torch.zeros_like(a64)
    first_axis[..., 0] = 1.0
    ub = torch.where(rb > eps, b64 / rb.clamp_min(eps), first_axis)
    ua = torch.where(ra > eps, a64 / ra.clamp_min(eps), ub)
    ub = torch.where(rb > eps, ub, ua)
    cos = (ua * ub).sum(-1, keepdim=True)
    v = ub - cos * ua
    sin = v.norm(dim=-1, keepdim=True)
    omega = torch.atan2(sin, cos)  # in [0, π]
    v = torch.where(sin > eps, v / sin.clamp_min(eps), _perpendicular(ua))
    theta = tt64 * omega
    out = ((1 - tt64) * ra + tt64 * rb) * (torch.cos(theta) * ua + torch.sin(theta) * v)
    out = torch.where(tt64 == 0, a64, torch.where(tt64 == 1, b64, out))
    return out.to(dtype)


_METHODS = {"linear": lerp, "slerp": slerp}


def interpolate_latents(z_a, z_b, steps: int = 10, method: str = "linear") -> Tensor:
    """``steps`` codes from ``z_a`` to ``z_b`` (both ``(Z,)``), endpoints included: ``(steps, Z)``."""
    if method not in _METHODS:
        raise ArgumentError(f"method must be 'linear' or 'slerp', got {method!r}")
    steps = check_int("steps", steps)
    if steps < 2:
        raise ArgumentError(f"steps must be at least 2 (the two endpoints), got {steps}")
    z_a = torch.as_tensor(z_a).reshape(-1)
    z_b = torch.as_tensor(z_b).reshape(-1)
    if z_a.shape != z_b.shape:
        raise ArgumentError(f"z_a and z_b must both be codes of shape (Z,), got {z_a.numel()} and "
                            f"{z_b.numel()} values")
    return _METHODS[method](z_a, z_b, torch.linspace(0.0, 1.0, int(steps)))


def _one_example(x) -> Tensor:
    """A single example without batch dimension (drops a leading batch of one)."""
    x = torch.as_tensor(x)
    if x.dim() in (2, 4) and x.shape[0] == 1:
        x = x[0]
    return x


def plot_interpolation(model, x_a, x_b, steps: int = 10, method: str = "linear", y=None,
                       title: str | None = None, ax=None) -> Figure:
    """Decode ``interpolate(μ_φ(x_a), μ_φ(x_b), t)`` for ``t`` evenly spaced in ``[0, 1]``.

    Args:
        x_a, x_b: single examples as stored in the data set (e.g. ``data.images[i]``,
            shape ``(1, 28, 28)``), or batches of one.
        method: ``"linear"`` (:func:`lerp`) or ``"slerp"`` (:func:`slerp`).
        y: the class (int) for a :class:`ConditionalVAE`, used to encode and decode.

    The end images are reconstructions of ``x_a`` and ``x_b``, not the inputs themselves.
    """
    _check_decodable(model, "plot_interpolation")
    steps = check_int("steps", steps)
    if steps < 2:
        raise ArgumentError(f"steps must be at least 2 (the two endpoints), got {steps}")
    if method not in _METHODS:
        raise ArgumentError(f"method must be 'linear' or 'slerp', got {method!r}")
    xa, xb = _one_example(x_a), _one_example(x_b)
    if xa.shape != xb.shape:
        raise ArgumentError(f"x_a and x_b must be single examples of the same shape, got {tuple(xa.shape)} "
                            f"and {tuple(xb.shape)}")
    x = torch.stack([xa, xb])
    mu = encode_mean(model, x, y=None if y is None else torch.as_tensor([int(y)] * 2))
    z = interpolate_latents(mu[0], mu[1], steps, method)
    imgs = to_image_array(decode_mean(model, z, y=y))
    grid = image_grid(imgs, nrow=int(steps), padding=1)
    w = imgs.shape[2]
    fig, ax = _new_axes(ax, _grid_figsize(grid.shape, (1, int(steps))))
    _draw_grid(ax, grid, title if title is not None else
               f"{'Linear' if method == 'linear' else 'Spherical'} interpolation between posterior means")
    pick = np.unique(np.linspace(0, steps - 1, min(steps, 5)).round().astype(int))
    ts = np.linspace(0.0, 1.0, int(steps))
    ax.set_xticks(pick * (w + 1) + (w - 1) / 2, [f"{ts[i]:.2g}" for i in pick])
    ax.set_xlabel("t")
    return fig


# ----------------------------------------------------------------------------- curves

def _series(history, key: str) -> tuple[list[float], list[float]]:
    """``(epochs, values)`` of ``key``; epochs from the records where present, else 1, 2, …"""
    records = getattr(history, "records", None)
    if records is not None:
        rows = [r for r in records if key in r]
        return [r.get("epoch", i + 1) for i, r in enumerate(rows)], [float(r[key]) for r in rows]
    values = list(history.get(key, [])) if hasattr(history, "get") else []
    epochs = list(history.get("epoch", [])) if hasattr(history, "get") else []
    if len(epochs) != len(values):
        epochs = list(range(1, len(values) + 1))
    return epochs, [float(v) for v in values]


_PANELS = (
    ("elbo", "ELBO", "ELBO (nats per example)"),
    ("reconstruction", "Reconstruction", "E_q[log p_θ(x|z)] (nats)"),
    ("kl", "KL", "KL(q_φ(z|x) ‖ p(z)) (nats)"),
)


def plot_history(history, ax=None, title: str = "Training curves") -> Figure:
    """Per-epoch ELBO, reconstruction term and KL, train and (if recorded) valid.

    Args:
        history: a :class:`~vae_tutorial.training.train.History` (or a dict of lists) with keys
            ``train_elbo``, ``train_reconstruction``, ``train_kl`` and optionally ``valid_*``;
            missing keys are skipped.
        ax: ``None`` (a new figure with three panels) or a sequence of three axes.
    """
    if ax is None:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained")
    else:
        axes = list(np.ravel(ax)) if not hasattr(ax, "plot") else [ax]
        if len(axes) != 3:
            raise ArgumentError("plot_history draws three panels (ELBO, reconstruction, KL); pass ax=None "
                                "or three axes, e.g. plt.subplots(1, 3)[1]")
        fig = axes[0].figure
    drawn = 0
    for axis, (key, name, ylabel) in zip(axes, _PANELS):
        for split, style in (("train", "-o"), ("valid", "--s")):
            epochs, values = _series(history, f"{split}_{key}")
            if values:
                axis.plot(epochs, values, style, markersize=3, label=split)
                drawn += 1
        if axis.lines:
            axis.legend(fontsize="small")
        else:
            axis.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=axis.transAxes)
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.set_ylabel(ylabel)
    if drawn == 0:
        raise ArgumentError("the history holds none of train_/valid_ elbo, reconstruction, kl; "
                            "pass the History returned by fit()")
    fig.suptitle(title)
    return fig


def plot_rate_distortion(rates, distortions, labels=None, ax=None, elbo_line: bool = True,
                         title: str = "Rate–distortion", connect: bool = True) -> Figure:
    """Models as points in the rate–distortion plane (Alemi et al. 2018).

    Rate ``R = E_x KL(q_φ(z|x) ‖ p(z))`` on the x-axis, distortion
    ``D = −E_x E_q[log p_θ(x|z)]`` on the y-axis, both in nats; ``−ELBO = R + D``, so models
    with the same ELBO lie on a line of slope −1. With ``elbo_line`` the line through the best
    point (smallest ``R + D``) is drawn for reference.

    Args:
        rates, distortions: sequences of equal length.
        labels: one annotation per point (strings, or numbers such as β values, shown as ``β=…``).
    """
    r = np.asarray([float(v) for v in rates])
    d = np.asarray([float(v) for v in distortions])
    if r.shape != d.shape or r.size == 0:
        raise ArgumentError(f"need as many rates as distortions (at least one), got {r.size} and {d.size}")
    if not (np.isfinite(r).all() and np.isfinite(d).all()):
        raise ArgumentError("rates and distortions must be finite numbers")
    if labels is not None and len(labels) != r.size:
        raise ArgumentError(f"got {r.size} points but {len(labels)} labels")
    fig, ax = _new_axes(ax, (5.5, 4.5))
    ax.plot(r, d, "-o" if connect else "o", color="C0", label="models")
    if labels is not None:
        for ri, di, lab in zip(r, d, labels):
            text = lab if isinstance(lab, str) else f"β={float(lab):g}"
            ax.annotate(text, (ri, di), textcoords="offset points", xytext=(5, 5), fontsize="small")
    if elbo_line:
        i = int(np.argmin(r + d))
        # axline is infinite and left out of autoscaling, so the view stays on the points
        ax.axline((r[i], d[i]), slope=-1.0, linestyle=":", color="gray",
                  label=f"R + D = {r[i] + d[i]:.1f} (best −ELBO)")
        ax.legend(fontsize="small")
    ax.set_xlabel("rate R = KL(q_φ(z|x) ‖ p(z)) (nats)")
    ax.set_ylabel("distortion D = −E_q[log p_θ(x|z)] (nats)")
    ax.set_title(title)
    return fig
