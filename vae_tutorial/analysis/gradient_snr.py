"""Signal-to-noise ratio of the IWAE gradient, for the encoder and for the decoder.

The gradient of the importance-weighted bound ``L_k`` (Burda et al. 2016) is estimated
from one draw of ``k`` codes per example. Rainforth et al. (2018), "Tighter variational
bounds are not necessarily better", show that, for large ``k``, the signal-to-noise
ratio ``SNR = |E[g]| / std(g)`` of that estimate grows like ``√k`` for a decoder
parameter θ but falls like ``1/√k`` for an encoder parameter φ: as the bound tightens,
its dependence on ``q_φ`` fades (``L_∞ = log p_θ(x)`` does not depend on φ), so the
expected encoder gradient shrinks faster than its noise.

:func:`iwae_gradient_snr` measures both from repeated gradient draws, for the IWAE
gradient itself or, with ``estimator=``, for the encoder gradients of STL, DReG or
reweighted wake–sleep (:mod:`vae_tutorial.maths.estimators`; the decoder's gradient is the
IWAE's for all four).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import (
    ArgumentTypeError,
    check_finite_parameters,
    check_images,
    check_int,
    check_model,
)
from ..maths.estimators import _check_estimator, iwae_surrogate
from ..maths.losses import _check_batch, iwae_bound
from ..models.vae import Autoencoder

__all__ = ["iwae_gradient_snr"]


def _flat_grad(grads) -> Tensor:
    return torch.cat([g.reshape(-1) for g in grads]).double()


def iwae_gradient_snr(model, x: Tensor, k: int, repeats: int = 100, *,
                      generator: torch.Generator | None = None, estimator: str = "iwae") -> dict:
    """Per-coordinate SNR of the gradient of the batch-mean ``L_k`` over ``repeats`` draws.

    Each draw is the gradient of ``(1/B) Σ_b L_k(x_b)`` (one set of ``k`` codes per
    example) with respect to every parameter of ``model.encoder`` and of
    ``model.decoder``. From the draws' mean ``m_j`` and standard deviation ``s_j``
    (accumulated in float64, without storing the draws) the SNR of coordinate ``j`` is
    ``|m_j| / s_j``; coordinates whose gradient is exactly constant (``s_j = 0``,
    e.g. behind a dead ReLU) get NaN, to be ignored by the caller (``nanmedian``).
    The model's parameters are not changed.

    Args:
        model: a VAE with ``encoder`` and ``decoder`` modules.
        x: ``(B, ...)`` data batch.
        k: importance samples per example.
        repeats: number of gradient draws ``R ≥ 2``.
        generator: optional generator for the codes.
        estimator: ``"iwae"`` (the gradient of ``L_k`` itself) or ``"stl"``, ``"dreg"``,
            ``"rws"``: the gradient of :func:`~vae_tutorial.maths.estimators.iwae_surrogate` with
            that estimator (models with one Gaussian code only, e.g. ``vt.VAE``). The
            SNR of ``"rws"`` is that of a different direction, ``−∇_φ KL(p_θ(z|x) ‖ q_φ)``.

    Returns:
        A dict with keys ``"encoder"`` and ``"decoder"`` (``(P,)`` float64 SNRs, one per
        parameter coordinate), ``"repeats"`` and ``"estimator"``.
    """
    repeats = check_int("repeats", repeats, min=2)
    k = check_int("k", k, min=1)
    estimator = _check_estimator(estimator)
    check_model(model)
    parts = {part: getattr(model, part, None) for part in ("encoder", "decoder")}
    if not all(isinstance(m, torch.nn.Module) for m in parts.values()):
        missing = " and ".join(p for p, m in parts.items() if not isinstance(m, torch.nn.Module))
        raise ArgumentTypeError(
            f"model: iwae_gradient_snr splits the gradient into the encoder's (φ) and the decoder's (θ), so it "
            f"supports models with encoder and decoder modules (vae_tutorial.VAE, PixelVAE), got a "
            f"{type(model).__name__} without {missing}")
    if hasattr(model, "num_classes"):
        raise ArgumentTypeError(f"model: iwae_gradient_snr supports unconditional models (VAE, PixelVAE), got a "
                                f"conditional {type(model).__name__} (its bound needs labels y)")
    if isinstance(model, Autoencoder):
        raise ArgumentTypeError("model: iwae_gradient_snr needs a posterior q_φ(z|x) to draw codes from; a "
                                "deterministic Autoencoder has none: use a VAE")
    check_finite_parameters(model)
    _check_batch(x, "iwae_gradient_snr")
    x = check_images(model, x, "iwae_gradient_snr: x").to(next(model.parameters()).device)
    groups = {"encoder": [p for p in model.encoder.parameters() if p.requires_grad],
              "decoder": [p for p in model.decoder.parameters() if p.requires_grad]}
    params = groups["encoder"] + groups["decoder"]
    n_enc = sum(p.numel() for p in groups["encoder"])
    total = sq = None
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for _ in range(int(repeats)):
                if estimator == "iwae":
                    loss = iwae_bound(model, x, k, generator=generator).mean()
                else:
                    loss = iwae_surrogate(model, x, k, estimator, generator=generator).mean()
                g = _flat_grad(torch.autograd.grad(loss, params, allow_unused=False))
                total = g if total is None else total + g
                sq = g * g if sq is None else sq + g * g
    finally:
        model.train(was_training)
    r = float(repeats)
    mean = total / r
    var = (sq - r * mean * mean).clamp_min(0) / (r - 1)
    snr = mean.abs() / var.sqrt()
    snr[var == 0] = float("nan")
    return {"encoder": snr[:n_enc].cpu(), "decoder": snr[n_enc:].cpu(), "repeats": int(repeats),
            "estimator": estimator}
