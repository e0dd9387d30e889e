"""Encoders, decoders and the models built from them.

A :class:`VAE` pairs an encoder ``q_φ(z|x) = N(μ_φ(x), diag σ_φ²(x))`` with a decoder
``p_θ(x|z)`` and the prior ``p(z) = N(0, I)``. Encoders return ``(mu, logvar)``, each
``(B, Z)``; decoders return one tensor of parameters per pixel (logits, or the
mean of a Gaussian), shaped like the data.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..maths.losses import (
    bernoulli_log_likelihood,
    continuous_bernoulli_log_likelihood,
    discretized_logistic_log_likelihood,
    discretized_logistic_mean,
    gaussian_log_likelihood,
    reparameterize,
)
from ..errors import ArgumentError, ArgumentTypeError, DataError, check_int, check_memory

__all__ = [
    "Autoencoder",
    "ConditionalVAE",
    "ConvDecoder",
    "ConvEncoder",
    "LIKELIHOODS",
    "MLPDecoder",
    "MLPEncoder",
    "VAE",
]

LIKELIHOODS = ("bernoulli", "gaussian", "continuous_bernoulli", "discretized_logistic")

Shape = int | Sequence[int]


def _as_shape(s: Shape, name: str = "shape") -> tuple[int, ...]:
    if isinstance(s, (str, bytes, dict)) or not (isinstance(s, numbers.Integral) or hasattr(s, "__iter__")):
        raise ArgumentTypeError(f"{name} must be a positive integer or a shape such as (1, 28, 28), "
                                f"got {s!r}")
    if isinstance(s, numbers.Integral):
        return (check_int(name, s, min=1),)
    s = list(s)
    if len(s) == 0:
        raise ArgumentError(f"{name} must not be empty")
    return tuple(check_int(f"{name}[{i}]", v, min=1) for i, v in enumerate(s))


def _sizes(name: str, hidden) -> list[int]:
    """Hidden widths: a sequence of positive integers (``[]`` for no hidden layer)."""
    if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__iter__") or isinstance(hidden, dict):
        raise ArgumentTypeError(f"{name} must be a list of layer widths such as [400], got {hidden!r}")
    return [check_int(f"{name}[{i}]", h, min=1) for i, h in enumerate(hidden)]


def _mlp_parameters(sizes: Sequence[int]) -> int:
    """Number of weights and biases of the MLP with layer widths ``sizes`` (input first)."""
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    check_memory(f"an MLP with sizes {list(sizes)}", "choose smaller layer widths (hidden)",
                 parameters=_mlp_parameters(sizes))
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """``x ↦ (μ, log σ²)``: a fully connected encoder for ``q_φ(z|x)``.

    Args:
        in_features: number of input features ``D`` (an int, or a shape such as
            ``(1, 28, 28)``); inputs ``(B, ...)`` are flattened to ``(B, D)``.
        hidden: widths of the hidden layers, e.g. ``[400]`` for pytorch/examples.
        latent_dim: ``Z``.

    Shapes: ``(B, ...) -> ((B, Z), (B, Z))``.
    """

    def __init__(self, in_features: Shape, hidden: Sequence[int], latent_dim: int):
        super().__init__()
        self.in_features = math.prod(_as_shape(in_features, "in_features"))
        self.latent_dim = check_int("latent_dim", latent_dim, min=1)
        self.net = _mlp([self.in_features, *_sizes("hidden", hidden), 2 * self.latent_dim])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.net(x.reshape(x.shape[0], -1))
        mu, logvar = h.chunk(2, dim=-1)
        return mu, logvar


class MLPDecoder(nn.Module):
    """``z ↦`` parameters of ``p_θ(x|z)``: a fully connected decoder.

    Args:
        latent_dim: ``Z``.
        hidden: widths of the hidden layers.
        out_features: ``D`` as an int (output ``(B, D)``) or an output shape such as
            ``(1, 28, 28)`` (output ``(B, 1, 28, 28)``).

    Shapes: ``(B, Z) -> (B, *out_shape)``; the values are unconstrained (logits).
    """

    def __init__(self, latent_dim: int, hidden: Sequence[int], out_features: Shape):
        super().__init__()
        self.latent_dim = check_int("latent_dim", latent_dim, min=1)
        self.out_shape = _as_shape(out_features, "out_features")
        self.net = _mlp([self.latent_dim, *_sizes("hidden", hidden), math.prod(self.out_shape)])

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).reshape(z.shape[0], *self.out_shape)


def _conv_args(channels, hidden, io_channels, io_name: str) -> tuple[int, int]:
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or len(channels) != 2:
        raise ArgumentTypeError(f"channels must be a pair of widths such as (32, 64), got {channels!r}")
    c1, c2 = (check_int(f"channels[{i}]", c, min=1) for i, c in enumerate(channels))
    h = check_int("hidden", hidden, min=1)
    check_int(io_name, io_channels, min=1)
    check_memory(f"a conv network with hidden={h}", "choose a smaller hidden or channels",
                 parameters=c2 * 49 * h + h * 4096)
    return c1, c2


class ConvEncoder(nn.Module):
    """Convolutional encoder for ``1×28×28`` images: ``(B, 1, 28, 28) -> (μ, log σ²)``.

    Two stride-2 4×4 convolutions (28 → 14 → 7), a hidden linear layer, then the
    ``(μ, log σ²)`` head of width ``2Z``.
    """

    def __init__(self, latent_dim: int, channels: Sequence[int] = (32, 64), hidden: int = 256,
                 in_channels: int = 1):
        super().__init__()
        c1, c2 = _conv_args(channels, hidden, in_channels, "in_channels")
        self.latent_dim = check_int("latent_dim", latent_dim, min=1)
        hidden = int(hidden)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, c1, 4, stride=2, padding=1), nn.ReLU(),  # 28 -> 14
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),  # 14 -> 7
            nn.Flatten(),
            nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * self.latent_dim),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() == 2:  # accept flattened images too
            x = x.reshape(x.shape[0], 1, 28, 28)
        mu, logvar = self.net(x).chunk(2, dim=-1)
        return mu, logvar


class ConvDecoder(nn.Module):
    """Transposed-convolution decoder: ``(B, Z) -> (B, 1, 28, 28)`` logits."""

    def __init__(self, latent_dim: int, channels: Sequence[int] = (64, 32), hidden: int = 256,
                 out_channels: int = 1):
        super().__init__()
        c1, c2 = _conv_args(channels, hidden, out_channels, "out_channels")
        self.latent_dim = check_int("latent_dim", latent_dim, min=1)
        self.out_shape = (out_channels, 28, 28)
        hidden = int(hidden)
        self.net = nn.Sequential(
            nn.Linear(self.latent_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, c1 * 7 * 7), nn.ReLU(),
            nn.Unflatten(1, (c1, 7, 7)),
            nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),  # 7 -> 14
            nn.ConvTranspose2d(c2, out_channels, 4, stride=2, padding=1),  # 14 -> 28
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class VAE(nn.Module):
    """Variational autoencoder: ``q_φ(z|x)``, ``p_θ(x|z)`` and ``p(z) = N(0, I)``.

    Args:
        encoder: module ``x -> (mu, logvar)``, each ``(B, Z)``.
        decoder: module ``z -> out`` with ``out`` shaped like the data.
        likelihood: ``"bernoulli"`` (out are logits), ``"continuous_bernoulli"``
            (out are logits of a normalised density on [0, 1]), ``"gaussian"``
            (mean ``out``, unconstrained, so it fits any real-valued data; variance below)
            or ``"discretized_logistic"`` (a probability mass function on the 256 grey
            levels ``k/255``, whose test NLL and bits/dim compare with other discrete
            models of 8-bit images): the decoder then outputs *twice* the data's
            channels (dim 1), the logistic locations then the log-scales of every pixel,
            e.g. ``MLPDecoder(Z, hidden, (2, 28, 28))`` for ``(1, 28, 28)`` images.
        gaussian_logvar: for ``"gaussian"`` only: ``"learned"`` (one learned
            log-variance shared by all pixels) or a float (a fixed log σ²).

    :meth:`decode` returns the decoder parameters: a logits tensor, or for the
    Gaussian a ``(mean, logvar)`` pair, for the discretised logistic a
    ``(location, log_scale)`` pair.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: str = "bernoulli",
                 gaussian_logvar: float | str = "learned"):
        super().__init__()
        for role, module in (("encoder", encoder), ("decoder", decoder)):
            if not isinstance(module, nn.Module):
                raise ArgumentTypeError(f"{role} must be a torch.nn.Module, got {type(module).__name__}")
        if likelihood not in LIKELIHOODS:
            raise ArgumentError(f"unknown likelihood {likelihood!r}; choose one of {', '.join(LIKELIHOODS)}")
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        if likelihood == "gaussian":
            if gaussian_logvar == "learned":
                self.obs_logvar = nn.Parameter(torch.zeros(()))
            elif isinstance(gaussian_logvar, numbers.Real) and not isinstance(gaussian_logvar, bool):
                if not math.isfinite(gaussian_logvar):
                    raise ArgumentError(f"gaussian_logvar must be finite, got {gaussian_logvar}")
                self.register_buffer("obs_logvar", torch.tensor(float(gaussian_logvar)))
            else:
                raise ArgumentError(f"gaussian_logvar must be 'learned' or a float, got {gaussian_logvar!r}")

    @property
    def latent_dim(self) -> int:
        return int(self.decoder.latent_dim)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, ...) -> (μ, log σ²)``, the parameters of ``q_φ(z|x)``, each ``(B, Z)``."""
        return self.encoder(x)

    def _params(self, out: Tensor):
        if self.likelihood == "gaussian":
            return out, self.obs_logvar.expand_as(out)
        if self.likelihood == "discretized_logistic":
            if out.dim() < 2 or out.shape[1] % 2:
                raise DataError("a discretized_logistic decoder must output twice the data's channels "
                                 f"(dim 1: locations, then log-scales); got shape {tuple(out.shape)}")
            return out.chunk(2, dim=1)  # (location, log_scale), each shaped like the data
        return out

    def decode(self, z: Tensor):
        """``z (B, Z) ->`` parameters of ``p_θ(x|z)``: logits, ``(mean, logvar)`` or ``(loc, log_scale)``."""
        return self._params(self.decoder(z))

    def log_likelihood(self, x: Tensor, params) -> Tensor:
        """``log p_θ(x|z)`` per example ``(B,)`` for decoder parameters ``params``."""
        if self.likelihood == "bernoulli":
            return bernoulli_log_likelihood(params, x)
        if self.likelihood == "continuous_bernoulli":
            return continuous_bernoulli_log_likelihood(params, x)
        if self.likelihood == "discretized_logistic":
            return discretized_logistic_log_likelihood(x, *params)
        mean, logvar = params
        return gaussian_log_likelihood(x, mean, logvar)

    def mean(self, params) -> Tensor:
        """The mean of ``p_θ(x|z)`` (an image in [0, 1]) for decoder parameters ``params``."""
        if self.likelihood == "bernoulli":
            return torch.sigmoid(params)
        if self.likelihood == "continuous_bernoulli":
            # E[x] = λ/(2λ−1) + 1/(2 artanh(1−2λ)) = 1/(1 − e^{−ℓ}) − 1/ℓ, written in the
            # logits ℓ: through λ = σ(ℓ) it loses all precision once σ saturates (|ℓ| ≳ 15).
            small = params.abs() < 0.1
            safe = torch.where(small, torch.ones_like(params), params)
            exact = -1.0 / torch.expm1(-safe) - 1.0 / safe
            return torch.where(small, 0.5 + params / 12 - params.pow(3) / 720, exact)  # Taylor at ℓ = 0
        if self.likelihood == "discretized_logistic":
            return discretized_logistic_mean(*params)
        return params[0]

    def forward(self, x: Tensor) -> tuple:
        """``x -> (params, mu, logvar)`` with ``z ~ q_φ(z|x)`` sampled by reparameterisation."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Generate: ``z ~ p(z) = N(0, I)``, then the mean of ``p_θ(x|z)``; ``(n, ...)``."""
        return self.mean(self.decode(self.prior_sample(n, generator)))

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``z ~ p(z) = N(0, I)``, shape ``(n, Z)``, on the model's device and dtype."""
        n = check_int("n", n, min=0)
        p = next(self.parameters())
        zeros = torch.zeros(n, self.latent_dim, device=p.device, dtype=p.dtype)
        return reparameterize(zeros, zeros, generator)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Reconstruct through the posterior mean: the mean of ``p_θ(x|z=μ_φ(x))``, shaped like ``x``."""
        mu, _ = self.encode(x)
        return self.mean(self.decode(mu)).reshape(x.shape)


class Autoencoder(VAE):
    """The deterministic baseline: ``z = f(x)``, no posterior, no KL.

    The encoder may return a tensor ``(B, Z)`` or a ``(code, anything)`` pair (so an
    :class:`MLPEncoder` can be reused; its second head is ignored). :func:`~vae_tutorial.maths.losses.elbo`
    on an autoencoder gives the reconstruction log-likelihood with ``kl = 0``.
    Decoding random codes is possible (:meth:`sample`) but not a generative model:
    nothing makes codes from ``N(0, I)`` look like training codes.
    """

    deterministic_encoder = True
    """No posterior ``q_φ(z|x)``: the functions that need one refuse it (``errors.check_model``)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: str = "bernoulli",
                 gaussian_logvar: float | str = 0.0):
        super().__init__(encoder, decoder, likelihood, gaussian_logvar)

    def encode(self, x: Tensor) -> tuple[Tensor, None]:
        out = self.encoder(x)
        code = out[0] if isinstance(out, tuple) else out
        return code, None

    def forward(self, x: Tensor) -> tuple:
        code, _ = self.encode(x)
        return self.decode(code), code, None


class ConditionalVAE(VAE):
    """Label-conditioned VAE (Sohn et al. 2015): ``q_φ(z|x, y)``, ``p_θ(x|z, y)``, ``p(z)``.

    The one-hot label is concatenated to the flattened input of the encoder and to
    the latent code given to the decoder, so the encoder must accept ``D + C``
    features and the decoder ``Z + C``.

    Args:
        encoder, decoder, likelihood, gaussian_logvar: as for :class:`VAE`.
        num_classes: ``C``.
        label_scale: the label enters both networks as ``label_scale · onehot(y)``.
            The ELBO rewards a decoder that reads the class from ``y`` rather than
            from ``z`` by at most ``ln C`` nats per example (``I(y; z) ≤ H(y)``), so
            which path it learns first decides the outcome. With ``1`` a one-hot unit
            moves a hidden pre-activation less than the ``Z`` unit-scale latent
            inputs do and the decoder reads the class from ``z``; a larger scale
            (the book uses 5) lets the label path win from the first epochs.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, num_classes: int,
                 likelihood: str = "bernoulli", gaussian_logvar: float | str = "learned",
                 label_scale: float = 1.0):
        super().__init__(encoder, decoder, likelihood, gaussian_logvar)
        self.num_classes = check_int("num_classes", num_classes, min=1)
        if not (isinstance(label_scale, (int, float)) and math.isfinite(label_scale) and label_scale > 0):
            raise ArgumentError(f"label_scale must be a positive number, got {label_scale!r}")
        self.label_scale = float(label_scale)

    @property
    def latent_dim(self) -> int:
        return int(self.decoder.latent_dim) - self.num_classes

    def _onehot(self, y: Tensor, like: Tensor) -> Tensor:
        if y is None:
            raise ArgumentTypeError("ConditionalVAE needs labels y, shape (B,)")
        onehot = F.one_hot(y.long(), self.num_classes).to(dtype=like.dtype, device=like.device)
        return onehot * self.label_scale

    def encode(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        xf = x.reshape(x.shape[0], -1)
        return self.encoder(torch.cat([xf, self._onehot(y, xf)], dim=-1))

    def decode(self, z: Tensor, y: Tensor):
        return self._params(self.decoder(torch.cat([z, self._onehot(y, z)], dim=-1)))

    def forward(self, x: Tensor, y: Tensor) -> tuple:
        mu, logvar = self.encode(x, y)
        return self.decode(reparameterize(mu, logvar), y), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: Tensor | int | None = None) -> Tensor:
        """Generate ``n`` images of class ``y`` (an int, a ``(n,)`` tensor, or ``None`` for 0, 1, 2, … cycling)."""
        n = check_int("n", n, min=0)
        p = next(self.parameters())
        if y is None:
            y = torch.arange(n, device=p.device) % self.num_classes
        elif isinstance(y, numbers.Integral) and not isinstance(y, bool):
            y = torch.full((n,), int(y), device=p.device, dtype=torch.long)
        if not isinstance(y, Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool or y.shape != (n,):
            raise ArgumentTypeError(f"y must be a class (an int) or a tensor of n={n} integer classes, got "
                                    f"{type(y).__name__}{'' if not isinstance(y, Tensor) else f' of shape {tuple(y.shape)} and dtype {y.dtype}'}")
        elif n and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ArgumentError(f"y must hold classes in [0, {self.num_classes}) for this model's "
                                f"num_classes={self.num_classes}, got {int(y.min())} to {int(y.max())}")
        return self.mean(self.decode(self.prior_sample(n, generator), y.to(p.device)))

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor) -> Tensor:
        mu, _ = self.encode(x, y)
        return self.mean(self.decode(mu, y)).reshape(x.shape)
