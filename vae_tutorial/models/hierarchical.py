"""Hierarchical VAEs: several stochastic layers ``z_1`` (bottom) … ``z_L`` (top).

Generative model (the same for both kinds of inference)::

    p(z_L) = N(0, I),   p_θ(z_l | z_{l+1}) = N(μ_θ(z_{l+1}), diag σ_θ²(z_{l+1})),
    p_θ(x | z_1) = Bernoulli(σ(logits_θ(z_1))),

so ``p_θ(x, z) = p_θ(x|z_1) p_θ(z_1|z_2) … p_θ(z_{L−1}|z_L) p(z_L)``. With ``skip=True``
the decoder reads every layer, ``p_θ(x|z_1, …, z_L)`` (as in Tomczak & Welling's HVAE and,
through its top-down path, NVAE), so an upper layer can reach ``x`` directly.

Two approximate posteriors ``q_φ(z|x)``:

* ``inference="bottom_up"`` (Rezende et al. 2014; Burda et al. 2016): a Markov chain
  upwards, ``q_φ(z|x) = q_φ(z_1|x) q_φ(z_2|z_1) … q_φ(z_L|z_{L−1})``. The upper layers
  see ``x`` only through the noisy sample of the layer below.
* ``inference="top_down"`` (Ladder VAE, Sønderby et al. 2016; NVAE, Vahdat & Kautz
  2020): a deterministic bottom-up pass ``d_1 = f(x), d_l = f_l(d_{l−1})``, then a
  top-down pass in the order of the generative model,
  ``q_φ(z|x) = q_φ(z_L|x) q_φ(z_{L−1}|z_L, x) … q_φ(z_1|z_2, x)``. Each
  ``q_φ(z_l|z_{l+1}, x)`` combines the data term from ``d_l`` with the prior
  ``p_θ(z_l|z_{l+1})``: by a precision-weighted merge of two Gaussians
  (``merge="precision"``, Sønderby et al.) or as a shift of the prior
  (``merge="residual"``, Vahdat & Kautz).

The ELBO splits into one KL term per layer::

    ELBO(x) = E_q[log p_θ(x|z_1)] − Σ_l E_q[log q_φ(z_l|·) − log p_θ(z_l|z_{l+1})].

For top-down inference both densities of layer ``l`` are Gaussians given the sampled
``z_{l+1}``, so the inner term is the closed-form ``KL(q_φ(z_l|z_{l+1},x) ‖ p_θ(z_l|z_{l+1}))``,
evaluated at the sampled parents. For bottom-up inference the two densities condition
on different layers; the entropy of ``q`` is used in closed form and the cross term
``−log p_θ(z_l|z_{l+1})`` at the sample (the top layer's KL against ``N(0, I)`` is
closed-form). Either way the sum over layers is an unbiased estimate of
``KL(q_φ(z|x) ‖ p_θ(z))``, the rate.

Bounded variances. Every log-variance a network outputs, of the priors ``p_θ(z_l|z_{l+1})``
and of the posteriors ``q_φ(z_l|·)`` (for ``merge="residual"``, the prior's plus the shift),
passes through the soft clamp ``b · tanh(v / b)`` (:func:`soft_clamp`) with ``b =
logvar_bound``, so ``σ² ∈ (e^{−b}, e^{b})``. The default ``b = 10`` is NVAE's bound
(Vahdat & Kautz 2020 clamp ``log σ`` softly to ``[−5, 5]``). Why: the KL terms contain
``exp(−log σ_p²)`` and ``expm1(log σ_q² − log σ_p²)``, and with a linear output layer
nothing stops a log-variance from drifting. Units of ``z_1`` whose posterior follows the
prior drive both log-variances down together, which the KL term does not penalise
(measured without the bound: below −17 within 200 epochs on 1,024 images, Adam at 3·10⁻³,
and still falling), and a large step extrapolates them further (measured at 10⁻²: after two
steps the top posterior's log-variance exceeded 25, so ``z_2`` reached ~10⁵ and the prior's
log-variance −9·10⁴); below ``−88`` ``exp`` overflows ``float32`` to ``inf`` and the loss
becomes NaN. Bounded,
``exp(−log σ²) ≤ e^{b} ≈ 2.2·10⁴``. A soft clamp rather than ``torch.clamp``: it keeps a
gradient everywhere, so a unit pushed against the bound is not frozen there; a softplus
with a floor would bound ``σ²`` below only. The prior ``p(z_L) = N(0, I)`` is fixed, and the
precision-weighted merge of two bounded Gaussians lies in ``(−b − log 2, b)`` by
construction.

Latents are vectors; the MLP and convolutional variants differ only in the network
that reads ``x`` (the *trunk*) and the decoder ``p_θ(x|z_1)``.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
from torch import Tensor, nn

from ..errors import ArgumentError, ArgumentTypeError, check_float, check_int, check_memory
from ..maths.losses import (
    LOG_2PI,
    ELBOTerms,
    _chunk_size,
    bernoulli_log_likelihood,
    gaussian_log_likelihood,
    reparameterize,
)
from .vae import _as_shape, _mlp_parameters

__all__ = ["HierarchicalVAE", "INFERENCES", "MERGES", "LOGVAR_BOUND", "precision_weighted_merge", "soft_clamp",
           "top_layer_rate_split"]

INFERENCES = ("top_down", "bottom_up")
MERGES = ("precision", "residual")
LOGVAR_BOUND = 10.0
"""Default ``b`` of :func:`soft_clamp` for every log-variance: ``σ² ∈ (e^{−10}, e^{10})``, NVAE's range."""
_ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "elu": nn.ELU}
_WIDTHS_FIX = "choose smaller layer widths (hidden, or upper_hidden for HierarchicalVAE itself)"


def _widths(name: str, value, n: int) -> list[int]:
    """``n`` positive widths from an int (repeated) or a sequence of length ``n``."""
    # numbers.Integral: a NumPy integer is a width too, as everywhere check_int reads one
    if isinstance(value, (str, bytes, dict)) or not (isinstance(value, numbers.Integral) or hasattr(value, "__iter__")):
        raise ArgumentTypeError(f"{name} must be a width or a sequence of {n} widths, got {value!r}")
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return [check_int(name, value, min=1)] * n
    value = list(value)
    if len(value) != n:
        raise ArgumentError(f"{name} must have {n} entries (one per stochastic layer), got {len(value)}: {value}")
    return [check_int(f"{name}[{i}]", v, min=1) for i, v in enumerate(value)]


def _latent_dims(latent_dims) -> tuple[int, ...]:
    if isinstance(latent_dims, (str, bytes, dict)) or not hasattr(latent_dims, "__iter__"):
        raise ArgumentTypeError(f"latent_dims must be a sequence of layer sizes such as (32, 16) "
                                f"(bottom z_1 first), got {latent_dims!r}")
    dims = tuple(check_int(f"latent_dims[{i}]", d, min=1) for i, d in enumerate(latent_dims))
    if not dims:
        raise ArgumentError("latent_dims must name at least one stochastic layer, e.g. (32, 16)")
    return dims


def _act(activation: str) -> type[nn.Module]:
    if activation not in _ACTIVATIONS:
        raise ArgumentError(f"unknown activation {activation!r}; choose one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[activation]


def _mlp(sizes: Sequence[int], act: type[nn.Module], final_act: bool = False) -> nn.Sequential:
    check_memory(f"an MLP with sizes {list(sizes)}", _WIDTHS_FIX, parameters=_mlp_parameters(sizes))
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if final_act or i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def _gauss_head(sizes: Sequence[int], act: type[nn.Module]) -> nn.Sequential:
    """An MLP whose last layer outputs ``(μ, log σ²)``; that layer starts small, so every
    Gaussian it parameterises starts near ``N(0, I)`` (or, for a residual posterior, at its
    prior) and the first steps do not pay a large KL."""
    net = _mlp(sizes, act)
    last = net[-1]
    with torch.no_grad():
        last.weight.mul_(0.1)
        last.bias.zero_()
    return net


def precision_weighted_merge(mu_a: Tensor, logvar_a: Tensor, mu_b: Tensor,
                             logvar_b: Tensor) -> tuple[Tensor, Tensor]:
    """The Gaussian proportional to ``N(z; μ_a, σ_a²) · N(z; μ_b, σ_b²)``, per dimension.

    Precisions add and the mean is the precision-weighted average (Sønderby et al. 2016):
    ``1/σ² = 1/σ_a² + 1/σ_b²``, ``μ = (μ_a/σ_a² + μ_b/σ_b²) σ² = w μ_a + (1 − w) μ_b`` with
    ``w = σ²/σ_a² = sigmoid(log σ_b² − log σ_a²)``. Written with ``logaddexp`` and
    ``sigmoid`` so that no variance is exponentiated on its own.

    Args:
        mu_a, logvar_a, mu_b, logvar_b: broadcastable ``(..., Z)`` tensors.

    Returns:
        ``(μ, log σ²)`` of the merged Gaussian.
    """
    w = torch.sigmoid(logvar_b - logvar_a)
    return w * mu_a + (1 - w) * mu_b, -torch.logaddexp(-logvar_a, -logvar_b)


def soft_clamp(v: Tensor, bound: float) -> Tensor:
    """``b · tanh(v / b)``: ``v`` squashed smoothly into ``(−b, b)``, ``≈ v`` for ``|v| ≪ b``.

    Used on every log-variance of :class:`HierarchicalVAE` (module docstring): the slope is
    ``1 − tanh²(v / b)``, 1 at 0 and never exactly 0, so the bound costs nothing near the
    start and freezes no unit at the edge (NVAE's ``soft_clamp5`` with ``b = 5`` on ``log σ``).
    """
    return torch.tanh(v / bound) * bound


def _split(params: Tensor, bound: float) -> tuple[Tensor, Tensor]:
    """A head's output ``(N, 2Z)`` as ``(μ, log σ²)``, the log-variance soft-clamped to ``(−b, b)``."""
    mu, logvar = params.chunk(2, dim=-1)
    return mu, soft_clamp(logvar, bound)


class _Flatten(nn.Module):
    """``(B, ...) -> (B, D)`` then an MLP: the trunk of the MLP variant."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(x.shape[0], -1))


class _Reshape(nn.Module):
    """An MLP decoder whose ``(B, D)`` output is reshaped to the data shape."""

    def __init__(self, net: nn.Module, shape: tuple[int, ...]):
        super().__init__()
        self.net = net
        self.shape = shape

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).reshape(z.shape[0], *self.shape)


class _ConvTrunk(nn.Module):
    """``(B, 1, 28, 28) -> (B, F)``: two stride-2 convolutions (28 → 14 → 7) and a dense layer.

    Kept small on purpose: the trunk runs once per image, also under IWAE evaluation."""

    def __init__(self, channels: tuple[int, int], features: int, act: type[nn.Module]):
        super().__init__()
        c1, c2 = channels
        check_memory(f"a convolutional trunk with channels={channels}, hidden={features}",
                     "choose smaller channels or hidden[0]",
                     parameters=17 * c1 + c1 * (9 * c1 + 1) + c2 * (16 * c1 + 1) + (49 * c2 + 1) * features)
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 4, stride=2, padding=1), act(),  # 28 -> 14
            nn.Conv2d(c1, c1, 3, padding=1), act(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), act(),  # 14 -> 7
            nn.Flatten(), nn.Linear(c2 * 49, features), act(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(x.shape[0], 1, 28, 28))


class _ConvDecoder(nn.Module):
    """``(B, Z) -> (B, 1, 28, 28)`` logits: a dense layer to 7×7, two transposed
    convolutions (7 → 14 → 28). Cheap, because IWAE evaluation runs it ``k`` times per image."""

    def __init__(self, latent_dim: int, channels: tuple[int, int], hidden: int, act: type[nn.Module]):
        super().__init__()
        c1, c2 = channels
        check_memory(f"a convolutional decoder with channels={channels}, hidden={hidden}",
                     "choose smaller channels or hidden[0]",
                     parameters=_mlp_parameters([latent_dim, hidden, 49 * c2]) + c1 * (16 * c2 + 1) + 16 * c1 + 1)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), act(),
            nn.Linear(hidden, c2 * 49), act(),
            nn.Unflatten(1, (c2, 7, 7)),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), act(),  # 7 -> 14
            nn.ConvTranspose2d(c1, 1, 4, stride=2, padding=1),  # 14 -> 28
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class HierarchicalVAE(nn.Module):
    """A VAE with ``L`` stochastic layers of diagonal Gaussians and a Bernoulli decoder.

    Build it with :meth:`mlp` or :meth:`conv`; the constructor takes the two networks
    that touch the data:

    Args:
        trunk: module ``x (B, ...) -> (B, feature_dim)``, the deterministic features of ``x``.
        decoder: module ``z_1 (B, latent_dims[0]) -> logits`` shaped like ``x``.
        latent_dims: sizes ``(Z_1, …, Z_L)`` of the layers, bottom ``z_1`` first.
        feature_dim: width of the trunk's output.
        upper_hidden: widths of the networks of layers ``2 … L`` (an int, or ``L − 1``
            ints): the bottom-up ``q_φ(z_l|z_{l−1})`` or feature block ``f_l``, and the
            prior ``p_θ(z_{l−1}|z_l)``.
        inference: ``"top_down"`` or ``"bottom_up"`` (module docstring).
        merge: for top-down inference, ``"precision"`` (Ladder VAE) or ``"residual"`` (NVAE).
        activation: ``"silu"``, ``"relu"`` or ``"elu"``.
        skip: the decoder reads all layers ``[z_1, …, z_L]`` concatenated (its input width
            must then be ``Z_1 + … + Z_L``) instead of ``z_1`` alone.
        logvar_bound: ``b > 0``; every log-variance of ``p_θ(z_l|z_{l+1})`` and
            ``q_φ(z_l|·)`` lies in ``(−b, b)`` (:func:`soft_clamp`, module docstring).

    With ``L = 1`` both inference kinds are the one-layer VAE
    ``q_φ(z_1|x) = N(μ_φ(x), σ_φ²(x))``, ``p(z_1) = N(0, I)``.

    Methods follow :class:`~vae_tutorial.models.vae.VAE`: :meth:`encode` returns the posterior
    means and log-variances of all layers concatenated ``(B, Z_1 + … + Z_L)`` (so
    :func:`~vae_tutorial.evaluation.evaluate.active_units` counts units over all layers; slice with
    :meth:`layer_slices`), :meth:`decode` maps ``z_1`` to logits. :meth:`elbo_terms` and
    :meth:`log_importance_weights` are what :func:`~vae_tutorial.maths.losses.elbo`,
    :func:`~vae_tutorial.maths.losses.iwae_bound`, :func:`~vae_tutorial.training.train.fit` and
    :func:`~vae_tutorial.evaluation.evaluate.evaluate_model` call.
    """

    likelihood = "bernoulli"

    def __init__(self, trunk: nn.Module, decoder: nn.Module, latent_dims: Sequence[int], *,
                 feature_dim: int, upper_hidden: int | Sequence[int] = 256,
                 inference: str = "top_down", merge: str = "precision", activation: str = "silu",
                 skip: bool = False, logvar_bound: float = LOGVAR_BOUND):
        super().__init__()
        for role, module in (("trunk", trunk), ("decoder", decoder)):
            if not isinstance(module, nn.Module):
                raise ArgumentTypeError(f"{role} must be a torch.nn.Module, got {type(module).__name__}")
        if inference not in INFERENCES:
            raise ArgumentError(f"unknown inference {inference!r}; choose one of {', '.join(INFERENCES)}")
        if merge not in MERGES:
            raise ArgumentError(f"unknown merge {merge!r}; choose one of {', '.join(MERGES)}")
        act = _act(activation)
        dims = _latent_dims(latent_dims)
        feature_dim = check_int("feature_dim", feature_dim, min=1)
        n_layers = len(dims)
        widths = _widths("upper_hidden", upper_hidden, n_layers - 1)
        self.latent_dims, self.inference, self.merge = dims, inference, merge
        self.trunk, self.decoder = trunk, decoder
        if not isinstance(skip, bool):
            raise ArgumentTypeError(f"skip must be True or False, got {skip!r}")
        self.skip = skip
        # a public attribute, so it is part of the model's identity (a resume with another bound is refused)
        self.logvar_bound = check_float("logvar_bound", logvar_bound, min=0.0, min_open=True)

        # Generative path: p_θ(z_l | z_{l+1}) for l = 1 … L−1 (index l−1 here).
        self.priors = nn.ModuleList(
            _gauss_head([dims[i + 1], widths[i], widths[i], 2 * dims[i]], act) for i in range(n_layers - 1))
        if inference == "bottom_up":
            # q(z_1|x) from the trunk; q(z_l|z_{l−1}) from the sample below.
            self.heads = nn.ModuleList(
                [_gauss_head([feature_dim, 2 * dims[0]], act)]
                + [_gauss_head([dims[i], widths[i], widths[i], 2 * dims[i + 1]], act) for i in range(n_layers - 1)])
            self.ups = nn.ModuleList()
        else:
            # Deterministic features d_l = f_l(d_{l−1}); the posterior head of layer l reads d_l
            # (and, for a residual posterior, the sampled parent z_{l+1}).
            feats = [feature_dim, *widths]
            self.ups = nn.ModuleList(
                _mlp([feats[i], widths[i], widths[i]], act, final_act=True) for i in range(n_layers - 1))
            heads = []
            for i in range(n_layers):
                if i == n_layers - 1 or merge == "precision":
                    heads.append(_gauss_head([feats[i], 2 * dims[i]], act))
                else:
                    heads.append(_gauss_head([feats[i] + dims[i + 1], feats[i], 2 * dims[i]], act))
            self.heads = nn.ModuleList(heads)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def mlp(cls, latent_dims: Sequence[int] = (32, 16), hidden: int | Sequence[int] = (512, 256), *,
            in_features=(1, 28, 28), inference: str = "top_down", merge: str = "precision",
            activation: str = "silu", skip: bool = False,
            logvar_bound: float = LOGVAR_BOUND) -> "HierarchicalVAE":
        """Fully connected hierarchical VAE.

        ``hidden[0]`` is the width of the two-layer trunk ``x → d_1`` and of the two-layer
        decoder ``z_1 → x``; ``hidden[l]`` that of layer ``l + 1``'s networks (an int
        repeats one width). ``HierarchicalVAE.mlp((32, 16), (512, 256))`` is a
        784–512–512–(z_1: 32)–256–256–(z_2: 16) model.
        """
        dims = _latent_dims(latent_dims)
        widths = _widths("hidden", hidden, len(dims))
        shape = _as_shape(in_features, "in_features")
        d, act = math.prod(shape), _act(activation)
        trunk = _Flatten(_mlp([d, widths[0], widths[0]], act, final_act=True))
        z_in = sum(dims) if skip is True else dims[0]
        decoder = _Reshape(_mlp([z_in, widths[0], widths[0], d], act), shape)
        return cls(trunk, decoder, dims, feature_dim=widths[0], upper_hidden=widths[1:],
                   inference=inference, merge=merge, activation=activation, skip=skip,
                   logvar_bound=logvar_bound)

    @classmethod
    def conv(cls, latent_dims: Sequence[int] = (32, 16), hidden: int | Sequence[int] = (256, 256), *,
             channels: Sequence[int] = (32, 64), inference: str = "top_down", merge: str = "precision",
             activation: str = "silu", skip: bool = False,
             logvar_bound: float = LOGVAR_BOUND) -> "HierarchicalVAE":
        """Convolutional hierarchical VAE for ``1×28×28`` images (vector latents).

        Trunk: stride-2 convolutions 28 → 14 → 7 with ``channels`` and a dense layer of
        width ``hidden[0]``; decoder: dense layers to ``channels[1]×7×7`` and transposed
        convolutions 7 → 14 → 28. ``hidden[l]`` is the width of layer ``l + 1``'s networks.
        """
        dims = _latent_dims(latent_dims)
        widths = _widths("hidden", hidden, len(dims))
        if isinstance(channels, (str, bytes)) or not hasattr(channels, "__len__") or len(channels) != 2:
            raise ArgumentTypeError(f"channels must be a pair of widths such as (32, 64), got {channels!r}")
        chans = tuple(check_int(f"channels[{i}]", c, min=1) for i, c in enumerate(channels))
        act = _act(activation)
        trunk = _ConvTrunk(chans, widths[0], act)
        decoder = _ConvDecoder(sum(dims) if skip is True else dims[0], chans, widths[0], act)
        return cls(trunk, decoder, dims, feature_dim=widths[0], upper_hidden=widths[1:],
                   inference=inference, merge=merge, activation=activation, skip=skip,
                   logvar_bound=logvar_bound)

    # ------------------------------------------------------------------ structure
    @property
    def num_layers(self) -> int:
        """``L``, the number of stochastic layers."""
        return len(self.latent_dims)

    @property
    def latent_dim(self) -> int:
        """``Z_1 + … + Z_L``, the width of :meth:`encode`'s output."""
        return sum(self.latent_dims)

    def layer_slices(self) -> list[slice]:
        """Where each layer ``z_1 … z_L`` sits in :meth:`encode`'s output and in ``kl_per_dim``."""
        out, start = [], 0
        for d in self.latent_dims:
            out.append(slice(start, start + d))
            start += d
        return out

    # ------------------------------------------------------------------ the two passes
    def _features(self, x: Tensor) -> list[Tensor]:
        """Deterministic features of ``x``: ``[d_1, …, d_L]`` (top-down) or ``[d_1]`` (bottom-up)."""
        feats = [self.trunk(x)]
        for up in self.ups:
            feats.append(up(feats[-1]))
        return feats

    def _chain(self, feats: list[Tensor], generator, use_mean: bool = False):
        """Sample ``z ~ q_φ(z|x)`` layer by layer.

        Returns ``zs``, ``q`` and ``p``: lists over layers ``1 … L`` of the samples ``(N, Z_l)``,
        the posterior ``(μ, log σ²)`` and the prior ``(μ, log σ²)`` at the sampled parents
        (``None`` for the top layer, whose prior is ``N(0, I)``). ``use_mean`` propagates
        posterior means instead of samples (for :meth:`encode`).
        """
        n_layers = self.num_layers
        zs: list = [None] * n_layers
        q: list = [None] * n_layers
        p: list = [None] * n_layers

        def draw(mu, logvar):
            return mu if use_mean else reparameterize(mu, logvar, generator)

        b = self.logvar_bound

        if self.inference == "bottom_up":
            below = feats[0]
            for i in range(n_layers):
                q[i] = _split(self.heads[i](below), b)
                zs[i] = below = draw(*q[i])
            for i in range(n_layers - 1):
                p[i] = _split(self.priors[i](zs[i + 1]), b)
            return zs, q, p
        top = n_layers - 1
        q[top] = _split(self.heads[top](feats[top]), b)
        zs[top] = draw(*q[top])
        for i in range(top - 1, -1, -1):
            mu_p, lv_p = p[i] = _split(self.priors[i](zs[i + 1]), b)
            if self.merge == "precision":
                # q ∝ (data term N(μ̂, σ̂²) read from d_l) × (prior N(μ_p, σ_p²)).
                q[i] = precision_weighted_merge(*_split(self.heads[i](feats[i]), b), mu_p, lv_p)
            else:  # residual: q is the prior shifted and rescaled (Vahdat & Kautz 2020)
                d_mu, d_lv = self.heads[i](torch.cat([feats[i], zs[i + 1]], dim=-1)).chunk(2, dim=-1)
                q[i] = (mu_p + d_mu, soft_clamp(lv_p + d_lv, b))  # the sum bounded, as NVAE does
            zs[i] = draw(*q[i])
        return zs, q, p

    def _kl_per_dim(self, zs, q, p) -> list[Tensor]:
        """Per-layer, per-dimension estimate of ``E_q[log q_φ(z_l|·) − log p_θ(z_l|z_{l+1})]``."""
        out = []
        for i, ((mu_q, lv_q), prior) in enumerate(zip(q, p)):
            if prior is None:  # top layer: closed form against N(0, I)
                out.append(0.5 * (mu_q.pow(2) + torch.expm1(lv_q) - lv_q))
            elif self.inference == "top_down":  # both Gaussian given z_{l+1}: closed form
                mu_p, lv_p = prior
                diff = lv_q - lv_p
                out.append(0.5 * (torch.expm1(diff) - diff + (mu_q - mu_p).pow(2) * torch.exp(-lv_p)))
            else:  # closed-form entropy of q, cross term −log p at the sample
                mu_p, lv_p = prior
                neg_entropy = -0.5 * (LOG_2PI + lv_q + 1.0)
                log_p = -0.5 * (LOG_2PI + lv_p + (zs[i] - mu_p).pow(2) * torch.exp(-lv_p))
                out.append(neg_entropy - log_p)
        return out

    # ------------------------------------------------------------------ the VAE interface
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior means and log-variances of all layers, ``(B, Z_1 + … + Z_L)`` each.

        Computed along the mean path (each layer's parent set to its posterior mean), so
        the result is a deterministic function of ``x``.
        """
        _, q, _ = self._chain(self._features(x), None, use_mean=True)
        return torch.cat([m for m, _ in q], dim=-1), torch.cat([lv for _, lv in q], dim=-1)

    def decode(self, z: Tensor) -> Tensor:
        """Logits of ``p_θ(x|z_1)``, shaped like the data, from ``z_1`` ``(B, Z_1)``; with
        ``skip=True`` from all layers ``[z_1, …, z_L]`` concatenated, ``(B, Z_1 + … + Z_L)``
        (the model is then ``p_θ(x|z_1, …, z_L)``)."""
        return self.decoder(z)

    def _decoder_input(self, zs: list[Tensor]) -> Tensor:
        return torch.cat(zs, dim=-1) if self.skip else zs[0]

    def log_likelihood(self, x: Tensor, logits: Tensor) -> Tensor:
        """``log p_θ(x|z_1)`` per example ``(B,)`` (Bernoulli, summed over pixels)."""
        return bernoulli_log_likelihood(logits, x)

    def mean(self, logits: Tensor) -> Tensor:
        """The mean of ``p_θ(x|z_1)``, pixel probabilities in [0, 1]."""
        return torch.sigmoid(logits)

    def forward(self, x: Tensor) -> tuple:
        """``x -> (logits, μ, log σ²)`` with ``z ~ q_φ(z|x)`` sampled (μ, log σ² as in :meth:`encode`)."""
        zs, q, _ = self._chain(self._features(x), None)
        return self.decode(self._decoder_input(zs)), torch.cat([m for m, _ in q], -1), torch.cat([lv for _, lv in q], -1)

    def elbo_terms(self, x: Tensor, beta: float = 1.0, *, generator: torch.Generator | None = None) -> ELBOTerms:
        """One-sample ELBO with per-layer KL terms (module docstring).

        Returns :class:`~vae_tutorial.maths.losses.ELBOTerms` whose ``kl`` is the sum over layers
        and whose ``kl_per_dim`` ``(B, Z_1 + … + Z_L)`` concatenates the layers (so free bits
        and :meth:`layer_slices` work). ``elbo = reconstruction − beta · kl``.
        """
        zs, q, p = self._chain(self._features(x), generator)
        rec = self.log_likelihood(x, self.decode(self._decoder_input(zs)))
        kl_dims = torch.cat(self._kl_per_dim(zs, q, p), dim=-1)
        kl = kl_dims.sum(-1)
        return ELBOTerms(elbo=rec - beta * kl, reconstruction=rec, kl=kl, kl_per_dim=kl_dims)

    def layer_kl(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """One-sample estimate of each layer's KL term, ``(B, L)`` in nats (column 0 is ``z_1``).

        Its mean over a data set is that layer's *rate*; the columns sum to ``elbo_terms(x).kl``
        for the same noise.
        """
        zs, q, p = self._chain(self._features(x), generator)
        return torch.stack([k.sum(-1) for k in self._kl_per_dim(zs, q, p)], dim=-1)

    def log_importance_weights(self, x: Tensor, k: int, *, generator: torch.Generator | None = None,
                               max_elements: int = 1 << 23):
        """Yield ``log w = log p_θ(x|z_1) + log p_θ(z) − log q_φ(z|x)`` in chunks ``(c, B)``.

        ``z ~ q_φ(z|x)`` is drawn through all layers; ``log p_θ(z) = log p(z_L) + Σ_l log
        p_θ(z_l|z_{l+1})`` and ``log q_φ(z|x)`` are full Gaussian densities. The features of
        ``x`` are computed once per chunk size; at most about ``max_elements`` decoder outputs
        exist at once. The chunk sizes sum to ``k``.
        """
        b = x.shape[0]
        step = _chunk_size(b, x[0].numel(), k, max_elements)
        feats = self._features(x)
        for start in range(0, k, step):
            c = min(step, k - start)
            f = [t.unsqueeze(0).expand(c, *t.shape).reshape(c * b, *t.shape[1:]) for t in feats]
            zs, q, p = self._chain(f, generator)
            xf = x.unsqueeze(0).expand(c, *x.shape).reshape(c * b, *x.shape[1:])
            log_w = self.log_likelihood(xf, self.decode(self._decoder_input(zs)))
            for z, (mu_q, lv_q), prior in zip(zs, q, p):
                mu_p, lv_p = prior if prior is not None else (torch.zeros_like(z), torch.zeros_like(z))
                log_w = log_w + gaussian_log_likelihood(z, mu_p, lv_p) - gaussian_log_likelihood(z, mu_q, lv_q)
            yield log_w.view(c, b)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The mean of ``p_θ(x|z_1)`` at the posterior-mean path, shaped like ``x``."""
        zs, _, _ = self._chain(self._features(x), None, use_mean=True)
        return self.mean(self.decode(self._decoder_input(zs))).reshape(x.shape)

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> list[Tensor]:
        """Ancestral sample ``z_L ~ N(0, I)``, ``z_l ~ p_θ(z_l|z_{l+1})``: ``[z_1, …, z_L]``."""
        n = check_int("n", n, min=1)
        prm = next(self.parameters())
        zeros = torch.zeros(n, self.latent_dims[-1], device=prm.device, dtype=prm.dtype)
        zs = [reparameterize(zeros, zeros, generator)]
        for i in range(self.num_layers - 2, -1, -1):
            zs.insert(0, reparameterize(*_split(self.priors[i](zs[0]), self.logvar_bound), generator))
        return zs

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Generate ``n`` images: an ancestral sample of ``z``, then the mean of ``p_θ(x|z_1)``."""
        return self.mean(self.decode(self._decoder_input(self.prior_sample(n, generator))))



@torch.no_grad()
def top_layer_rate_split(model: HierarchicalVAE, x: Tensor, samples: int = 512,
                         generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Split the top layer's rate into what it says about ``x`` and about the layers below.

    With ``q_φ(z_L|x) = E_{q_φ(z_{<L}|x)}[q_φ(z_L|·)]`` the marginal posterior of the top
    layer, its rate splits exactly::

        E_q[KL(q_φ(z_L|·) ‖ p(z_L))] = E_q[KL(q_φ(z_L|·) ‖ q_φ(z_L|x))] + KL(q_φ(z_L|x) ‖ p(z_L)).

    The first term (``"noise"``) is information about the *samples* of the lower layers
    beyond ``x``; the second (``"data"``) is about ``x``. For top-down inference
    ``q_φ(z_L|x)`` reads only ``x``, so the first term is 0; for bottom-up inference
    ``q_φ(z_L|z_{L−1})`` also encodes the sampling noise of ``z_{L−1}``.

    ``samples`` (``M``) chains are drawn per image; ``log q_φ(z_L|x)`` is estimated by the
    mixture of the ``M`` posteriors, own component included, which makes ``"noise"`` a lower
    bound (at most ``log M``) and ``"data" = "rate" − "noise"`` an upper bound.

    Args:
        model: a :class:`HierarchicalVAE` with ``L ≥ 2`` layers.
        x: ``(B, ...)`` data.
        samples: ``M ≥ 2`` chains per image.
        generator: optional generator for the noise.

    Returns:
        ``{"rate", "noise", "data"}``, each ``(B,)`` in nats.
    """
    if not isinstance(model, HierarchicalVAE) or model.num_layers < 2:
        raise ArgumentError("top_layer_rate_split needs a HierarchicalVAE with at least two layers")
    m = check_int("samples", samples, min=2)
    was_training = model.training
    model.eval()
    out = {"rate": [], "noise": []}
    try:
        for i in range(x.shape[0]):
            feats = [f.expand(m, *f.shape[1:]) for f in model._features(x[i:i + 1])]
            zs, q, _ = model._chain(feats, generator)
            mu, lv = q[-1]  # (M, Z_L): the top layer's posterior in each chain
            z = zs[-1]
            # log q(z_m | chain m') for every pair: (M, M')
            log_q = -0.5 * (LOG_2PI + lv[None] + (z[:, None] - mu[None]).pow(2) * torch.exp(-lv[None])).sum(-1)
            mixture = torch.logsumexp(log_q, dim=1) - math.log(m)
            out["noise"].append((log_q.diagonal() - mixture).mean())
            out["rate"].append((0.5 * (mu.pow(2) + torch.expm1(lv) - lv)).sum(-1).mean())
    finally:
        model.train(was_training)
    res = {k: torch.stack(v) for k, v in out.items()}
    res["data"] = res["rate"] - res["noise"]
    return res
