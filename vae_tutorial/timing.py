"""Measuring training speed honestly: warm-up, device synchronisation, samples per second."""
from __future__ import annotations

import contextlib
import time

import torch

from .losses import elbo

__all__ = ["synchronize", "training_throughput"]


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work; without it a GPU timing measures only the kernel launches."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


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
