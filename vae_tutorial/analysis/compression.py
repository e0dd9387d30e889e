"""Lossless compression with a VAE: a small rANS coder, bits-back coding, and baselines.

Notation: encoder ``q_φ(z|x)``, decoder ``p_θ(x|z)`` (Bernoulli pixels), prior ``p(z) = N(0, I)``.

Bits-back coding (Hinton & van Camp 1993; Frey & Hinton 1997) with asymmetric numeral
systems (BB-ANS, Townsend et al. 2019) sends an image ``x`` in three stack operations:

1. *pop* ``z̄ ~ Q(z̄|x)`` off the message (decoding with the posterior: this *reads*
   ``−log₂ Q(z̄|x)`` bits of earlier message as randomness),
2. *push* ``x`` with ``p_θ(x|z̄)``  (``−log₂ P(x|z̄)`` bits),
3. *push* ``z̄`` with the prior      (``−log₂ P(z̄)`` bits).

``Q`` and ``P`` are the posterior and prior, discretised to ``2**latent_bits`` buckets of
equal prior mass per latent dimension. The net growth of the message is
``−log₂ P(x|z̄) − log₂ P(z̄) + log₂ Q(z̄|x)``, whose average over ``z̄ ~ Q`` is the negative
ELBO of the discretised model in bits. The receiver runs the steps backwards and, once it
has ``x``, rebuilds ``Q(·|x)`` and pushes ``z̄`` back: the bits read in step 1 come back.

Step 1 needs bits to read. For the first image the message is empty, so the sender must
start from *clean* random bits (``initial_bits``); they are sent too, and are the fixed
overhead of the scheme, paid once per message rather than once per image.

The honest baseline without any refund is the deterministic *two-part code* of
:func:`two_part_codelength`: send one grid cell chosen from ``μ_φ(x)``, then the pixels.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..errors import (
    ArgumentError,
    DataError,
    check_finite_parameters,
    check_float,
    check_images,
    check_int,
    check_one_latent_vae,
    check_seed,
    check_tensor,
)

__all__ = [
    "ANSStack", "BitsBackResult", "TwoPartCode", "bernoulli_frequencies", "bits_back_decode",
    "bits_back_encode", "gaussian_bucket_frequencies", "lossless_baselines",
    "prior_bucket_centres", "two_part_codelength",
]

_WORD = 32                  # the message grows by 32-bit words
_LOW = 1 << _WORD           # the head of the stack stays in [2^32, 2^64)


class ANSStack:
    """A range asymmetric numeral system (rANS) coder: a stack of symbols.

    The state is a 64-bit *head* in ``[2^32, 2^64)`` plus a list of 32-bit *words*. A symbol
    with frequency ``freq`` out of ``2**prec`` (start ``start`` in the cumulative table) costs
    ``prec − log₂ freq`` bits, up to the rounding of the head. ``push`` encodes, ``pop``
    decodes, last in, first out. When ``pop`` needs more bits than the message holds it draws
    *clean* 32-bit words from ``rng`` and counts them in ``clean_words``.

    Args:
        rng: a ``numpy.random.Generator`` for the initial head and any clean words.
    """

    def __init__(self, rng: np.random.Generator | None = None, head: int | None = None,
                 words: list[int] | None = None):
        self.rng = rng if rng is not None else np.random.default_rng(0)
        if head is None:   # 64 clean random bits with the top word non-zero
            head = (int(self.rng.integers(1, _LOW)) << _WORD) | int(self.rng.integers(0, _LOW))
        self.head = int(head)
        if not _LOW <= self.head < _LOW * _LOW:
            raise ArgumentError(f"head must lie in [2^32, 2^64), got {self.head}")
        self.words = list(words) if words is not None else []
        self.clean_words = 0

    def push(self, start: int, freq: int, prec: int) -> None:
        """Encode a symbol occupying ``[start, start + freq)`` of ``2**prec`` (1 ≤ freq)."""
        if freq < 1 or prec > _WORD:
            raise ArgumentError(f"need freq ≥ 1 and prec ≤ 32, got freq={freq}, prec={prec} (pixel_bits and "
                                "posterior_bits must be at most 32)")
        if self.head >= freq << (2 * _WORD - prec):       # head would overflow: spill a word
            self.words.append(self.head & (_LOW - 1))
            self.head >>= _WORD
        self.head = ((self.head // freq) << prec) + self.head % freq + start

    def peek(self, prec: int) -> int:
        """The slot ``r ∈ [0, 2**prec)`` that selects the next symbol to pop."""
        return self.head & ((1 << prec) - 1)

    def pop(self, start: int, freq: int, prec: int) -> None:
        """Remove the symbol whose range ``[start, start + freq)`` holds :meth:`peek`."""
        r = self.peek(prec)
        if not start <= r < start + freq:
            raise ArgumentError(f"the slot {r} is not in the symbol's range [{start}, {start + freq}): this message "
                                "was not encoded with these probabilities")
        self.head = freq * (self.head >> prec) + r - start
        if self.head < _LOW:                               # refill from the message
            if self.words:
                word = self.words.pop()
            else:                                          # no bits left: clean random bits
                word = int(self.rng.integers(0, _LOW))
                self.clean_words += 1
            self.head = (self.head << _WORD) | word

    def bit_length(self) -> int:
        """Length of the message in bits: the 64-bit head plus 32 bits per word."""
        return 2 * _WORD + _WORD * len(self.words)

    def state(self) -> tuple[int, tuple[int, ...]]:
        return self.head, tuple(self.words)


def _quantise(probs: np.ndarray, prec: int) -> np.ndarray:
    """Integer frequencies ``≥ 1`` summing to ``2**prec`` that approximate ``probs`` (last axis)."""
    total = 1 << prec
    k = probs.shape[-1]
    freq = np.floor(probs * (total - k)).astype(np.int64) + 1
    short = total - freq.sum(-1)                          # ≥ 0; give the rest to the mode
    idx = np.argmax(probs, axis=-1)
    np.put_along_axis(freq, idx[..., None], np.take_along_axis(freq, idx[..., None], -1)
                      + short[..., None], -1)
    return freq


def prior_bucket_centres(latent_bits: int) -> np.ndarray:
    """Centres of the ``2**latent_bits`` buckets of equal mass under ``N(0, 1)``: ``Φ⁻¹((i+½)/K)``."""
    k = 1 << check_int("latent_bits", latent_bits, min=1, max=16)
    u = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    return torch.special.ndtri(u).numpy()


def gaussian_bucket_frequencies(mu: np.ndarray, sigma: np.ndarray, latent_bits: int,
                                posterior_bits: int) -> np.ndarray:
    """Discretised posterior ``Q(bucket | x)`` for each latent dimension, as integer frequencies.

    Bucket ``i`` is ``[Φ⁻¹(i/K), Φ⁻¹((i+1)/K))`` with ``K = 2**latent_bits`` (each has prior
    mass ``1/K``); its mass under ``N(μ_j, σ_j²)`` is a difference of normal CDFs.

    Args:
        mu, sigma: ``(Z,)`` posterior means and standard deviations (float64).

    Returns:
        ``(Z, K)`` int64 frequencies, each ``≥ 1``, each row summing to ``2**posterior_bits``.
    """
    latent_bits = check_int("latent_bits", latent_bits, min=1, max=16)
    posterior_bits = check_int("posterior_bits", posterior_bits, max=32)
    k = 1 << latent_bits
    if posterior_bits < latent_bits + 2:
        raise ArgumentError(f"posterior_bits must exceed latent_bits by at least 2, got posterior_bits="
                            f"{posterior_bits}, latent_bits={latent_bits}")
    mu, sigma = check_tensor("mu", mu).reshape(-1), check_tensor("sigma", sigma).reshape(-1)
    if mu.shape != sigma.shape or not bool((sigma > 0).all()):
        raise ArgumentError(f"mu and sigma must be (Z,) vectors of one length with sigma > 0, got shapes "
                            f"{tuple(mu.shape)} and {tuple(sigma.shape)}, smallest sigma "
                            f"{float(sigma.min()) if sigma.numel() else 'none'}")
    edges = torch.special.ndtri(torch.arange(1, k, dtype=torch.float64) / k)       # (K−1,)
    mu = torch.as_tensor(mu, dtype=torch.float64)[:, None]
    sigma = torch.as_tensor(sigma, dtype=torch.float64)[:, None]
    cdf = torch.special.ndtr((edges[None, :] - mu) / sigma)                         # (Z, K−1)
    zeros, ones = torch.zeros_like(mu), torch.ones_like(mu)
    mass = torch.diff(torch.cat([zeros, cdf, ones], dim=1), dim=1).clamp_min(0.0)
    return _quantise(mass.numpy(), posterior_bits)


def bernoulli_frequencies(logits: Tensor, pixel_bits: int) -> np.ndarray:
    """Integer frequency of the pixel value 1 out of ``2**pixel_bits``, clipped to ``[1, 2**pixel_bits − 1]``.

    Args:
        logits: ``(D,)`` decoder logits of ``p_θ(x_i = 1 | z)``.
    """
    total = 1 << check_int("pixel_bits", pixel_bits, min=2, max=32)
    p1 = torch.sigmoid(check_tensor("logits", logits).detach().double().flatten()).cpu().numpy()
    return np.clip(np.rint(p1 * total).astype(np.int64), 1, total - 1)


@dataclass
class BitsBackResult:
    """What :func:`bits_back_encode` returns.

    ``message`` is the final coder state; ``bits`` its length; ``clean_bits`` the random bits
    the coder had to draw because the message was empty (the initial head included);
    ``ideal_bits`` the per-image ``−log₂ P(x|z̄) − log₂ P(z̄) + log₂ Q(z̄|x)`` of the ``z̄`` drawn,
    and its three parts per image: ``prior_bits`` (``−log₂ P(z̄)``), ``pixel_bits``
    (``−log₂ P(x|z̄)``) and ``refund_bits`` (``−log₂ Q(z̄|x)``, the bits read back);
    ``lengths[n]`` is the message length in bits after ``n + 1`` images.
    """

    message: tuple[int, tuple[int, ...]]
    bits: int
    clean_bits: int
    ideal_bits: list[float] = field(default_factory=list)
    prior_bits: list[float] = field(default_factory=list)
    pixel_bits: list[float] = field(default_factory=list)
    refund_bits: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)


def _bernoulli_vae(model, what: str) -> None:
    """Refuse a model ``what`` cannot code with (before any work): it needs one Gaussian code
    with prior N(0, I), a Bernoulli decoder ``decode(z)`` and finite weights."""
    check_one_latent_vae(model, what)
    if getattr(model, "likelihood", None) != "bernoulli":
        raise ArgumentError(f"model: {what} codes binary data with a Bernoulli decoder, got "
                            f"likelihood={getattr(model, 'likelihood', None)!r}; train a VAE with "
                            "likelihood='bernoulli' on binarised images")
    check_finite_parameters(model)


def _binary_images(model, images, what: str) -> Tensor:
    """``images`` as a non-empty tensor of 0/1 values shaped as the model reads them."""
    if not isinstance(images, Tensor):
        try:
            images = torch.as_tensor(images)
        except (TypeError, ValueError, RuntimeError):
            raise ArgumentError(f"images: {what} needs a tensor of binary images, got "
                                f"{type(images).__name__}") from None
    if images.dim() < 2 or images.shape[0] == 0:
        raise DataError(f"images: {what} needs a non-empty batch (N, ...) of images, got shape "
                        f"{tuple(images.shape)}")
    images = check_images(model, images, f"{what}: images")
    if not bool(((images == 0) | (images == 1)).all()):
        odd = images[(images != 0) & (images != 1)].flatten()[0].item()
        raise DataError(f"images: {what} codes binary images losslessly, but a pixel is {odd:g}, "
                        "neither 0 nor 1; binarise the images first (vae_tutorial.training.data.binarize)")
    return images


def _on_cpu(model, what: str) -> None:
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ArgumentError(f"model: {what} runs on the CPU (the receiver must compute bit-identical "
                            f"probabilities), got a model on {device}; pass model.cpu()")


def _posterior_freqs(model, x: Tensor, latent_bits: int, posterior_bits: int) -> np.ndarray:
    # Batch of one, on both sides: the receiver must compute bit-identical frequencies.
    mu, logvar = model.encode(x[None])
    sigma = (0.5 * logvar.double()).exp()
    return gaussian_bucket_frequencies(mu[0].double().numpy(), sigma[0].numpy(), latent_bits,
                                       posterior_bits)


def _pixel_freqs(model, buckets: list[int], centres: np.ndarray, pixel_bits: int) -> np.ndarray:
    z = torch.as_tensor(centres[buckets], dtype=next(model.parameters()).dtype)[None]
    return bernoulli_frequencies(model.decode(z)[0], pixel_bits)


def _precisions(latent_bits, posterior_bits, pixel_bits) -> tuple[int, int, int]:
    latent_bits = check_int("latent_bits", latent_bits, min=1, max=16)
    posterior_bits = check_int("posterior_bits", posterior_bits, min=latent_bits + 2, max=32)
    pixel_bits = check_int("pixel_bits", pixel_bits, min=2, max=32)
    return latent_bits, posterior_bits, pixel_bits


@torch.no_grad()
def bits_back_encode(model, images: Tensor, *, latent_bits: int = 12, posterior_bits: int = 24,
                     pixel_bits: int = 16, seed: int = 0) -> BitsBackResult:
    """Compress binary images with BB-ANS and a Bernoulli VAE (on the CPU).

    Args:
        model: a trained ``VAE`` with ``likelihood="bernoulli"``, in eval mode, on the CPU.
        images: ``(N, ...)`` tensor of 0/1 values; each image is encoded in turn.
        latent_bits: ``log₂`` of the number of buckets per latent dimension.
        posterior_bits, pixel_bits: precision of the quantised ``Q`` and pixel probabilities.
        seed: seeds the clean random bits.

    Returns:
        A :class:`BitsBackResult`; :func:`bits_back_decode` inverts it exactly.
    """
    _bernoulli_vae(model, "bits_back_encode")
    latent_bits, posterior_bits, pixel_bits = _precisions(latent_bits, posterior_bits, pixel_bits)
    seed = check_seed(seed)
    _on_cpu(model, "bits_back_encode")
    images = _binary_images(model, images, "bits_back_encode")
    centres = prior_bucket_centres(latent_bits)
    stack = ANSStack(np.random.default_rng(seed))
    parts: dict[str, list] = {"prior_bits": [], "pixel_bits": [], "refund_bits": [], "lengths": []}
    for x in images:
        xbits = x.flatten().round().to(torch.int64).numpy()
        qf = _posterior_freqs(model, x, latent_bits, posterior_bits)
        cum = np.cumsum(qf, axis=1) - qf                                   # starts
        buckets, refund, px = [], 0.0, 0.0
        for j in range(qf.shape[0]):                 # 1. pop z̄_j ~ Q: read bits as randomness
            r = stack.peek(posterior_bits)
            b = int(np.searchsorted(cum[j], r, side="right") - 1)
            stack.pop(int(cum[j, b]), int(qf[j, b]), posterior_bits)
            buckets.append(b)
            refund += posterior_bits - math.log2(qf[j, b])                 # −log₂ Q
        f1 = _pixel_freqs(model, buckets, centres, pixel_bits)
        total = 1 << pixel_bits
        for i, v in enumerate(xbits):                # 2. push x with p(x|z̄)
            start, freq = (total - f1[i], f1[i]) if v else (0, total - f1[i])
            stack.push(int(start), int(freq), pixel_bits)
            px += pixel_bits - math.log2(freq)
        for b in buckets:                            # 3. push z̄ with the prior (1/K each)
            stack.push(b, 1, latent_bits)
        parts["prior_bits"].append(float(latent_bits * len(buckets)))
        parts["pixel_bits"].append(px)
        parts["refund_bits"].append(refund)
        parts["lengths"].append(stack.bit_length())
    ideal = [a + b - c for a, b, c in zip(parts["prior_bits"], parts["pixel_bits"], parts["refund_bits"])]
    return BitsBackResult(stack.state(), stack.bit_length(), 2 * _WORD + _WORD * stack.clean_words,
                          ideal, **parts)


@torch.no_grad()
def bits_back_decode(model, message: tuple[int, tuple[int, ...]], n: int, shape: tuple[int, ...], *,
                     latent_bits: int = 12, posterior_bits: int = 24, pixel_bits: int = 16,
                     ) -> tuple[Tensor, tuple[int, tuple[int, ...]]]:
    """Invert :func:`bits_back_encode`: returns the ``(n, *shape)`` images and the state left over.

    After the last (= first encoded) image the state is the sender's clean bits again:
    every bit borrowed as randomness has been given back.
    """
    _bernoulli_vae(model, "bits_back_decode")
    latent_bits, posterior_bits, pixel_bits = _precisions(latent_bits, posterior_bits, pixel_bits)
    n = check_int("n", n, min=1)
    _on_cpu(model, "bits_back_decode")
    try:
        shape = tuple(check_int(f"shape[{i}]", v, min=1) for i, v in enumerate(shape))
    except TypeError:
        raise ArgumentError(f"shape must be the shape of one image, e.g. (1, 28, 28), got {shape!r}") from None
    check_images(model, torch.zeros((1, *shape)), "bits_back_decode: shape")
    if not (isinstance(message, (tuple, list)) and len(message) == 2
            and isinstance(message[1], (tuple, list))):
        raise ArgumentError("message must be the (head, words) state of BitsBackResult.message, got "
                            f"{type(message).__name__}")
    centres = prior_bucket_centres(latent_bits)
    head, words = message
    stack = ANSStack(head=head, words=list(words))
    z_dim = model.latent_dim
    total = 1 << pixel_bits
    d = int(np.prod(shape))
    out = []
    for _ in range(n):
        buckets = []
        for _j in range(z_dim):                      # 3⁻¹. pop z̄ with the prior
            b = stack.peek(latent_bits)
            stack.pop(b, 1, latent_bits)
            buckets.append(b)
        buckets.reverse()
        f1 = _pixel_freqs(model, buckets, centres, pixel_bits)
        xbits = np.zeros(d, dtype=np.int64)
        for i in reversed(range(d)):                 # 2⁻¹. pop x with p(x|z̄)
            f0 = total - int(f1[i])
            if stack.peek(pixel_bits) < f0:
                stack.pop(0, f0, pixel_bits)
            else:
                stack.pop(f0, int(f1[i]), pixel_bits)
                xbits[i] = 1
        dtype = next(model.parameters()).dtype
        x = torch.as_tensor(xbits, dtype=dtype).reshape(shape)
        qf = _posterior_freqs(model, x, latent_bits, posterior_bits)
        cum = np.cumsum(qf, axis=1) - qf
        for j in reversed(range(z_dim)):             # 1⁻¹. push z̄ back with Q: bits back
            stack.push(int(cum[j, buckets[j]]), int(qf[j, buckets[j]]), posterior_bits)
        out.append(x)
    out.reverse()
    return torch.stack(out), stack.state()


@dataclass
class TwoPartCode:
    """What :func:`two_part_codelength` returns: ideal codelengths in bits, one per image.

    ``cells`` is the ``(N, Z)`` integer grid index ``k`` of each image's cell (``z̄ = kδ``);
    ``latent_bits`` the ``(N,)`` bits ``−log₂ P(z̄)`` for the cell, ``pixel_bits`` the ``(N,)``
    bits ``−log₂ p_θ(x|z̄)`` for the pixels, and ``bits`` their sum (all float64).
    """

    delta: float
    cells: Tensor
    latent_bits: Tensor
    pixel_bits: Tensor

    @property
    def bits(self) -> Tensor:
        """``(N,)`` total codelength ``−log₂ P(z̄) − log₂ p_θ(x|z̄)`` in bits per image."""
        return self.latent_bits + self.pixel_bits


def _normal_interval_mass(lo: Tensor, hi: Tensor) -> Tensor:
    """``Φ(hi) − Φ(lo)`` under ``N(0, 1)``, computed in the tail nearer the interval so that
    cells far from 0 keep their (tiny) mass instead of rounding to 0."""
    upper = lo > 0                       # whole interval right of 0: use Φ(−lo) − Φ(−hi)
    return torch.where(upper, torch.special.ndtr(-lo) - torch.special.ndtr(-hi),
                       torch.special.ndtr(hi) - torch.special.ndtr(lo))


@torch.no_grad()
def two_part_codelength(model, images: Tensor, delta: float, *, batch_size: int = 1000
                        ) -> TwoPartCode:
    """Codelength of the deterministic two-part code of binary images with a Bernoulli VAE.

    The sender rounds the posterior mean to a grid of width ``δ`` in every latent
    coordinate, ``z̄_j = δ·round(μ_φ(x)_j / δ)``, sends that *cell* with the prior's
    probability of it, then sends the pixels with the decoder at the cell's centre::

        P(z̄)  = Π_j [Φ(z̄_j + δ/2) − Φ(z̄_j − δ/2)]          (p(z) = N(0, I), Φ its CDF)
        L(x)  = −log₂ P(z̄) − log₂ p_θ(x | z̄)                  bits per image.

    ``z̄`` is a function of ``x``, so no random choice is made and nothing needs to be
    refunded: the receiver decodes ``z̄`` with the prior and ``x`` with ``p_θ(x|z̄)``, and
    an entropy coder (e.g. :class:`ANSStack`) reaches ``L(x)`` up to its rounding, with no
    clean bits. This is the honest no-refund baseline for bits-back coding. What the refund
    saves is the entropy of the quantised posterior: for any distribution ``Q`` over the
    cells, the bits-back codelength is ``E_Q[L(z̄)] − H(Q)``, the average two-part
    codelength of a cell drawn from ``Q`` minus the bits that drawing it costs; a two-part
    code avoids most of that waste by choosing one cell deterministically on a coarse grid,
    at the price of a less precise ``z̄``. The grid width trades the two
    parts: as ``δ → 0``, ``P(z̄) ≈ p(z̄)·δ^Z``, so each halving of ``δ`` adds about one bit
    per latent coordinate to the cell; a large ``δ`` moves ``z̄`` away from ``μ_φ(x)`` and
    makes the pixels expensive.

    Args:
        model: a ``VAE`` with ``likelihood="bernoulli"``.
        images: ``(N, ...)`` tensor of 0/1 values.
        delta: the grid width ``δ > 0``.
        batch_size: images per forward pass (memory only; the result does not depend on it).

    Returns:
        A :class:`TwoPartCode` with per-image ``latent_bits``, ``pixel_bits`` and ``bits``.
    """
    delta = check_float("delta", delta, min=0, min_open=True)
    batch_size = check_int("batch_size", batch_size, min=1)
    _bernoulli_vae(model, "two_part_codelength")  # a probability mass function of binary pixels
    images = _binary_images(model, images, "two_part_codelength")
    device = next(model.parameters()).device
    cells, latent, pixels = [], [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        mu, _ = model.encode(x)
        k = torch.round(mu.double() / delta)                      # (B, Z) cell indices
        zbar = k * delta
        mass = _normal_interval_mass(zbar - delta / 2, zbar + delta / 2)
        latent.append(-torch.log2(mass).sum(1))
        logits = model.decode(zbar.to(mu.dtype))
        pixels.append(-model.log_likelihood(x, logits).double() / math.log(2))
        cells.append(k.to(torch.int64))
    return TwoPartCode(delta, torch.cat(cells).cpu(), torch.cat(latent).cpu(),
                       torch.cat(pixels).cpu())


def lossless_baselines(images: np.ndarray) -> dict[str, float]:
    """Codelengths of general-purpose and image compressors on binary images, in bits per image.

    Args:
        images: ``(N, H, W)`` booleans.

    Returns:
        ``{"<codec>, per image": ..., "<codec>, whole set": ...}`` for zlib, gzip, bz2, lzma
        (all at their strongest setting, on the pixels packed 8 per byte with
        ``numpy.packbits``) and PNG (1-bit greyscale, Pillow's ``optimize=True``). *Per image*
        compresses each image on its own (headers included, as one file per image); *whole
        set* compresses the ``N`` images as one stream (one ``N·H × W`` PNG) and divides by ``N``.
    """
    from PIL import Image  # Pillow ships with matplotlib

    raw = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    if raw.ndim != 3 or 0 in raw.shape:
        raise DataError(f"images: lossless_baselines needs a non-empty (N, H, W) array of binary images, got "
                        f"shape {raw.shape}; drop the channel dimension (images[:, 0])")
    if not np.isin(raw, (0, 1)).all():
        raise DataError("images: lossless_baselines compresses binary images, but some pixels are neither 0 nor "
                        "1 (False/True); binarise them first (vae_tutorial.training.data.binarize)")
    images = raw.astype(bool)
    n = len(images)

    def png(a: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(a).convert("1").save(buf, format="PNG", optimize=True)
        return buf.getvalue()

    codecs = {
        "zlib": lambda b: zlib.compress(b, 9),
        "gzip": lambda b: gzip.compress(b, 9, mtime=0),
        "bz2": lambda b: bz2.compress(b, 9),
        # xz container, strongest preset; a 1 MiB dictionary (larger than any input here)
        # gives the same output as the default 64 MiB one without allocating it 1,000 times.
        "lzma": lambda b: lzma.compress(b, filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20,
                                                     "preset": 9 | lzma.PRESET_EXTREME}]),
    }
    packed = [np.packbits(a).tobytes() for a in images]
    out: dict[str, float] = {}
    for name, fn in codecs.items():
        out[f"{name}, per image"] = 8 * float(np.mean([len(fn(p)) for p in packed]))
        out[f"{name}, whole set"] = 8 * len(fn(b"".join(packed))) / n
    out["PNG, per image"] = 8 * float(np.mean([len(png(a)) for a in images]))
    out["PNG, whole set"] = 8 * len(png(images.reshape(-1, images.shape[-1]))) / n
    return out
