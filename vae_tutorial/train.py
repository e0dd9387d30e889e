"""Training: one model, one loss (−ELBO averaged over the batch), one optimiser.

Reads top to bottom: :class:`History` (what we record), the β schedule, checkpoints,
then :func:`fit`. The data set is moved to the device once as tensors and shuffled
by an index permutation each epoch, so the hot loop has no per-sample Python.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from .data import binarize
from .device import get_device
from .losses import elbo, iwae_bound

__all__ = ["History", "fit", "linear_warmup", "load_checkpoint", "save_checkpoint", "dataset_tensors",
           "NonFiniteLossError"]

Schedule = Callable[[float], float]


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss becomes NaN or infinite."""


@dataclass
class History:
    """Per-epoch numbers recorded by :func:`fit` (all ELBO terms are per-example means, in nats).

    ``history["train_elbo"]`` is the list over epochs; keys: ``epoch``, ``beta``,
    ``train_elbo``, ``train_reconstruction``, ``train_kl``, ``seconds`` and, with a
    validation set, ``valid_elbo``, ``valid_reconstruction``, ``valid_kl``.
    """

    records: list[dict] = field(default_factory=list)

    def __getitem__(self, key: str) -> list[float]:
        return [r[key] for r in self.records if key in r]

    def __len__(self) -> int:
        return len(self.records)

    def keys(self) -> list[str]:
        return list(self.records[0]) if self.records else []

    def plot(self, ax=None):
        """Training curves (ELBO, reconstruction, KL per epoch); returns the figure."""
        from .plots import plot_history

        return plot_history(self, ax=ax)

    def __repr__(self) -> str:
        if not self.records:
            return "History(empty)"
        last = self.records[-1]
        shown = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in last.items())
        return f"History({len(self)} epochs; last: {shown})"


def linear_warmup(epochs: float, beta: float = 1.0) -> Schedule:
    """KL warm-up (Bowman et al. 2016): β rises linearly from 0 to ``beta`` over ``epochs``.

    Returns a schedule ``t ↦ β(t)`` where ``t`` is the (fractional) epoch.
    """
    if epochs <= 0:
        raise ValueError(f"warm-up length must be positive, got {epochs}")
    return lambda t: beta * min(1.0, t / epochs)


def _beta_at(beta: float | Schedule, t: float) -> float:
    return float(beta(t)) if callable(beta) else float(beta)


# ----------------------------------------------------------------------------- data

def dataset_tensors(data) -> tuple[Tensor, Tensor | None]:
    """``(images, labels)`` tensors from a data set of ``(image, label)`` pairs.

    Uses ``data.images``/``data.labels`` when present (our data sets, with no copy),
    the tensors of a ``TensorDataset``, a bare tensor, or else stacks the items.
    """
    if isinstance(data, Tensor):
        return data, None
    if hasattr(data, "images"):
        return data.images, getattr(data, "labels", None)
    if hasattr(data, "tensors"):
        t = data.tensors
        return t[0], (t[1] if len(t) > 1 else None)
    items = [data[i] for i in range(len(data))]
    if isinstance(items[0], (tuple, list)):
        return torch.stack([torch.as_tensor(a[0]) for a in items]), torch.as_tensor([int(a[1]) for a in items])
    return torch.stack([torch.as_tensor(a) for a in items]), None


def _binarize_mode(data) -> str | None:
    return getattr(data, "binarize", None)


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` with ``torch.save`` atomically: a temporary file, then a rename.

    A run killed while saving leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, map_location=None) -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only.

    Raises a ``ValueError`` naming the file if it is not a readable checkpoint.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated zip, pickle with arbitrary objects, ...
        raise ValueError(
            f"{path} is not a readable vae_tutorial checkpoint ({type(e).__name__}: {e}). "
            "Delete it to start training from scratch."
        ) from e


# ----------------------------------------------------------------------------- training

def _loss(model, x, y, beta, free_bits, objective, iwae_k, generator, elbo_fn=elbo):
    """Mean over the batch of −ELBO (or −IWAE bound); also returns the terms for logging."""
    if objective == "iwae":
        bound = iwae_bound(model, x, iwae_k, y=y, generator=generator)
        with torch.no_grad():
            terms = elbo(model, x, 1.0, y=y, generator=generator)
        return -bound.mean(), terms
    terms = elbo_fn(model, x, beta, y=y, generator=generator)
    if free_bits > 0 and terms.kl_per_dim is not None:
        # free bits (Kingma et al. 2016): no pressure on dims whose mean KL is below λ
        kl = terms.kl_per_dim.mean(0).clamp(min=free_bits).sum()
        return -terms.reconstruction.mean() + beta * kl, terms
    return -terms.elbo.mean(), terms


@torch.no_grad()
def _evaluate_elbo(model, images, labels, batch_size, conditional, generator) -> dict:
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=images.device)
    for i in range(0, images.shape[0], batch_size):
        x = images[i:i + batch_size]
        y = labels[i:i + batch_size] if conditional else None
        t = elbo(model, x, 1.0, y=y, generator=generator)
        sums += torch.stack([t.elbo.sum(), t.reconstruction.sum(), t.kl.sum()]).double()
    model.train(was_training)
    e, r, k = (sums / images.shape[0]).tolist()
    return {"elbo": e, "reconstruction": r, "kl": k}


def _adam(params, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam with the fused kernel where PyTorch has one for ``device`` (CPU included).

    The default for-loop Adam launches about ten element-wise kernels per parameter
    tensor; on a CPU that costs as much as a fifth of a small MLP's training step.
    The fused kernel does one pass per tensor, with the same update rule.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.Adam(params, lr=lr)


def _progress(iterable, enabled: bool, **kw):
    # Bars are noise in CI logs and would make executed notebooks differ run to run.
    if not enabled or os.environ.get("CI"):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kw)


def fit(model: torch.nn.Module, train, *, epochs: int, batch_size: int = 128, lr: float = 1e-3,
        beta: float | Schedule = 1.0, valid=None, device: torch.device | str | None = None,
        seed: int = 0, progress: bool = True, checkpoint: str | os.PathLike | None = None,
        free_bits: float = 0.0, objective: str = "elbo", iwae_k: int = 5,
        elbo_fn: Callable | None = None) -> History:
    """Train ``model`` by maximising the ELBO with Adam.

    Each step minimises ``−(1/B) Σ_b ELBO_β(x_b)`` with
    ``ELBO_β(x) = E_q[log p_θ(x|z)] − β KL(q_φ(z|x) ‖ p(z))`` (log-likelihood summed
    over pixels, KL summed over latent dimensions).

    Args:
        model: a :class:`~vae_tutorial.models.VAE` (or ``Autoencoder``,
            ``ConditionalVAE``: labels are then used as conditions).
        train: data set of ``(image, label)`` pairs (e.g. from
            :func:`~vae_tutorial.data.load_dataset`); a data set with
            ``binarize == "dynamic"`` is re-binarised every epoch.
        epochs: total number of epochs (a resumed run continues up to this).
        batch_size, lr: mini-batch size and Adam learning rate.
        beta: KL weight, a constant or a schedule ``t ↦ β`` of the fractional epoch
            (see :func:`linear_warmup`).
        valid: optional validation data set; its ELBO (β = 1) is recorded each epoch.
        device: where to train; default :func:`~vae_tutorial.device.get_device`.
        seed: seeds shuffling, binarisation and the reparameterisation noise.
        progress: show ``tqdm.auto`` progress bars; they are always off when the
            ``$CI`` environment variable is set, so executed notebooks are stable.
        checkpoint: file to save to after every epoch (atomically) and to resume
            from if it exists.
        free_bits: λ ≥ 0 in nats per latent dimension (0 disables it).
        objective: ``"elbo"`` or ``"iwae"`` (train on the importance-weighted bound
            with ``iwae_k`` samples).
        elbo_fn: replaces :func:`~vae_tutorial.losses.elbo` in the ``"elbo"`` objective;
            same signature ``(model, x, beta, *, y, generator) -> ELBOTerms``. The book
            uses it to train deliberately broken losses; leave it ``None``.

    Returns:
        The :class:`History` of per-epoch numbers.

    Raises:
        NonFiniteLossError: if the loss becomes NaN/inf (names epoch and step).
    """
    if objective not in ("elbo", "iwae"):
        raise ValueError(f"objective must be 'elbo' or 'iwae', got {objective!r}")
    if epochs < 0 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need epochs ≥ 0, batch_size ≥ 1, lr > 0 (got {epochs}, {batch_size}, {lr})")
    device = torch.device(device) if device is not None else get_device()
    dtype = next(model.parameters()).dtype
    model.to(device)
    conditional = hasattr(model, "num_classes")

    images, labels = dataset_tensors(train)
    images = images.to(device=device, dtype=dtype)
    labels = labels.to(device) if labels is not None else None
    if conditional and labels is None:
        raise ValueError("a ConditionalVAE needs a data set with labels")
    dynamic = _binarize_mode(train) == "dynamic"
    if valid is not None:
        v_images, v_labels = dataset_tensors(valid)
        v_images = v_images.to(device=device, dtype=dtype)
        v_labels = v_labels.to(device) if v_labels is not None else None
        if _binarize_mode(valid) == "dynamic":  # one fixed binarisation for validation
            v_images = binarize(v_images, torch.Generator(device).manual_seed(seed + 1))

    n = images.shape[0]
    steps = math.ceil(n / batch_size)
    generator = torch.Generator(device=device).manual_seed(seed)
    optimizer = _adam(model.parameters(), lr, device)
    history = History()
    start_epoch = 0
    settings = {"batch_size": batch_size, "lr": lr, "seed": seed, "n": n, "objective": objective}

    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, map_location=device)
        if state.get("settings") != settings:
            raise ValueError(f"checkpoint {checkpoint} was made with {state.get('settings')}, "
                             f"this run uses {settings}; pass the same settings or delete the file")
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise ValueError(f"checkpoint {checkpoint} does not fit this model: {e}") from e
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"].cpu())
        history = History(list(state["history"]))
        start_epoch = int(state["epoch"])

    model.train()
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        data = binarize(images, generator) if dynamic else images
        perm = torch.randperm(n, device=device, generator=generator)
        # One row per step: (loss, Σ ELBO, Σ reconstruction, Σ KL), written on the device
        # and read every 50 steps: reading each step would force a host sync that costs
        # more than a small model's step on a GPU.
        log = torch.empty(steps, 4, dtype=dtype, device=device)
        checked = 0
        bar = _progress(range(steps), progress, desc=f"epoch {epoch + 1}/{epochs}", leave=False)
        for step in bar:
            idx = perm[step * batch_size:(step + 1) * batch_size]
            x = data.index_select(0, idx)  # a row gather; faster than data[idx] on CPU
            y = labels.index_select(0, idx) if conditional else None
            b = _beta_at(beta, epoch + step / steps)
            loss, terms = _loss(model, x, y, b, free_bits, objective, iwae_k, generator, elbo_fn or elbo)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                torch.stack([loss, terms.elbo.sum(), terms.reconstruction.sum(), terms.kl.sum()],
                            out=log[step])
            if step % 50 == 49 or step == steps - 1:
                finite = torch.isfinite(log[checked:step + 1, 0])
                if not bool(finite.all()):
                    bad = checked + int((~finite).nonzero()[0, 0])
                    raise NonFiniteLossError(
                        f"the loss became NaN or infinite at epoch {epoch + 1}, step {bad + 1}; "
                        "lower the learning rate, check that the data lie in [0, 1], "
                        "or start from a fresh model")
                checked = step + 1
        e, r, k = (log[:, 1:].double().sum(0) / n).tolist()
        record = {"epoch": epoch + 1, "beta": _beta_at(beta, epoch + 1),
                  "train_elbo": e, "train_reconstruction": r, "train_kl": k}
        if valid is not None:
            v = _evaluate_elbo(model, v_images, v_labels, 1024, conditional,
                               torch.Generator(device).manual_seed(seed + 2))
            record.update({f"valid_{key}": val for key, val in v.items()})
        record["seconds"] = time.perf_counter() - t0
        history.records.append(record)
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(), "history": history.records,
                "epoch": epoch + 1, "settings": settings,
            })
    return history
