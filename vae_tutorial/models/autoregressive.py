"""Autoregressive decoders: masked convolutions, a small PixelCNN conditioned on z, and a VAE built on it.

A factorised decoder ``p_θ(x|z) = Π_i p_θ(x_i|z)`` must put every dependence between
pixels into ``z``. An autoregressive decoder (PixelCNN, van den Oord et al. 2016)

    ``p_θ(x|z) = Π_{i=1}^{D} p_θ(x_i | x_{<i}, z)``   (pixels in raster order)

can model those dependences itself, and can model ``x`` without ``z`` at all. With such
a decoder the ELBO ``E_q[log p_θ(x|z)] − KL(q_φ(z|x) ‖ p(z))`` is often maximised by
``q_φ(z|x) = p(z)``: posterior collapse (Bowman et al. 2016; Chen et al. 2017).

* :class:`MaskedConv2d` is a convolution whose kernel is zero on the pixels that come
  at or after the centre in raster order: mask ``"A"`` (first layer) hides the centre
  itself, mask ``"B"`` (later layers) lets a unit see its own position's features,
  which by then depend only on earlier pixels.
* :class:`PixelCNNDecoder` maps ``(z, x)`` to one Bernoulli logit per pixel, the logit
  of pixel ``i`` depending only on ``x_{<i}`` and ``z``; the number of masked layers and
  the kernel size set its receptive field (a small one is the "weak decoder" remedy
  of the Variational Lossy Autoencoder, Chen et al. 2017). ``z`` enters every layer as
  a feature map, as in PixelVAE (Gulrajani et al. 2017).
* :class:`PixelVAE` pairs it with an encoder and implements the hooks of
  :func:`~vae_tutorial.maths.losses.elbo` and :func:`~vae_tutorial.maths.losses.iwae_bound`, so
  :func:`~vae_tutorial.training.train.fit` and :func:`~vae_tutorial.evaluation.evaluate.evaluate_model`
  train and score it like any other VAE. Its option ``rate_floor`` caps the posterior
  variance below the prior's, so that ``KL(q_φ(z|x) ‖ p(z)) ≥ δ`` for every ``x``: the
  committed rate of the δ-VAE (Razavi et al. 2019), in its simplest form.

Shapes: ``B`` batch, ``Z`` latent dims, images ``(B, 1, H, W)`` with ``D = H W`` binary
pixels, ``C`` hidden channels.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ArgumentError, ArgumentTypeError, check_float, check_int, check_memory
from ..maths.losses import (
    ELBOTerms,
    bernoulli_log_likelihood,
    gaussian_log_likelihood,
    kl_standard_normal_per_dim,
    reparameterize,
)

__all__ = [
    "MaskedConv2d",
    "PixelCNNDecoder",
    "PixelVAE",
    "causal_mask",
    "rate_floor_logvar",
]


def causal_mask(kernel_size: int, mask_type: str) -> Tensor:
    """The ``(k, k)`` 0/1 mask of a masked convolution (van den Oord et al. 2016).

    With the centre at ``(c, c)``, ``c = k // 2``, the mask keeps the rows above the
    centre and, in the centre row, the positions left of it; type ``"B"`` also keeps the
    centre. Everything after the centre in raster order is zero.
    """
    k = check_int("kernel_size", kernel_size, min=1)
    if k % 2 == 0:
        raise ArgumentError(f"kernel_size must be odd so that the kernel has a centre, got {k}")
    if mask_type not in ("A", "B"):
        raise ArgumentError(f"mask_type must be 'A' (first layer) or 'B' (later layers), got {mask_type!r}")
    check_memory(f"a {k}×{k} causal mask", "choose a smaller kernel_size", buffer_bytes=4 * k * k)
    c = k // 2
    mask = torch.ones(k, k)
    mask[c, c + (mask_type == "B"):] = 0.0
    mask[c + 1:, :] = 0.0
    return mask


class MaskedConv2d(nn.Conv2d):
    """A ``k × k`` convolution (stride 1, "same" padding) with a causal mask on its kernel.

    Output position ``i`` sees input positions ``j < i`` in raster order (mask ``"A"``)
    or ``j ≤ i`` (mask ``"B"``), within the ``k × k`` window. The mask multiplies the
    weights at every call, so the hidden weights get no gradient and stay irrelevant.

    Shapes: ``(B, C_in, H, W) -> (B, C_out, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str):
        kernel_size = check_int("kernel_size", kernel_size, min=1)
        mask = causal_mask(kernel_size, mask_type)  # checks kernel_size and mask_type
        in_channels = check_int("in_channels", in_channels, min=1)
        out_channels = check_int("out_channels", out_channels, min=1)
        weights = in_channels * out_channels * kernel_size**2
        check_memory(f"a masked {kernel_size}×{kernel_size} convolution from {in_channels} to {out_channels} "
                     "channels", "choose fewer channels", parameters=weights + out_channels,
                     buffer_bytes=4 * weights)  # the float32 mask, one value per weight
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.mask_type = mask_type
        self.register_buffer("mask", mask.expand_as(self.weight).clone())

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mask_type={self.mask_type!r}"


def _image_shape(shape) -> tuple[int, int, int]:
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) != 3:
        raise ArgumentTypeError(f"image_shape must be (1, H, W), e.g. (1, 28, 28), got {shape!r}")
    c, h, w = (check_int(f"image_shape[{i}]", s, min=1) for i, s in enumerate(shape))
    if c != 1:
        raise ArgumentError(f"the PixelCNN decoder models one channel of binary pixels; image_shape has {c}")
    return c, h, w


class PixelCNNDecoder(nn.Module):
    """``(z, x) ->`` logits of ``p_θ(x_i = 1 | x_{<i}, z)`` for every pixel: a small PixelCNN.

    Layers: a type-``A`` masked ``k × k`` convolution of the image (``1 → C``), then
    ``layers`` residual blocks ``h ← h + MaskedConv_B(ReLU(h))`` with ``k_B × k_B``
    kernels, then a ``1 × 1`` convolution to one logit per pixel. The latent code enters
    every layer as an additive feature map ``m_ℓ(z)`` (PixelVAE, Gulrajani et al. 2017):
    ``z ↦`` a ``(C, ⌈H/4⌉, ⌈W/4⌉)`` map per layer through a small MLP, bilinearly
    upsampled to ``H × W``. Only the image path is masked: ``z`` may be seen everywhere.

    The receptive field (the earlier pixels that pixel ``i``'s logit can depend on)
    grows with ``kernel_size`` and ``layers``: with ``layers = 0`` and ``kernel_size = 3``
    a pixel sees only 4 neighbours (left, and the three above). ``kernel_size = 1``
    sees none: ``p_θ(x|z)`` is then factorised, an ordinary conditional decoder.

    Args:
        latent_dim: ``Z``.
        image_shape: ``(1, H, W)``.
        channels: ``C``, hidden channels.
        layers: number of type-``B`` residual blocks (``≥ 0``).
        kernel_size: the first (type ``A``) layer's kernel, odd.
        hidden_kernel: the type-``B`` layers' kernel, odd.
        z_hidden: width of the MLP that maps ``z`` to the feature maps.

    Shapes: ``z (B, Z)``, ``x (B, 1, H, W)`` ``-> (B, 1, H, W)`` logits.
    """

    def __init__(self, latent_dim: int, image_shape: Sequence[int] = (1, 28, 28), channels: int = 32,
                 layers: int = 2, kernel_size: int = 5, hidden_kernel: int = 3, z_hidden: int = 128):
        super().__init__()
        self.latent_dim = check_int("latent_dim", latent_dim, min=1)
        self.image_shape = _image_shape(image_shape)
        self.channels = check_int("channels", channels, min=1)
        self.layers = check_int("layers", layers, min=0)
        self.kernel_size = check_int("kernel_size", kernel_size, min=1)
        self.hidden_kernel = check_int("hidden_kernel", hidden_kernel, min=1)
        z_hidden = check_int("z_hidden", z_hidden, min=1)
        _, h, w = self.image_shape
        self.grid = (math.ceil(h / 4), math.ceil(w / 4))
        c, n_maps = self.channels, (self.layers + 1) * self.channels
        masked = c * self.kernel_size**2 + self.layers * c * c * self.hidden_kernel**2  # weights, each masked
        check_memory(f"a PixelCNN decoder with channels={c}, layers={self.layers}, z_hidden={z_hidden}",
                     "choose smaller channels, layers, kernel_size, hidden_kernel or z_hidden",
                     parameters=masked + (self.layers + 1) * c + c + 1 + (self.latent_dim + 1) * z_hidden
                     + (z_hidden + 1) * n_maps * self.grid[0] * self.grid[1],
                     buffer_bytes=4 * masked)
        self.first = MaskedConv2d(1, self.channels, self.kernel_size, "A")
        self.blocks = nn.ModuleList(MaskedConv2d(self.channels, self.channels, self.hidden_kernel, "B")
                                    for _ in range(self.layers))
        self.out = nn.Conv2d(self.channels, 1, 1)
        self.z_net = nn.Sequential(nn.Linear(self.latent_dim, z_hidden), nn.ReLU(),
                                   nn.Linear(z_hidden, n_maps * self.grid[0] * self.grid[1]))

    def z_maps(self, z: Tensor) -> list[Tensor]:
        """``z (B, Z) ->`` ``layers + 1`` feature maps ``m_ℓ(z)``, each ``(B, C, H, W)``."""
        _, h, w = self.image_shape
        m = self.z_net(z).view(z.shape[0], -1, *self.grid)
        if self.grid != (h, w):
            m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
        return list(m.split(self.channels, dim=1))

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], *self.image_shape)
        maps = self.z_maps(z)
        h = self.first(2.0 * x - 1.0) + maps[0]  # ±1 inputs: a 0 pixel is not "no input"
        for block, m in zip(self.blocks, maps[1:]):
            h = h + block(F.relu(h)) + m
        return self.out(F.relu(h))

    def receptive_field(self) -> int:
        """How many earlier pixels the logit of a pixel far from the border can depend on.

        Counted by propagating a point through the masks (non-negative kernels, so no
        cancellation): the pixels whose value can reach the centre's logit.
        """
        a = causal_mask(self.kernel_size, "A").flip(0, 1)  # conv2d correlates: flip to propagate
        b = causal_mask(self.hidden_kernel, "B").flip(0, 1)
        size = 2 * (self.kernel_size // 2 + self.layers * (self.hidden_kernel // 2)) + 1
        reach = torch.zeros(1, 1, size, size)
        reach[0, 0, size // 2, size // 2] = 1.0  # the output pixel; walk back to its inputs
        for kernel in [b] * self.layers:
            reach = reach + F.conv2d(reach, kernel[None, None], padding=kernel.shape[0] // 2)
        reach = F.conv2d(reach, a[None, None], padding=a.shape[0] // 2)
        return int(reach.gt(0).sum())


def rate_floor_logvar(delta_per_dim: float) -> float:
    """The largest ``log σ²`` whose KL to ``N(0, 1)`` is at least ``δ`` whatever the mean.

    ``KL(N(μ, σ²) ‖ N(0, 1)) = ½(μ² + σ² − 1 − log σ²) ≥ ½(σ² − 1 − log σ²)``, and the
    right side falls as σ² rises to 1. So capping ``σ² ≤ s`` with
    ``s − 1 − log s = 2δ`` (``s < 1``, solved here by bisection) guarantees ``KL ≥ δ``.
    ``δ = 0`` gives ``s = 1``.
    """
    delta = check_float("delta_per_dim", delta_per_dim, min=0.0)
    if delta == 0.0:
        return 0.0
    lo, hi = -2.0 * delta - 50.0, 0.0  # in log s; g(log s) = s − 1 − log s is decreasing here
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if math.exp(mid) - 1.0 - mid > 2.0 * delta:
            lo = mid
        else:
            hi = mid
    return lo  # g(lo) ≥ 2δ: the cap errs on the side of a KL at least δ


class PixelVAE(nn.Module):
    """A VAE with an autoregressive decoder: ``q_φ(z|x)``, ``p_θ(x|z) = Π_i p_θ(x_i|x_{<i}, z)``, ``p(z)``.

    Binary images only (a Bernoulli per pixel). ``log p_θ(x|z)`` of a whole image takes
    one decoder pass (teacher forcing: the true ``x_{<i}`` are fed in, and the masks
    keep each pixel's logit from seeing ``x_i`` or later pixels). Sampling takes one
    pass per pixel.

    Args:
        encoder: module ``x -> (μ, log σ²)``, each ``(B, Z)`` (e.g. :class:`~vae_tutorial.models.vae.MLPEncoder`).
        decoder: a :class:`PixelCNNDecoder`.
        rate_floor: ``δ ≥ 0``, nats per example. When positive, the posterior variance of
            each of the ``Z`` dimensions is capped at the ``s`` of
            :func:`rate_floor_logvar` ``(δ / Z)``, through the smooth map
            ``log σ² = log s − softplus(log s − a)`` of the encoder's output ``a``. Then
            ``KL(q_φ(z|x) ‖ p(z)) ≥ δ`` for every ``x``: a restricted posterior family
            (a δ-VAE, Razavi et al. 2019, whose paper mostly uses a correlated prior
            instead), so the ELBO remains a bound on ``log p_θ(x)``; it is not a change
            of objective such as ``max(KL, δ)``.

    ``fit``, ``elbo``, ``iwae_bound`` and ``evaluate_model`` use :meth:`elbo_terms` and
    :meth:`log_importance_weights`; free bits and β schedules work as for :class:`~vae_tutorial.models.vae.VAE`.
    """

    likelihood = "bernoulli"

    def __init__(self, encoder: nn.Module, decoder: PixelCNNDecoder, rate_floor: float = 0.0):
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise ArgumentTypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
        if not isinstance(decoder, PixelCNNDecoder):
            raise ArgumentTypeError(f"decoder must be a PixelCNNDecoder, got {type(decoder).__name__}")
        self.encoder = encoder
        self.decoder = decoder
        self.rate_floor = check_float("rate_floor", rate_floor, min=0.0)
        self.logvar_cap = rate_floor_logvar(self.rate_floor / self.latent_dim) if self.rate_floor else None

    @property
    def latent_dim(self) -> int:
        return int(self.decoder.latent_dim)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.decoder.image_shape

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, 1, H, W) -> (μ, log σ²)`` of ``q_φ(z|x)``, each ``(B, Z)`` (variance capped with a rate floor)."""
        mu, logvar = self.encoder(x)
        if self.logvar_cap is not None:
            logvar = self.logvar_cap - F.softplus(self.logvar_cap - logvar)
        return mu, logvar

    def decode(self, z: Tensor, x: Tensor) -> Tensor:
        """Teacher-forced logits ``ℓ_i`` of ``p_θ(x_i = 1 | x_{<i}, z)``, ``(B, 1, H, W)``.

        Unlike :meth:`vae_tutorial.models.vae.VAE.decode` this needs the image ``x``: an
        autoregressive decoder's distribution over pixel ``i`` depends on the pixels
        before it. (To generate, use :meth:`sample`.)
        """
        return self.decoder(z, x)

    def log_likelihood(self, x: Tensor, logits: Tensor) -> Tensor:
        """``log p_θ(x|z) = Σ_i log p_θ(x_i | x_{<i}, z)`` per example ``(B,)``, from :meth:`decode`'s logits."""
        return bernoulli_log_likelihood(logits, x)

    def elbo_terms(self, x: Tensor, beta: float = 1.0, *, generator: torch.Generator | None = None) -> ELBOTerms:
        """One-sample ``ELBO_β(x) = log p_θ(x|z) − β KL(q_φ(z|x) ‖ p(z))``, ``z ~ q_φ(z|x)``; terms ``(B,)``."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, generator)
        rec = self.log_likelihood(x, self.decode(z, x))
        kl_dims = kl_standard_normal_per_dim(mu, logvar)
        kl = kl_dims.sum(dim=-1)
        return ELBOTerms(elbo=rec - beta * kl, reconstruction=rec, kl=kl, kl_per_dim=kl_dims)

    def log_importance_weights(self, x: Tensor, k: int, *, generator: torch.Generator | None = None,
                               max_elements: int = 1 << 23):
        """Yield ``log w = log p_θ(x|z) + log p(z) − log q_φ(z|x)`` in chunks ``(c, B)``, ``Σ c = k``.

        At most about ``max_elements`` hidden activations (``c · B · C · D``) exist at once.
        """
        k = check_int("k", k, min=1)
        mu, logvar = self.encode(x)
        b = x.shape[0]
        per_sample = b * self.decoder.channels * x[0].numel()
        step = max(1, min(k, max_elements // max(1, per_sample)))
        for start in range(0, k, step):
            c = min(step, k - start)
            mu_c = mu.unsqueeze(0).expand(c, *mu.shape)
            lv_c = logvar.unsqueeze(0).expand(c, *logvar.shape)
            z = reparameterize(mu_c, lv_c, generator).reshape(c * b, -1)
            xf = x.unsqueeze(0).expand(c, *x.shape).reshape(c * b, *x.shape[1:])
            log_px_z = self.log_likelihood(xf, self.decode(z, xf)).view(c, b)
            log_pz = gaussian_log_likelihood(z, torch.zeros_like(z), 0.0).view(c, b)
            log_qz = gaussian_log_likelihood(z, mu_c.reshape(c * b, -1), lv_c.reshape(c * b, -1)).view(c, b)
            yield log_px_z + log_pz - log_qz

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``z ~ p(z) = N(0, I)``, shape ``(n, Z)``, on the model's device and dtype."""
        n = check_int("n", n, min=1)
        p = next(self.parameters())
        zeros = torch.zeros(n, self.latent_dim, device=p.device, dtype=p.dtype)
        return reparameterize(zeros, zeros, generator)

    @torch.no_grad()
    def sample_given(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``x ~ p_θ(x|z)`` pixel by pixel in raster order: ``(B, Z) -> (B, 1, H, W)`` in {0, 1}.

        One decoder pass per pixel (``D`` passes), each reading the pixels drawn so far.
        """
        _, h, w = self.image_shape
        x = torch.zeros(z.shape[0], 1, h, w, device=z.device, dtype=z.dtype)
        for r in range(h):
            for c in range(w):
                p = torch.sigmoid(self.decoder(z, x)[:, 0, r, c])
                if generator is not None and generator.device != p.device:
                    u = torch.rand(p.shape, generator=generator, device=generator.device, dtype=p.dtype).to(p.device)
                else:
                    u = torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype)
                x[:, 0, r, c] = (u < p).to(x.dtype)
        return x

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Generate ``n`` binary images: ``z ~ p(z)``, then ``x ~ p_θ(x|z)`` pixel by pixel; ``(n, 1, H, W)``.

        Unlike :meth:`vae_tutorial.models.vae.VAE.sample` (which returns the decoder's mean)
        these are samples: an autoregressive decoder's mean image has no closed form.
        """
        was_training = self.training
        self.eval()
        try:
            return self.sample_given(self.prior_sample(n, generator), generator)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Teacher-forced predictions ``p_θ(x_i = 1 | x_{<i}, z = μ_φ(x))``, shaped like ``x``.

        Each pixel's probability is computed from the *true* earlier pixels and the
        posterior mean, in one pass: a one-step-ahead prediction, not a sample from
        ``p_θ(x|z)`` and not its mean. A collapsed model predicts about as well as a
        working one here, because the earlier pixels carry most of the information.
        """
        mu, _ = self.encode(x)
        return torch.sigmoid(self.decode(mu, x)).reshape(x.shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x -> (logits, μ, log σ²)`` with ``z ~ q_φ(z|x)`` sampled by reparameterisation."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar), x), mu, logvar
