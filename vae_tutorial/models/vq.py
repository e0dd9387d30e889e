"""VQ-VAE: a deterministic encoder, a codebook of ``K`` vectors, straight-through gradients, and a prior over the codes.

The VQ-VAE of van den Oord et al. (2017) replaces the Gaussian ``q_φ(z|x)`` by a point mass.
The encoder maps ``x`` to a grid ``z_e(x)`` of ``H × W`` vectors of size ``D``; each is
replaced by its nearest codebook vector, ``z_q = e_k``, ``k = argmin_j ‖z_e − e_j‖²``, and the
decoder ``p_θ(x|z_q)`` reconstructs from the quantised grid. The loss per image is

    ``−log p_θ(x|z_q) + ‖sg[z_e] − e‖² + β ‖z_e − sg[e]‖²``

(``sg`` stops the gradient; sums over the grid and the ``D`` dimensions):

* the **reconstruction** term trains the decoder, and the encoder through the
  **straight-through** estimator ``z_q ≈ z_e + sg[z_q − z_e]``: forward value ``z_q``,
  gradient copied from ``z_q`` to ``z_e`` (the argmin has no useful gradient);
* the **codebook** term moves each used code towards the encoder outputs assigned to it
  (it trains only the codebook);
* the **commitment** term, weighted by ``β``, keeps the encoder outputs near their codes
  (it trains only the encoder).

With ``q(z|x)`` a point mass on the code grid and a uniform prior over the ``K^{HW}`` grids,
``KL(q(z|x) ‖ p(z)) = HW log K`` for every ``x``: a constant, so it is left out of the loss.
After training, :class:`CodePrior` (a PixelCNN over the grid of code indices built from the
masked convolutions of :mod:`vae_tutorial.models.autoregressive`) learns ``p_ψ(k)`` and replaces the
uniform prior. For every ``x``,

    ``−log p(x) ≤ −log p_θ(x|z_q(x)) − log p_ψ(k(x))``

where ``p(x) = Σ_k p_ψ(k) p_θ(x|e_k)``: one term of the sum is at most the sum. This is the
negative ELBO of the point-mass posterior (its entropy is 0), in nats; see :func:`vq_bound`.

Shapes: images ``(B, 1, 28, 28)`` binary, grid ``(B, D, H, W)`` with ``H = W = 7``, indices
``(B, H, W)`` in ``0 … K−1``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .autoregressive import MaskedConv2d
from ..maths.discrete import _compare
from ..errors import (
    ArgumentError,
    ArgumentTypeError,
    check_float,
    check_int,
    check_memory,
    check_tensor,
)
from ..maths.losses import bernoulli_log_likelihood

__all__ = [
    "VQVAE",
    "CodePrior",
    "VQTerms",
    "VectorQuantizer",
    "check_straight_through",
    "nearest_code",
    "straight_through",
    "vq_bound",
]


def nearest_code(z_e: Tensor, codebook: Tensor) -> Tensor:
    """``k = argmin_j ‖z_e − e_j‖²`` at every grid position.

    Computed as ``‖e_j‖² − 2⟨z_e, e_j⟩`` (``‖z_e‖²`` is the same for every ``j``).
    Shapes: ``z_e (B, D, H, W)``, codebook ``(K, D)`` ``->`` ``(B, H, W)`` int64.
    """
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, z_e.shape[1])  # (B H W, D)
    scores = (codebook**2).sum(1)[None, :] - 2.0 * flat @ codebook.T  # (B H W, K)
    return scores.argmin(1).view(z_e.shape[0], z_e.shape[2], z_e.shape[3])


def straight_through(z_e: Tensor, z_q: Tensor) -> Tensor:
    """``z_e + sg[z_q − z_e]``: the value of ``z_q``, the gradient passed unchanged to ``z_e`` (none to ``z_q``)."""
    return z_e + (z_q - z_e).detach()


@dataclass
class VQTerms:
    """The per-image terms of the VQ-VAE loss, each ``(B,)``, in nats (``reconstruction``) or squared distances.

    ``loss = −reconstruction + codebook + β · commitment``; ``indices`` ``(B, H, W)``.
    """

    reconstruction: Tensor  # log p_θ(x|z_q)
    codebook: Tensor  # ‖sg[z_e] − e‖²
    commitment: Tensor  # ‖z_e − sg[e]‖²  (the same value, other gradients)
    loss: Tensor
    indices: Tensor


class VectorQuantizer(nn.Module):
    """A codebook of ``K`` vectors ``e_1 … e_K`` of size ``D`` and the nearest-code map.

    :meth:`forward` returns the straight-through grid, the indices and the per-image codebook
    and commitment terms. The codebook starts uniform in ``±1/K`` unless :meth:`init_from` sets
    it to encoder outputs (which keeps codes from starting where no encoder output is, "dead").
    """

    def __init__(self, num_codes: int, code_dim: int):
        super().__init__()
        self.num_codes = check_int("num_codes", num_codes, min=2)
        self.code_dim = check_int("code_dim", code_dim, min=1)
        check_memory(f"a codebook of {self.num_codes} × {self.code_dim}", "choose fewer num_codes or a smaller "
                     "code_dim", parameters=self.num_codes * self.code_dim)
        self.codebook = nn.Parameter(torch.empty(self.num_codes, self.code_dim).uniform_(
            -1.0 / self.num_codes, 1.0 / self.num_codes))

    @torch.no_grad()
    def init_from(self, z_e: Tensor, generator: torch.Generator | None = None) -> None:
        """Set the codebook to ``K`` encoder output vectors drawn without replacement from ``z_e (B, D, H, W)``."""
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, self.code_dim)
        if flat.shape[0] < self.num_codes:
            raise ArgumentError(f"init_from needs at least num_codes = {self.num_codes} vectors, got {flat.shape[0]}: "
                                "pass a larger batch")
        pick = torch.randperm(flat.shape[0], generator=generator)[: self.num_codes].to(flat.device)
        self.codebook.copy_(flat[pick])

    def forward(self, z_e: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``z_e (B, D, H, W) ->`` (straight-through ``z_q`` ``(B, D, H, W)``, indices ``(B, H, W)``,
        codebook term ``(B,)``, commitment term ``(B,)``)."""
        if z_e.dim() != 4 or z_e.shape[1] != self.code_dim:
            raise ArgumentError(f"z_e must have shape (B, {self.code_dim}, H, W), got {tuple(z_e.shape)}")
        indices = nearest_code(z_e.detach(), self.codebook.detach())
        z_q = self.codebook[indices].permute(0, 3, 1, 2)  # (B, D, H, W)
        codebook = ((z_e.detach() - z_q) ** 2).flatten(1).sum(1)  # moves the codes only
        commitment = ((z_e - z_q.detach()) ** 2).flatten(1).sum(1)  # moves the encoder only
        return straight_through(z_e, z_q), indices, codebook, commitment

    def lookup(self, indices: Tensor) -> Tensor:
        """Indices ``(B, H, W) ->`` codes ``(B, D, H, W)``."""
        return self.codebook[indices].permute(0, 3, 1, 2)


class VQVAE(nn.Module):
    """A VQ-VAE for binary ``1 × 28 × 28`` images with a ``7 × 7`` grid of codes and a Bernoulli decoder.

    Encoder: ``Conv 4×4/2 (1→C) → ReLU → Conv 4×4/2 (C→2C) → ReLU → Conv 1×1 (2C→D)`` gives
    ``z_e (B, D, 7, 7)``; :class:`VectorQuantizer` with ``K`` codes; decoder:
    ``Conv 3×3 (D→2C) → ReLU → ConvT 4×4/2 (2C→C) → ReLU → ConvT 4×4/2 (C→1)``, the logits of
    ``p_θ(x|z_q)``.

    Args:
        num_codes: ``K``.
        code_dim: ``D``.
        channels: ``C``.
        beta: ``β``, the weight of the commitment term (0.25 in van den Oord et al. 2017).
    """

    likelihood = "bernoulli"
    grid = (7, 7)

    def __init__(self, num_codes: int = 32, code_dim: int = 16, channels: int = 32, beta: float = 0.25):
        super().__init__()
        self.beta = check_float("beta", beta, min=0.0)
        c = check_int("channels", channels, min=1)
        d = check_int("code_dim", code_dim, min=1)
        check_memory(f"a VQ-VAE with channels={c}, code_dim={d}", "choose fewer channels or a smaller code_dim",
                     parameters=2 * (16 * c + 16 * 2 * c * c) + 2 * c * d + 9 * d * 2 * c)
        self.encoder = nn.Sequential(nn.Conv2d(1, c, 4, 2, 1), nn.ReLU(), nn.Conv2d(c, 2 * c, 4, 2, 1), nn.ReLU(),
                                     nn.Conv2d(2 * c, d, 1))
        self.quantizer = VectorQuantizer(num_codes, d)
        self.decoder = nn.Sequential(nn.Conv2d(d, 2 * c, 3, padding=1), nn.ReLU(),
                                     nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.ReLU(),
                                     nn.ConvTranspose2d(c, 1, 4, 2, 1))

    @property
    def num_codes(self) -> int:
        return self.quantizer.num_codes

    def _images(self, x: Tensor) -> Tensor:
        x = check_tensor("x", x)
        if x.shape[-2:] != (28, 28) or x.numel() % 784:
            raise ArgumentError(f"x must be 28 × 28 images, (B, 1, 28, 28) or (B, 784), got {tuple(x.shape)}")
        return x.reshape(-1, 1, 28, 28)

    def encode(self, x: Tensor) -> Tensor:
        """``x (B, 1, 28, 28) -> z_e (B, D, 7, 7)``."""
        return self.encoder(self._images(x))

    def encode_indices(self, x: Tensor) -> Tensor:
        """The code grid ``k(x)`` of each image, ``(B, 7, 7)`` (the deterministic "posterior")."""
        return nearest_code(self.encode(x), self.quantizer.codebook)

    def decode(self, z_q: Tensor) -> Tensor:
        """``z_q (B, D, 7, 7) ->`` logits ``(B, 1, 28, 28)`` of ``p_θ(x|z_q)``."""
        return self.decoder(z_q)

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Code grid ``(B, 7, 7) ->`` logits ``(B, 1, 28, 28)``."""
        return self.decode(self.quantizer.lookup(indices))

    def terms(self, x: Tensor) -> VQTerms:
        """The loss and its terms for a batch of binary images ``x``."""
        x = self._images(x)
        z_q, indices, codebook, commitment = self.quantizer(self.encode(x))
        rec = bernoulli_log_likelihood(self.decode(z_q), x)
        return VQTerms(rec, codebook, commitment, -rec + codebook + self.beta * commitment, indices)

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction logits ``(B, 1, 28, 28)``."""
        z_q, *_ = self.quantizer(self.encode(x))
        return self.decode(z_q)


class CodePrior(nn.Module):
    """``p_ψ(k) = Π_i p_ψ(k_i | k_{<i})``: a small PixelCNN over an ``H × W`` grid of code indices.

    The indices are one-hot encoded (``K`` channels), then a type-``A`` masked ``k × k``
    convolution, ``layers`` residual blocks ``h ← h + MaskedConv_B(ReLU(h))`` (``3 × 3``) and a
    ``1 × 1`` convolution to ``K`` logits per position (:class:`~vae_tutorial.models.autoregressive.MaskedConv2d`),
    so the distribution of ``k_i`` depends only on the codes before it in raster order.

    Shapes: indices ``(B, H, W)`` ``->`` logits ``(B, K, H, W)``; :meth:`log_prob` ``-> (B,)``.
    """

    def __init__(self, num_codes: int, grid: tuple[int, int] = (7, 7), channels: int = 64, layers: int = 3,
                 kernel_size: int = 5):
        super().__init__()
        self.num_codes = check_int("num_codes", num_codes, min=2)
        if not (isinstance(grid, (tuple, list)) and len(grid) == 2):
            raise ArgumentTypeError(f"grid must be (H, W), e.g. (7, 7), got {grid!r}")
        self.grid = tuple(check_int(f"grid[{i}]", g, min=1) for i, g in enumerate(grid))
        c = check_int("channels", channels, min=1)
        layers = check_int("layers", layers, min=0)
        kernel_size = check_int("kernel_size", kernel_size, min=1)
        check_memory(f"a code prior with channels={c}, layers={layers}", "choose fewer channels or layers",
                     parameters=self.num_codes * c * kernel_size**2 + layers * 9 * c * c + 2 * c * self.num_codes)
        self.first = MaskedConv2d(self.num_codes, c, kernel_size, "A")
        self.blocks = nn.ModuleList(MaskedConv2d(c, c, 3, "B") for _ in range(layers))
        self.out = nn.Conv2d(c, self.num_codes, 1)

    def logits(self, indices: Tensor) -> Tensor:
        """``(B, H, W) -> (B, K, H, W)``: the logits of ``p_ψ(k_i | k_{<i})`` at every position (one pass)."""
        h = self.first(F.one_hot(indices, self.num_codes).permute(0, 3, 1, 2).to(self.out.weight.dtype))
        for block in self.blocks:
            h = h + block(F.relu(h))
        return self.out(F.relu(h))

    def log_prob(self, indices: Tensor) -> Tensor:
        """``log p_ψ(k)`` in nats per grid, ``(B, H, W) -> (B,)``."""
        if indices.dim() != 3 or tuple(indices.shape[1:]) != self.grid:
            raise ArgumentError(f"indices must have shape (B, {self.grid[0]}, {self.grid[1]}), got "
                                f"{tuple(indices.shape)}")
        logp = torch.log_softmax(self.logits(indices), 1)
        return logp.gather(1, indices[:, None]).flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` code grids ``(n, H, W)``, one position at a time in raster order (``H W`` passes)."""
        n = check_int("n", n, min=1)
        h, w = self.grid
        device = self.out.weight.device
        k = torch.zeros(n, h, w, dtype=torch.long, device=device)
        for i in range(h):
            for j in range(w):
                probs = torch.softmax(self.logits(k)[:, :, i, j], 1)
                k[:, i, j] = torch.multinomial(probs, 1, generator=generator)[:, 0]
        return k


@torch.no_grad()
def vq_bound(model: VQVAE, prior: CodePrior | None, x: Tensor) -> dict[str, Tensor]:
    """Per-image terms of ``−log p(x) ≤ −log p_θ(x|z_q) − log p(k)``, in nats, each ``(B,)``.

    Returns ``distortion = −log p_θ(x|z_q(x))``, ``rate = −log p(k(x))`` (``HW log K`` under
    the uniform prior when ``prior`` is None, else ``−log p_ψ(k)``), and ``bound``, their sum.
    """
    x = model._images(x)
    indices = model.encode_indices(x)
    distortion = -bernoulli_log_likelihood(model.decode_indices(indices), x)
    if prior is None:
        h, w = indices.shape[1:]
        rate = torch.full_like(distortion, h * w * float(torch.tensor(model.num_codes).log()))
    else:
        rate = -prior.log_prob(indices)
    return {"distortion": distortion, "rate": rate, "bound": distortion + rate}


def check_straight_through(fn: Callable[[Tensor, Tensor], Tensor]) -> bool:
    """Homework check: ``fn(z_e, z_q)`` must return the value of ``z_q`` with the gradient of ``z_e``.

    Compared with :func:`straight_through` on a ``(2, 3, 4, 4)`` grid and a float64 ``(1, 5, 2, 2)``
    one: the values, then the gradients of a fixed weighted sum of the output with respect to
    ``z_e`` (must equal the upstream gradient) and to ``z_q`` (must be zero: the codebook learns
    from its own loss term, not through this path). Prints ``PASS`` or ``FAIL`` with a hint for
    common mistakes; returns a bool; never raises.
    """
    if not callable(fn):
        raise ArgumentTypeError(f"fn must be a function fn(z_e, z_q), got {type(fn).__name__}")

    def case(shape, dtype, seed):
        def make():
            gen = torch.Generator().manual_seed(seed)
            return torch.randn(shape, generator=gen, dtype=dtype), torch.randn(shape, generator=gen, dtype=dtype)
        return make

    cases = [("a (2, 3, 4, 4) float32 grid", case((2, 3, 4, 4), torch.float32, 0), 2),
             ("a (1, 5, 2, 2) float64 grid", case((1, 5, 2, 2), torch.float64, 1), 2)]
    hints = [("that is z_e: the forward value must be the quantised z_q", lambda ze, zq: ze),
             ("z_e and z_q are swapped: z_e + (z_q − z_e).detach()", lambda ze, zq: zq + (ze - zq)),
             ("the difference has the wrong sign: z_e + (z_q − z_e).detach()", lambda ze, zq: 2 * ze - zq)]
    return _compare("straight_through", fn, straight_through, cases, hints, names=("z_e", "z_q"))
