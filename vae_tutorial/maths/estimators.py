"""Gradient estimators for the importance-weighted bound: IWAE, STL, DReG and reweighted wake–sleep.

Notation as in the book: ``q_φ(z|x) = N(z; μ_φ(x), diag σ_φ²(x))``, ``p_θ(x|z)``,
``p(z) = N(0, I)``. With ``z_i = μ + σ ⊙ ε_i``, ``ε_i ~ N(0, I)`` (``i = 1 … K``), the
log-weights are ``log w_i = log p_θ(x|z_i) + log p(z_i) − log q_φ(z_i|x)``, the
normalised weights ``w̃_i = w_i / Σ_j w_j``, and the one-draw bound is
``L̂_K = log (1/K) Σ_i w_i`` (Burda et al. 2016).

Its total gradient with respect to the encoder's parameters φ has two parts,

    ``∇_φ L̂_K = Σ_i w̃_i [ ∂log w_i/∂z_i · ∂z_i/∂φ  −  ∂log q_φ(z_i|x)/∂φ ]``,

a *pathwise* part through the sample ``z_i`` and a *score* part, the direct dependence of
``log q_φ`` on φ at a fixed ``z_i``. The estimators differ in what they do with it:

* ``"iwae"`` (Burda et al. 2016): both parts; unbiased for ``∇_φ E[L̂_K]``, but its
  signal-to-noise ratio falls like ``1/√K`` (Rainforth et al. 2018).
* ``"stl"``, *sticking the landing* (Roeder et al. 2017): the score part dropped (φ is
  stopped inside ``log q_φ``), ``Σ_i w̃_i ∂log w_i/∂z_i · ∂z_i/∂φ``. Its expectation is 0
  for the score part only at ``K = 1``; for ``K > 1`` it is **biased** (Tucker et al.
  2019). When ``q_φ`` equals the posterior every ``log w_i = log p_θ(x)`` is flat in
  ``z``, so the estimate is exactly 0: no noise at the optimum.
* ``"dreg"``, *doubly reparameterised* (Tucker et al. 2019): the score part rewritten by
  reparameterising it a second time, which gives
  ``Σ_i w̃_i² ∂log w_i/∂z_i · ∂z_i/∂φ`` (φ stopped inside ``log q_φ``): unbiased for the
  same ``∇_φ E[L̂_K]`` as IWAE, and 0 at the exact posterior like STL.
* ``"rws"``, the wake-phase φ update of reweighted wake–sleep (Bornschein & Bengio 2015):
  ``Σ_i w̃_i ∂log q_φ(z_i|x)/∂φ`` with the samples held fixed (no reparameterisation). It
  is not a gradient of ``L_K`` at all but a self-normalised estimate of
  ``−∇_φ KL(p_θ(z|x) ‖ q_φ(z|x))``, the *inclusive* KL, biased at finite ``K``.

For the decoder's parameters θ every estimator uses the IWAE gradient
``Σ_i w̃_i ∇_θ log p_θ(x|z_i)`` (the sleep phase of wake–sleep is not used).

:func:`iwae_surrogate` returns, for any of the four, a ``(B,)`` tensor whose *value* is
``L̂_K`` (the same number as :func:`vae_tutorial.iwae_bound` with the same noise) and whose
*gradient* is the chosen estimator; training maximises its batch mean, like the IWAE.
:func:`check_dreg_surrogate` compares a student's DReG surrogate with it, values and
gradients.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import (
    ArgumentError,
    ArgumentTypeError,
    VAETutorialError,
    check_finite_parameters,
    check_images,
    check_int,
    check_one_latent_vae,
)
from .losses import _check_batch, gaussian_log_likelihood

__all__ = ["ESTIMATORS", "SurrogateCheckError", "check_dreg_surrogate", "iwae_surrogate"]

ESTIMATORS = ("iwae", "stl", "dreg", "rws")
"""The gradient estimators :func:`iwae_surrogate` implements."""


def _check_estimator(estimator) -> str:
    if not isinstance(estimator, str) or estimator not in ESTIMATORS:
        raise ArgumentError(f"estimator must be one of {', '.join(map(repr, ESTIMATORS))}, got {estimator!r}")
    return estimator


def _noise(mu: Tensor, k: int, noise: Tensor | None, generator: torch.Generator | None) -> Tensor:
    shape = (k, *mu.shape)
    if noise is None:
        device = generator.device if generator is not None else mu.device
        return torch.randn(shape, generator=generator, device=device, dtype=mu.dtype).to(mu.device)
    if not isinstance(noise, Tensor) or tuple(noise.shape) != shape:
        got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
        raise ArgumentError(f"noise must be the standard-normal ε of shape (k, B, Z) = {shape}, got {got}")
    return noise.to(mu.device, mu.dtype)


def iwae_surrogate(model, x: Tensor, k: int, estimator: str = "dreg", *,
                   generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
    """``L̂_K(x)`` per example, with the gradient of the chosen estimator (see the module docstring).

    The value is ``log (1/K) Σ_i w_i`` for ``z_i = μ_φ(x) + σ_φ(x) ⊙ ε_i``. The gradient of
    ``Σ_b out_b`` is, per example, ``Σ_i w̃_i ∇_θ log p_θ(x|z_i)`` for the decoder and

    * ``"iwae"``: ``Σ_i w̃_i ∇_φ log w_i`` (the total derivative, pathwise and score);
    * ``"stl"``: ``Σ_i w̃_i ∂log w_i/∂z_i ∂z_i/∂φ`` (φ stopped inside ``log q_φ``);
    * ``"dreg"``: ``Σ_i w̃_i² ∂log w_i/∂z_i ∂z_i/∂φ``;
    * ``"rws"``: ``Σ_i w̃_i ∇_φ log q_φ(z_i|x)`` at fixed ``z_i`` (wake-phase update);

    for the encoder. The weights ``w̃_i`` are constants of the backward pass. The DReG
    factor ``w̃_i²`` is applied by scaling the gradient that reaches ``z_i`` by ``w̃_i``
    (a hook on ``z``), so the decoder's θ still receives ``w̃_i`` once.

    Args:
        model: a :class:`~vae_tutorial.models.vae.VAE` (one Gaussian code, ``encode``,
            ``decode``, ``log_likelihood``).
        x: ``(B, ...)`` data batch.
        k: importance samples ``K ≥ 1`` per example.
        estimator: one of :data:`ESTIMATORS`.
        generator: optional generator for ``ε``.
        noise: optional ``(K, B, Z)`` standard-normal ``ε`` to use instead of drawing it
            (for tests and :func:`check_dreg_surrogate`).

    Returns:
        ``(B,)`` tensor: value ``L̂_K(x)`` in nats, gradient the estimator's. Maximise its
        mean (loss ``−out.mean()``).
    """
    estimator = _check_estimator(estimator)
    k = check_int("k", k, min=1)
    check_one_latent_vae(model, "iwae_surrogate")
    check_finite_parameters(model)
    _check_batch(x, "iwae_surrogate")
    x = check_images(model, x, "iwae_surrogate: x")
    mu, logvar = model.encode(x)  # (B, Z) each
    eps = _noise(mu, k, noise, generator)  # (K, B, Z)
    b = x.shape[0]
    mu_k, lv_k = mu.expand(k, *mu.shape), logvar.expand(k, *logvar.shape)
    z = mu_k + torch.exp(0.5 * lv_k) * eps  # (K, B, Z), differentiable in φ
    if estimator == "rws":
        z = z.detach()  # no reparameterisation: the samples are constants
    xf = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])
    log_px_z = model.log_likelihood(xf, model.decode(z.reshape(k * b, -1))).view(k, b)
    log_pz = gaussian_log_likelihood(z.reshape(k * b, -1), torch.zeros_like(z.reshape(k * b, -1)),
                                     0.0).view(k, b)
    stop_phi = estimator in ("stl", "dreg")
    q_mu, q_lv = (mu_k.detach(), lv_k.detach()) if stop_phi else (mu_k, lv_k)
    log_qz = gaussian_log_likelihood(z.reshape(k * b, -1), q_mu.reshape(k * b, -1),
                                     q_lv.reshape(k * b, -1)).view(k, b)
    log_w = log_px_z + log_pz - log_qz  # (K, B)
    value = torch.logsumexp(log_w.detach(), dim=0) - math.log(k)  # L̂_K, (B,)
    w_tilde = torch.softmax(log_w.detach(), dim=0)  # (K, B), constants of the backward pass
    if estimator == "dreg" and z.requires_grad:
        # ∂/∂z_i of Σ w̃_i log w_i is w̃_i ∂log w_i/∂z_i; one more factor w̃_i gives DReG's w̃_i².
        z.register_hook(lambda grad: grad * w_tilde.unsqueeze(-1))
    if estimator == "rws":
        # θ: Σ w̃ ∇_θ log p_θ(x, z_i); φ: Σ w̃ ∇_φ log q_φ(z_i|x), the wake-phase ascent direction.
        surrogate = (w_tilde * (log_px_z + log_qz)).sum(dim=0)
    else:
        surrogate = (w_tilde * log_w).sum(dim=0)
    return value + (surrogate - surrogate.detach())


# ----------------------------------------------------------------------------- student check

class SurrogateCheckError(VAETutorialError, AssertionError):
    """A student's surrogate differs from the package's (the message says where and by how much)."""


def _check_model(seed: int, likelihood: str):
    from ..models.vae import (  # late: models imports losses and errors only
        VAE,
        MLPDecoder,
        MLPEncoder,
    )

    torch.manual_seed(seed)
    vae = VAE(MLPEncoder((12,), [10], 3), MLPDecoder(3, [10], (12,)), likelihood,
              **({"gaussian_logvar": -1.0} if likelihood == "gaussian" else {})).double()
    with torch.no_grad():
        for p in vae.parameters():
            p.mul_(1.5)  # weights far from the initialisation: unequal importance weights
    return vae


def check_dreg_surrogate(fn, *, rtol: float = 1e-6, atol: float = 1e-8) -> bool:
    """Compare your DReG surrogate ``fn(model, x, k, noise) -> (B,)`` with the package's.

    On small float64 MLP VAEs (Bernoulli and Gaussian decoders; ``K = 1, 3, 8``; a batch
    of 5), with the same standard-normal ``noise`` ε of shape ``(K, B, Z)`` given to both,
    it checks, in this order: the shape ``(B,)``; the values (they must equal
    ``L̂_K = log (1/K) Σ_i w_i``); the gradient of ``Σ_b out_b`` with respect to the
    decoder's parameters θ (the IWAE gradient ``Σ_i w̃_i ∇_θ log p_θ(x|z_i)``); and with
    respect to the encoder's parameters φ (DReG, ``Σ_i w̃_i² ∂log w_i/∂z_i ∂z_i/∂φ``).
    The first difference raises :class:`SurrogateCheckError`, naming the quantity, the case
    and the largest difference, with a hint for the usual mistakes (``w̃`` instead of
    ``w̃²``: the IWAE-STL gradient; φ not stopped inside ``log q_φ``: the score term kept;
    weights not detached).

    Returns:
        ``True`` when everything matches (and prints ``PASS``).
    """
    if not callable(fn):
        raise ArgumentTypeError(f"fn must be a function fn(model, x, k, noise) -> (B,), got {type(fn).__name__}")
    for likelihood in ("bernoulli", "gaussian"):
        for k in (1, 3, 8):
            model = _check_model(k, likelihood)
            g = torch.Generator().manual_seed(100 + k)
            x = torch.rand(5, 12, generator=g, dtype=torch.float64)
            if likelihood == "bernoulli":
                x = x.round()
            noise = torch.randn(k, 5, 3, generator=g, dtype=torch.float64)
            case = f"{likelihood} decoder, k = {k}"
            enc = list(model.encoder.parameters())
            dec = list(model.decoder.parameters())
            ref = iwae_surrogate(model, x, k, "dreg", noise=noise.clone())
            ref_grads = torch.autograd.grad(ref.sum(), enc + dec)
            try:
                got = fn(model, x, k, noise.clone())
            except Exception as exc:  # the student's code: report, do not hide
                raise SurrogateCheckError(f"{case}: your function raised {type(exc).__name__}: {exc}") from exc
            if not isinstance(got, Tensor) or tuple(got.shape) != (5,):
                shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
                raise SurrogateCheckError(f"{case}: expected a (B,) = (5,) tensor, one value per example "
                                          f"(do not average over the batch), got {shape}")
            _compare(case, "values", got.detach().double(), ref.detach(), rtol, atol,
                     "the value must be L̂_K = logsumexp(log w) − log K; a surrogate that only has the "
                     "right gradient is not enough (return value.detach() + s − s.detach() for your surrogate s)")
            if not got.requires_grad:
                raise SurrogateCheckError(f"{case}: your output has no gradient (computed under no_grad, "
                                          "or everything detached)")
            grads = torch.autograd.grad(got.sum(), enc + dec, allow_unused=True)
            grads = [torch.zeros_like(p) if gr is None else gr for gr, p in zip(grads, enc + dec)]
            n = len(enc)
            _compare(case, "decoder gradient (θ)", _cat(grads[n:]), _cat(ref_grads[n:]), rtol, atol,
                     "θ must get the IWAE gradient Σ w̃_i ∇_θ log p_θ(x|z_i), with w̃ once, not w̃²; "
                     "weights w̃ must be detached")
            _compare(case, "encoder gradient (φ)", _cat(grads[:n]), _cat(ref_grads[:n]), rtol, atol,
                     _encoder_hint(model, x, k, noise, _cat(grads[:n])))
    print("PASS: values, decoder (θ) and encoder (φ) gradients match the DReG surrogate")
    return True


def _cat(grads) -> Tensor:
    return torch.cat([g.reshape(-1) for g in grads]).double()


def _compare(case: str, what: str, got: Tensor, want: Tensor, rtol: float, atol: float, hint: str) -> None:
    if not bool(torch.isfinite(got).all()):
        raise SurrogateCheckError(f"{case}: your {what} contain NaN or infinite entries")
    if not torch.allclose(got, want, rtol=rtol, atol=atol):
        diff = (got - want).abs().max().item()
        raise SurrogateCheckError(f"{case}: your {what} differ from the reference by up to {diff:.3g} "
                                  f"(largest reference entry {want.abs().max().item():.3g}). Hint: {hint}")


def _encoder_hint(model, x, k, noise, got: Tensor) -> str:
    enc = list(model.encoder.parameters())
    for name, hint in (("stl", "you used w̃_i, the sticking-the-landing (STL) gradient; DReG squares it, w̃_i²"),
                       ("iwae", ("you kept the score term: stop φ inside log q_φ(z|x) (detach μ and log σ² "
                                "there, not z)"))):
        other = _cat(torch.autograd.grad(iwae_surrogate(model, x, k, name, noise=noise.clone()).sum(), enc))
        if torch.allclose(got, other, rtol=1e-6, atol=1e-8):
            return hint
    return "φ must get Σ_i w̃_i² ∂log w_i/∂z_i ∂z_i/∂φ with w̃ detached and φ stopped inside log q_φ(z|x)"
