"""Training: one model, one loss (−ELBO averaged over the batch), one optimiser.

Reads top to bottom: :class:`History` (what we record), the β schedule, checkpoints,
then :func:`fit`. The data set is moved to the device once as tensors and shuffled
by an index permutation each epoch, so the hot loop has no per-sample Python.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from . import distributed
from .data import _brief, _check_data_once, _memo_get, _memo_put, binarize, dataset_tensors  # noqa: F401
from .device import resolve_device
from ..errors import (
    ArgumentError,
    ArgumentTypeError,
    CheckpointError,
    DataError,
    ResumeMismatchError,
    VAETutorialError,
    check_float,
    check_images,
    check_int,
    check_model,
    check_seed,
    unchecked_data,
)
from .files import atomic_write, check_writable
from .identity import identity_differences, model_identity
from ..maths.losses import ELBOTerms, elbo, iwae_bound

__all__ = ["History", "fit", "linear_warmup", "exponential_decay", "load_checkpoint", "save_checkpoint", "dataset_tensors",
           "NonFiniteLossError", "checkpoint_digest", "clean_stale_temporaries", "CHECKPOINT_KEYS"]

Schedule = Callable[[float], float]


class NonFiniteLossError(VAETutorialError, FloatingPointError):
    """Raised when the training loss becomes NaN or infinite."""


@dataclass
class History:
    """Per-epoch numbers recorded by :func:`fit` (all ELBO terms are per-example means, in nats).

    ``history["train_elbo"]`` is the list over epochs; keys: ``epoch``, ``beta``,
    ``train_elbo``, ``train_reconstruction``, ``train_kl``, ``seconds`` and, with a
    validation set, ``valid_elbo``, ``valid_reconstruction``, ``valid_kl``; with
    ``skip_threshold``, ``skipped_steps`` (the train terms are then means over the steps taken).
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
        from ..display.plots import plot_history

        return plot_history(self, ax=ax)

    def __repr__(self) -> str:
        if not self.records:
            return "History(empty)"
        last = self.records[-1]
        # wall-clock seconds are left out: a printed History is the same on every run
        shown = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in last.items() if k != "seconds")
        return f"History({len(self)} epochs; last: {shown})"


def linear_warmup(epochs: float, beta: float = 1.0) -> Schedule:
    """KL warm-up (Bowman et al. 2016): β rises linearly from 0 to ``beta`` over ``epochs``.

    Returns a schedule ``t ↦ β(t)`` where ``t`` is the (fractional) epoch.
    """
    epochs = check_float("warm-up length (epochs)", epochs, min=0.0, min_open=True)
    beta = check_float("beta", beta, min=0.0)
    return lambda t: beta * min(1.0, t / epochs)


def _beta_at(beta: float | Schedule, t: float) -> float:
    return float(beta(t)) if callable(beta) else float(beta)


def _scheduled(name: str, what: str, helper: str, value, t: float, positive: bool) -> float:
    """``value`` at fractional epoch ``t`` (a number or a schedule), checked to be finite and
    ≥ 0 (> 0 when ``positive``); the errors name the argument."""
    try:
        v = _beta_at(value, t)
    except (TypeError, ValueError) as e:
        raise ArgumentTypeError(f"{name} must be a number or a schedule t -> {what} (see {helper}); "
                                f"calling it at t={t} failed: {e}") from None
    if not (0.0 < v if positive else 0.0 <= v) or not v < math.inf:
        bound = "> 0" if positive else "≥ 0"
        label = "the β schedule" if name == "beta" else "the learning-rate schedule"
        raise ArgumentError(f"{label} gave {v} at t={t}; "
                            f"{'β' if name == 'beta' else 'it'} must be finite and {bound}")
    return v


def _check_beta(beta: Schedule, t: float) -> None:
    _scheduled("beta", "β", "linear_warmup", beta, t, positive=False)


def _check_lr(lr: Schedule, t: float) -> float:
    return _scheduled("lr", "learning rate", "exponential_decay", lr, t, positive=True)


def exponential_decay(lr: float, half_life: float, floor: float = 0.0) -> Schedule:
    """Learning rate ``t ↦ max(floor, lr · 2^(−t / half_life))`` of the fractional epoch ``t``.

    It does not depend on how long training will run, so a run can be stopped (or
    snapshotted) at any epoch and has followed the same schedule as a longer one.
    """
    start = check_float("lr", lr, min=0.0, min_open=True)
    half_life = check_float("half_life (epochs)", half_life, min=0.0, min_open=True)
    floor = check_float("floor", floor, min=0.0)
    return lambda t: max(floor, start * 2.0 ** (-t / half_life))


def _same_beta(trace, beta, epochs_done: int) -> bool:
    """Does ``beta`` (or a learning-rate schedule) give the values recorded in a checkpoint
    over the epochs already trained?"""
    if not isinstance(trace, list):
        return True  # nothing recorded: the settings comparison is all we have
    n = min(len(trace), 4 * epochs_done + 1)
    return all(math.isclose(_beta_at(beta, j / 4), float(trace[j]), rel_tol=1e-9, abs_tol=1e-12)
               for j in range(n))


_identities: dict[int, tuple] = {}  # images -> digest, memoised like the data check


def _data_identity(images: Tensor, labels: Tensor | None) -> str:
    """A digest of the training images (and labels of a conditional model): same n, other images ≠ same data."""
    key = (images._version, None if labels is None else (id(labels), labels._version))
    hit = _memo_get(_identities, images, key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    _feed(h, images)
    if labels is not None:
        _feed(h, labels)
    digest = h.hexdigest()[:32]
    _memo_put(_identities, images, key, digest)
    return digest


def _binarize_mode(data) -> str | None:
    return getattr(data, "binarize", None)


# ----------------------------------------------------------------------------- checkpoints

CHECKPOINT_KEYS = ("model", "optimizer", "generator", "history", "epoch", "settings")
"""What a checkpoint written by :func:`fit` holds (plus ``digest``); a resume needs all of them."""
DIGEST_KEY = "digest"
STALE_SECONDS = 60.0
"""A temporary file (``*.tmp`` of a checkpoint, ``.part`` of a download) older than this belongs to a killed run."""


def _feed(h, obj) -> None:
    """Hash ``obj`` (nested dicts/lists of tensors and plain values) into ``h``, order-independent for dicts."""
    if isinstance(obj, Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(obj, dict):
        h.update(b"{")
        for key in sorted(obj, key=repr):
            h.update(repr(key).encode() + b":")
            _feed(h, obj[key])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for item in obj:
            _feed(h, item)
            h.update(b",")
        h.update(b"]")
    else:
        h.update(repr(obj).encode() + b";")


def checkpoint_digest(state: dict) -> str:
    """SHA-256 of everything in a checkpoint except its ``digest`` entry: tensors byte for byte."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != DIGEST_KEY})
    return h.hexdigest()


def clean_stale_temporaries(path: str | os.PathLike, min_age: float = STALE_SECONDS) -> list[Path]:
    """Delete ``<path>.*.tmp`` files that a run killed while saving left next to ``path``.

    Only files older than ``min_age`` seconds are removed, so a save in progress in another
    process is left alone. Returns the removed paths.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    now = time.time()
    for tmp in path.parent.glob(f"{path.name}.*.tmp"):
        try:
            if now - tmp.stat().st_mtime >= min_age:
                tmp.unlink()
                removed.append(tmp)
        except OSError:  # gone already, or not ours to delete
            pass
    return removed


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` with ``torch.save`` atomically: a temporary file, then a rename.

    A run killed while saving, or a full disk, leaves the previous checkpoint intact
    (:func:`vae_tutorial.training.files.atomic_write`; a full disk raises ``FileWriteError``, an
    ``OSError`` naming the file). A ``digest``
    entry (:func:`checkpoint_digest`) is added so that :func:`load_checkpoint` can
    tell a damaged file (a flipped byte) from a good one.
    """
    path = Path(path)
    if isinstance(state, dict):
        state = {**{k: v for k, v in state.items() if k != DIGEST_KEY}, DIGEST_KEY: checkpoint_digest(state)}
    atomic_write(path, lambda f: torch.save(state, f), "checkpoint")


def load_checkpoint(path: str | os.PathLike, map_location=None) -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only.

    Raises :class:`~vae_tutorial.errors.CheckpointError` (a ``ValueError``) naming the
    file if it is not a readable checkpoint, or if its contents do not match the
    ``digest`` stored when it was saved (a damaged file).
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated zip, pickle with arbitrary objects, ...
        raise CheckpointError(
            f"{path} is not a readable vae_tutorial checkpoint ({type(e).__name__}: {e}). "
            "Delete it to start training from scratch."
        ) from e
    if isinstance(state, dict) and DIGEST_KEY in state:
        if checkpoint_digest(state) != state[DIGEST_KEY]:
            raise CheckpointError(f"{path} is damaged: its contents do not match the digest stored when it "
                                  "was saved. Delete it to start training from scratch.")
    return state


def check_checkpoint(state, path) -> dict:
    """Refuse a checkpoint that :func:`fit` could not resume from: not a dict, a key missing, no digest."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a vae_tutorial checkpoint; "
                              "delete it to start training from scratch")
    missing = [k for k in (*CHECKPOINT_KEYS, DIGEST_KEY) if k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a complete vae_tutorial checkpoint: it has no "
                              f"{', '.join(map(repr, missing))}; delete it to start training from scratch")
    kinds = {"model": dict, "optimizer": dict, "generator": Tensor, "history": list, "epoch": int,
             "settings": dict}
    for key, kind in kinds.items():
        if not isinstance(state[key], kind) or (key == "epoch" and isinstance(state[key], bool)):
            raise CheckpointError(f"{path}: entry {key!r} should be a {kind.__name__}, got "
                                  f"{type(state[key]).__name__}; delete it to start training from scratch")
    if state["epoch"] < 0 or state["epoch"] != len(state["history"]):
        raise CheckpointError(f"{path}: epoch {state['epoch']} does not match its {len(state['history'])} "
                              "history records; delete it to start training from scratch")
    return state


# ----------------------------------------------------------------------------- training

def _loss(model, x, y, beta, free_bits, objective, iwae_k, generator, elbo_fn=elbo):
    """Mean over the batch of −ELBO (or −IWAE bound); also returns the terms for logging."""
    if objective == "iwae":
        bound = iwae_bound(model, x, iwae_k, y=y, generator=generator)
        with torch.no_grad():
            terms = elbo(model, x, 1.0, y=y, generator=generator)
        return -bound.mean(), terms
    terms = elbo_fn(model, x, beta, y=y, generator=generator)
    if not isinstance(terms, ELBOTerms):
        raise ArgumentTypeError(f"elbo_fn must return ELBOTerms (as vt.elbo does), got {type(terms).__name__} "
                                f"{_brief(terms)}; build one with ELBOTerms(elbo=..., reconstruction=..., kl=...)")
    if free_bits > 0:
        if terms.kl_per_dim is None:
            # Ignoring free_bits here would train a different objective than the one asked for.
            raise ArgumentError(
                f"free_bits={free_bits} needs a KL per latent dimension, but the ELBO terms of "
                f"{type(model).__name__} have kl_per_dim=None (a DiffusionModel or an Autoencoder "
                "has none); pass free_bits=0 for this model")
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


@distributed.fail_together
def fit(model: torch.nn.Module, train, *, epochs: int, batch_size: int = 128, lr: float | Schedule = 1e-3,
        beta: float | Schedule = 1.0, valid=None, device: torch.device | str | None = None,
        seed: int = 0, progress: bool = True, checkpoint: str | os.PathLike | None = None,
        free_bits: float = 0.0, objective: str = "elbo", iwae_k: int = 5,
        elbo_fn: Callable | None = None, grad_clip: float | None = None,
        skip_threshold: float | None = None) -> History:
    """Train ``model`` by maximising the ELBO with Adam.

    Each step minimises ``−(1/B) Σ_b ELBO_β(x_b)`` with
    ``ELBO_β(x) = E_q[log p_θ(x|z)] − β KL(q_φ(z|x) ‖ p(z))`` (log-likelihood summed
    over pixels, KL summed over latent dimensions).

    Args:
        model: a :class:`~vae_tutorial.models.vae.VAE` (or ``Autoencoder``,
            ``ConditionalVAE``: labels are then used as conditions).
        train: data set of ``(image, label)`` pairs (e.g. from
            :func:`~vae_tutorial.training.data.load_dataset`); a data set with
            ``binarize == "dynamic"`` is re-binarised every epoch.
        epochs: total number of epochs (a resumed run continues up to this).
        batch_size: mini-batch size.
        lr: Adam learning rate, a constant or a schedule ``t ↦ lr`` of the fractional
            epoch, applied before every step (see :func:`exponential_decay`).
        beta: KL weight, a constant or a schedule ``t ↦ β`` of the fractional epoch
            (see :func:`linear_warmup`).
        valid: optional validation data set; its ELBO (β = 1) is recorded each epoch.
        device: where to train; default :func:`~vae_tutorial.training.device.get_device`.
        seed: seeds shuffling, binarisation and the reparameterisation noise.
        progress: show ``tqdm.auto`` progress bars; they are always off when the
            ``$CI`` environment variable is set, so executed notebooks are stable.
        checkpoint: file to save to after every epoch (atomically) and to resume
            from if it exists.
        free_bits: λ ≥ 0 in nats per latent dimension (0 disables it): the loss charges
            ``Σ_j max(λ, KL̄_j)``, ``KL̄_j`` the batch mean of dimension ``j``'s term in the
            ``kl_per_dim`` of the model's ELBO terms. A model without it (``kl_per_dim=None``:
            ``DiffusionModel``, ``Autoencoder``) raises :class:`ArgumentError` at the first
            step. Caveat: for a bottom-up ``HierarchicalVAE`` the per-dimension terms of the
            layers below the top are not KLs but one-sample estimates,
            ``−H(q_φ(z_l|·))`` minus ``log p_θ(z_l|z_{l+1})`` at the sample, which can be
            negative; λ then clamps those estimates, not a per-unit KL.
        objective: ``"elbo"`` or ``"iwae"`` (train on the importance-weighted bound
            with ``iwae_k`` samples).
        elbo_fn: replaces :func:`~vae_tutorial.maths.losses.elbo` in the ``"elbo"`` objective;
            same signature ``(model, x, beta, *, y, generator) -> ELBOTerms``. The book
            uses it to train deliberately broken losses; leave it ``None``.
        grad_clip: if set, ``c > 0``: before each update the gradient is rescaled to
            global L2 norm at most ``c`` (``torch.nn.utils.clip_grad_norm_``).
        skip_threshold: if set, ``s > 0``: an update whose gradient norm (before
            clipping) is above ``s`` or not finite is skipped, the parameters and Adam's
            moments left as they were, and counted in ``history["skipped_steps"]``;
            a skipped step's loss is neither recorded nor checked. VDVAE's stabiliser
            (Child 2021, with ``grad_clip=200, skip_threshold=400``): one rare batch
            with a huge gradient cannot throw a deep hierarchy out of its basin. It reads
            the norm on the host, one synchronisation per step on a GPU. If every step
            of an epoch is skipped, :class:`NonFiniteLossError` is raised.

    Under ``torchrun --nproc-per-node W`` (or any initialised process group) ``fit`` trains
    data-parallel with DistributedDataParallel, gloo on CPU and NCCL on GPU: ``batch_size``
    is the global batch, every process takes its share of each step's batch, rank 0 alone
    reads and writes ``checkpoint`` (resumable only at the same W) and an error in one process
    stops all of them. See :mod:`vae_tutorial.training.distributed` for the exact semantics.

    Returns:
        The :class:`History` of per-epoch numbers.

    Raises:
        NonFiniteLossError: if the loss becomes NaN/inf (names epoch and step).
        ArgumentError, ArgumentTypeError: an argument out of range or of the wrong type
            (the message names it), or ``free_bits > 0`` for a model with no per-dimension KL.
        DataError: empty data, NaN/inf pixels, pixels outside [0, 1] for a Bernoulli
            or continuous Bernoulli decoder, labels out of range (checked once, up front).
        CheckpointError: an unreadable, damaged or incomplete checkpoint;
            ResumeMismatchError: one made with other settings, data or model.
    """
    # ---- arguments, checked once (nothing below runs per step)
    check_model(model)
    if objective not in ("elbo", "iwae"):
        raise ArgumentError(f"objective must be 'elbo' or 'iwae', got {objective!r}")
    epochs = check_int("epochs", epochs, min=0)
    batch_size = check_int("batch_size", batch_size, min=1)
    if callable(lr):
        lr0 = _check_lr(lr, 0.0)
    else:
        lr = lr0 = check_float("lr", lr, min=0.0, min_open=True)
    free_bits = check_float("free_bits", free_bits, min=0.0)
    seed = check_seed(seed)
    iwae_k = check_int("iwae_k", iwae_k, min=1)
    if grad_clip is not None:
        grad_clip = check_float("grad_clip", grad_clip, min=0.0, min_open=True)
    if skip_threshold is not None:
        skip_threshold = check_float("skip_threshold", skip_threshold, min=0.0, min_open=True)
    if callable(beta):
        _check_beta(beta, 0.0)
    else:
        beta = check_float("beta", beta, min=0.0)
    if elbo_fn is not None and not callable(elbo_fn):
        raise ArgumentTypeError(f"elbo_fn must be a function like vae_tutorial.elbo, got {elbo_fn!r}")
    # under torchrun: this process's rank and device (distributed.py; a plain run is rank 0 of 1)
    world = distributed.world()
    device = distributed.local_device(world, resolve_device(device))
    dtype = next(model.parameters()).dtype
    conditional = hasattr(model, "num_classes")
    likelihood = getattr(model, "likelihood", None)
    num_classes = getattr(model, "num_classes", None) if conditional else None

    images, labels = dataset_tensors(train)
    if conditional and labels is None:
        raise DataError("a ConditionalVAE needs a data set with labels")
    _check_data_once(images, labels, likelihood, num_classes, "the training data")
    check_images(model, images, "the training data")
    if valid is not None:  # everything checked before the model moves or trains a step
        v_images, v_labels = dataset_tensors(valid)
        if conditional and v_labels is None:
            raise DataError("a ConditionalVAE needs a validation set with labels")
        _check_data_once(v_images, v_labels, likelihood, num_classes, "the validation data")
        check_images(model, v_images, "the validation data (valid=)")
    data_id = (_data_identity(images, labels if conditional else None)
               if checkpoint is not None or world.active else None)
    model.to(device)
    images = images.to(device=device, dtype=dtype)
    labels = labels.to(device) if labels is not None else None
    dynamic = _binarize_mode(train) == "dynamic"
    if valid is not None:
        v_images = v_images.to(device=device, dtype=dtype)
        v_labels = v_labels.to(device) if v_labels is not None else None
        if _binarize_mode(valid) == "dynamic":  # one fixed binarisation for validation
            v_images = binarize(v_images, torch.Generator(device).manual_seed(seed + 1))

    n = images.shape[0]
    steps = math.ceil(n / batch_size)
    distributed.check_shards(world, n, batch_size)
    generator = torch.Generator(device=device).manual_seed(seed)
    # the reparameterisation noise: the same generator in a plain run, one per process under torchrun
    noise = distributed.noise_generator(seed, world, device) if world.active else generator
    optimizer = _adam(model.parameters(), lr0, device)
    history = History()
    start_epoch = 0
    settings = {"batch_size": batch_size, "lr": "schedule" if callable(lr) else lr, "seed": seed, "n": n,
                "objective": objective}
    if checkpoint is not None:
        # Everything else that changes what the trained weights mean: a resume must agree on it.
        settings.update({
            "iwae_k": iwae_k if objective == "iwae" else None, "free_bits": free_bits,
            "beta": "schedule" if callable(beta) else beta, "dynamic_binarization": dynamic,
            "model": type(model).__name__, "likelihood": likelihood,
            "architecture": hashlib.sha256(repr(model).encode()).hexdigest()[:16],
            "data": data_id, "world_size": world.size,
            "grad_clip": grad_clip, "skip_threshold": skip_threshold,
            # the objective, when not the book's ELBO (a custom elbo_fn changes what is trained)
            "elbo_fn": None if elbo_fn in (None, elbo) else f"{getattr(elbo_fn, '__module__', '?')}."
                                                    f"{getattr(elbo_fn, '__qualname__', type(elbo_fn).__name__)}",
        })
        identity = settings["identity"] = model_identity(model)
        if world.is_main:  # rank 0 owns the files
            # a checkpoint that cannot be written is refused now, not after the first epoch
            check_writable(checkpoint, "checkpoint")
            clean_stale_temporaries(checkpoint)

    state = None
    if checkpoint is not None and world.is_main and Path(checkpoint).exists():
        location = "cpu" if world.active else device  # the others receive it and map it to theirs
        state = check_checkpoint(load_checkpoint(checkpoint, map_location=location), checkpoint)
        old = state["settings"]
        # checkpoints from before these keys existed: only what they recorded is compared
        legacy = {k for k, default in (("elbo_fn", None), ("world_size", 1), ("grad_clip", None),
                                       ("skip_threshold", None)) if k not in old and settings[k] == default}
        differs = [k for k in sorted(set(old) | set(settings), key=str)
                   if k != "identity" and k not in legacy and old.get(k, "absent") != settings.get(k)]
        start_epoch = int(state["epoch"])
        trace = state.get("beta_trace")
        if not differs and start_epoch and not _same_beta(trace, beta, start_epoch):
            differs.append("beta")
        if not differs and start_epoch and callable(lr) and not _same_beta(state.get("lr_trace"), lr, start_epoch):
            differs.append("lr")
        if differs:
            shown = {"data": "training images", "architecture": "model architecture"}
            made = ", ".join(f"{shown.get(k, k)}={_brief(old.get(k, 'absent'))}" for k in differs)
            now = ", ".join(f"{shown.get(k, k)}={_brief(settings.get(k))}" for k in differs)
            if "beta" in differs and old.get("beta") == settings.get("beta"):
                made += " (a β schedule that differs over the epochs already trained)"
            if "lr" in differs and old.get("lr") == settings.get("lr"):
                made += " (a learning-rate schedule that differs over the epochs already trained)"
            fits = "; the checkpoint does not fit this model" if "architecture" in differs else ""
            if "world_size" in differs:  # each process's noise generator is in the checkpoint
                fits += f"; resume with torchrun --nproc-per-node {old.get('world_size', 1)}"
            raise ResumeMismatchError(f"checkpoint {checkpoint} was made with {made}; this run uses {now}{fits}. "
                                      "Pass the same settings, or delete the file to start again")
        # what the settings above do not show: rate floors, schedules and fixed variances
        # (buffers, which load_state_dict would silently replace), any other model setting
        changed = identity_differences(old["identity"], identity) if "identity" in old else []
        if changed:
            fits = " (it does not fit this model)" if any(c.startswith("layer ") for c in changed) else ""
            raise ResumeMismatchError(f"checkpoint {checkpoint} was made by another model{fits}: {'; '.join(changed)}. "
                                      "Build the model with the checkpoint's settings, or delete the file to "
                                      "start again")
    if world.active:
        # every process agrees that its set-up went well (or all stop), on the same data and
        # arguments, and starts from rank 0's checkpoint (distributed.py)
        state = distributed.agree(world, state, same={
            "training images": data_id, "epochs": epochs, "batch_size": batch_size, "seed": seed,
            "model": hashlib.sha256(repr(model).encode()).hexdigest()[:16]})[0]
    if state is not None:
        start_epoch = int(state["epoch"])
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise ResumeMismatchError(f"checkpoint {checkpoint} does not fit this model: {e}") from e
        try:
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"].cpu())
            if noise is not generator:
                noise.set_state(state["noise_generators"][world.rank].cpu())
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise CheckpointError(f"checkpoint {checkpoint} has an unusable optimiser or generator state "
                                  f"({type(e).__name__}: {e}); delete it to start again") from None
        history = History(list(state["history"]))

    # The data were checked once above: the likelihoods skip their per-call range check.
    scheduled_lr = callable(lr)
    step_loss = distributed.parallel_loss(world, model, _loss, device)  # DDP under torchrun
    with unchecked_data():
        model.train()
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            data = binarize(images, generator) if dynamic else images
            perm = torch.randperm(n, device=device, generator=generator)
            # One row per step: (loss, Σ ELBO, Σ reconstruction, Σ KL), written on the device
            # and read every 50 steps: reading each step would force a host sync that costs
            # more than a small model's step on a GPU.
            log = torch.empty(steps, 4, dtype=dtype, device=device)
            checked = skipped = skipped_n = 0
            bar = _progress(range(steps), progress and world.is_main, desc=f"epoch {epoch + 1}/{epochs}", leave=False)
            for step in bar:
                idx = perm[step * batch_size:(step + 1) * batch_size]
                if world.active:  # this process's share of the global batch, and its loss weight
                    idx, share = distributed.shard(idx, world)
                x = data.index_select(0, idx)  # a row gather; faster than data[idx] on CPU
                y = labels.index_select(0, idx) if conditional else None
                b = _beta_at(beta, epoch + step / steps)
                if scheduled_lr:
                    rate = _beta_at(lr, epoch + step / steps)
                    if not 0.0 < rate < math.inf:
                        raise ArgumentError(f"the learning-rate schedule gave {rate} at epoch "
                                            f"{epoch + step / steps:.3f}; it must be finite and > 0")
                    for group in optimizer.param_groups:
                        group["lr"] = rate
                if not 0.0 <= b < math.inf:  # a float comparison: free next to a training step
                    raise ArgumentError(f"the β schedule gave {b} at epoch {epoch + step / steps:.3f}; "
                                        "β must be finite and ≥ 0")
                loss, terms = step_loss(x, y, b, free_bits, objective, iwae_k, noise, elbo_fn or elbo)
                if world.active:
                    loss = loss * share
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                take = True
                if grad_clip is not None or skip_threshold is not None:
                    # the norm before clipping (math.inf: no clipping); the gradients are
                    # all-reduced under DDP, so every process sees the same norm and decides alike
                    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or math.inf)
                    take = skip_threshold is None or float(norm) <= skip_threshold  # False for NaN too
                if take:
                    optimizer.step()
                    with torch.no_grad():
                        torch.stack([loss, terms.elbo.sum(), terms.reconstruction.sum(), terms.kl.sum()],
                                    out=log[step])
                else:  # VDVAE's update skipping: no step, and the batch's terms left out of the epoch's
                    skipped += 1
                    skipped_n += min(batch_size, n - step * batch_size)
                    log[step].zero_()
                if step % 50 == 49 or step == steps - 1:
                    finite = torch.isfinite(log[checked:step + 1, 0])
                    bad = step + 1 if bool(finite.all()) else checked + int((~finite).nonzero()[0, 0])
                    bad = distributed.min_over_ranks(world, bad, device)  # all processes stop together
                    if bad <= step:
                        raise NonFiniteLossError(
                            f"the loss became NaN or infinite at epoch {epoch + 1}, step {bad + 1}; "
                            "lower the learning rate or start from a fresh model (the data were "
                            "checked: they are finite and in the likelihood's range)")
                    checked = step + 1
            if skipped == steps:
                raise NonFiniteLossError(
                    f"every step of epoch {epoch + 1} was skipped (gradient norm above "
                    f"skip_threshold={skip_threshold} or not finite); lower the learning rate, "
                    "raise skip_threshold or start from a fresh model")
            e, r, k = (distributed.all_reduce_sum(world, log[:, 1:].double().sum(0)) / (n - skipped_n)).tolist()
            record = {"epoch": epoch + 1, "beta": _beta_at(beta, epoch + 1),
                      "train_elbo": e, "train_reconstruction": r, "train_kl": k}
            if skip_threshold is not None:
                record["skipped_steps"] = skipped
            if valid is not None:
                v = _evaluate_elbo(model, v_images, v_labels, 1024, conditional,
                                   torch.Generator(device).manual_seed(seed + 2))
                record.update({f"valid_{key}": val for key, val in v.items()})
                if not math.isfinite(v["elbo"]):
                    raise NonFiniteLossError(f"the validation ELBO became {v['elbo']} at epoch {epoch + 1}; "
                                             "lower the learning rate or start from a fresh model")
            record["seconds"] = time.perf_counter() - t0
            history.records.append(record)
            if checkpoint is not None:  # written by rank 0, with every process's noise generator
                noises = {"noise_generators": distributed.all_states(world, noise)} if world.active else {}
                distributed.on_main(world, save_checkpoint, checkpoint, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(), "history": history.records,
                    "epoch": epoch + 1, "settings": settings,
                    "beta_trace": [_beta_at(beta, j / 4) for j in range(4 * (epoch + 1) + 1)],
                    **({"lr_trace": [_beta_at(lr, j / 4) for j in range(4 * (epoch + 1) + 1)]}
                       if scheduled_lr else {}),
                    **noises,
                })
    return history
