"""Measuring training cost honestly.

Two measures, for two questions. :func:`training_step_flops` (and :func:`evaluation_flops`
for the likelihood estimate) *counts* the arithmetic of a training step: the same number on every CPU and GPU, so it can fix a budget ("equal
compute") that does not depend on the machine or on its load. :func:`training_throughput`
*times* complete steps (warm-up, device synchronisation, samples per second): what the
arithmetic costs on this machine, which differs between devices and from run to run.
"""
from __future__ import annotations

import contextlib
import time

import torch

from ..errors import ArgumentError
from ..maths.losses import elbo, estimate_log_likelihood, iwae_bound

__all__ = ["synchronize", "training_step_flops", "evaluation_flops", "training_throughput"]


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work; without it a GPU timing measures only the kernel launches."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def training_step_flops(model: torch.nn.Module, x: torch.Tensor, *, objective: str = "elbo",
                        iwae_k: int = 5) -> int:
    """Floating-point operations of one training step's forward and backward pass on ``x``.

    The step is the one :func:`~vae_tutorial.training.train.fit` takes: the loss
    ``−ELBO = −E_q[log p_θ(x|z)] + KL(q_φ(z|x) ‖ p(z))`` (or, with ``objective="iwae"``, the
    negative IWAE bound ``−L_k`` with ``k = iwae_k``) averaged over the ``(B, ...)`` batch
    ``x``, then ``backward()``. PyTorch's ``torch.utils.flop_counter.FlopCounterMode``
    counts the matrix products and convolutions, forward and backward, from their shapes;
    one multiply-add counts as two operations. Element-wise operations (activations, the
    loss itself, the optimiser's update) are not counted. For a model whose operations do
    not depend on the data's values (every model in the book) the count is exact and
    deterministic: the same on every CPU and GPU, whatever the machine's load. It grows
    linearly with ``B``; divide by ``B`` for the count per image.

    The model runs once on its own device (``x`` is moved there). Its parameters, its
    gradients and the global random state are left as they were: the reparameterisation
    noise comes from a private generator.
    """
    if objective not in ("elbo", "iwae"):
        raise ArgumentError(f"objective must be 'elbo' or 'iwae', got {objective!r}")
    x = x.to(_device(model, x))

    def loss(noise):
        if objective == "iwae":
            return -iwae_bound(model, x, iwae_k, generator=noise).float().mean()
        return -elbo(model, x, generator=noise).elbo.float().mean()

    return _count(model, x, loss, backward=True)


def evaluation_flops(model: torch.nn.Module, x: torch.Tensor, k: int) -> int:
    """Floating-point operations of the importance-sampled estimate ``L_k`` of ``log p_θ(x)``
    on the ``(B, ...)`` batch ``x`` (:func:`~vae_tutorial.maths.losses.estimate_log_likelihood`):
    one encoder pass and ``k`` decoder passes per image, counted as
    :func:`training_step_flops` counts them (no backward pass)."""
    x = x.to(_device(model, x))

    def bound(noise):
        return estimate_log_likelihood(model, x, k, generator=noise)

    with torch.no_grad():
        return _count(model, x, bound, backward=False)


def _device(model: torch.nn.Module, x: torch.Tensor) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else x.device


def _count(model: torch.nn.Module, x: torch.Tensor, fn, backward: bool) -> int:
    """Run ``fn(generator)`` (and its ``backward()``) under a FLOP counter; leave the model as it was."""
    from torch.utils.flop_counter import FlopCounterMode  # imported on use: it is large

    params = list(model.parameters())
    device = _device(model, x)
    saved_grads = [p.grad for p in params]
    was_training = model.training
    model.train(backward)
    try:
        for p in params:
            p.grad = None
        with FlopCounterMode(display=False) as counter:
            out = fn(torch.Generator(device).manual_seed(0))
            if backward:
                out.backward()
    finally:
        for p, g in zip(params, saved_grads):
            p.grad = g
        model.train(was_training)
    return int(counter.get_total_flops())


def training_throughput(model: torch.nn.Module, x: torch.Tensor, *, steps: int = 20, warmup: int = 3,
                        device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None,
                        lr: float = 1e-3) -> float:
    """Samples per second of full training steps (−ELBO, backward, Adam) on one batch ``x``.

    ``x`` is ``(B, ...)``; the step is timed ``steps`` times after ``warmup`` untimed
    steps, with the device synchronised before reading the clock. With
    ``autocast_dtype`` (e.g. ``torch.bfloat16``) the forward pass runs under
    ``torch.autocast`` (mixed precision). The model is trained in place: pass a copy.
    """
    device = torch.device(device)
    model = model.to(device).train()
    x = x.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    cast = (torch.autocast(device_type=device.type, dtype=autocast_dtype)
            if autocast_dtype is not None else contextlib.nullcontext())

    def step():
        with cast:
            loss = -elbo(model, x).elbo.float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps * x.shape[0] / (time.perf_counter() - t0)
