"""Data-parallel training with ``torch.distributed``: what :func:`~vae_tutorial.training.train.fit` does under ``torchrun``.

``torchrun --nproc-per-node W script.py`` starts W processes (one per core with the gloo
backend on a CPU, one per GPU with NCCL) and tells each its rank ``r`` through the
environment. Every process holds the whole training set and a replica of the model;
:class:`~torch.nn.parallel.DistributedDataParallel` averages their gradients in
``backward()``, so the replicas stay equal. A run at world size W means:

* **The global batch.** ``batch_size`` B is the batch of one step, whatever W is. The
  step's B indices are split into W consecutive shares (:func:`shard`, sizes differing by
  at most one) and process ``r`` weights its mean loss by ``W·B_r/B``: the averaged
  gradient is then that of ``−(1/B) Σ_b ELBO(x_b)`` over the global batch, as in one process.
* **The sampler, same seed semantics.** Every process draws each epoch's permutation (and a
  dynamic binarisation) from a generator seeded with ``seed``, the same in every process,
  and takes its share of each global batch: no process needs another's indices. Process
  ``r`` draws its reparameterisation noise from its own generator, seeded from
  ``(seed, r)`` (:func:`noise_generator`). With W = 1 one generator does both, exactly as
  without ``torchrun``. So a model whose loss draws no noise (an ``Autoencoder``) follows the
  one-process run to float rounding; a VAE follows an equally likely noise draw.
* **Rank 0 owns the files.** Only rank 0 reads and writes the checkpoint (with the same
  digest and resume rules) and prints; the others receive its state. The checkpoint records
  ``world_size`` and every process's noise generator, so a resume at another world size is
  refused (:class:`~vae_tutorial.errors.ResumeMismatchError`).
* **Failing together.** A process that fails while setting up (a bad argument, bad data, an
  unreadable checkpoint) tells the others at the next agreement point (:func:`agree`), and
  every process raises, instead of waiting for it forever. Checks during training are
  collective (:func:`min_over_ranks`), so every process stops at the same step.
"""
from __future__ import annotations

import atexit
import functools
import hashlib
import os
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import VAETutorialError

__all__ = [
    "DistributedError",
    "World",
    "agree",
    "all_reduce_sum",
    "all_states",
    "fail_together",
    "init_from_environment",
    "min_over_ranks",
    "noise_generator",
    "on_main",
    "parallel_loss",
    "shard",
    "world",
]


class DistributedError(VAETutorialError, RuntimeError):
    """Another process of a distributed run failed (the message names it and its error), or
    the processes disagree about the run (other data, other settings)."""


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` in ``0 .. size − 1``; ``size`` 1 is a plain run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """True when more than one process runs, so that the collectives below are needed."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """True for rank 0, the process that reads and writes files and prints."""
        return self.rank == 0


def _dist():
    import torch.distributed as dist

    return dist


def _initialized() -> bool:
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


def world() -> World:
    """The :class:`World` of the process group, or ``World()`` (rank 0 of 1) outside one."""
    if not _initialized():
        return World()
    dist = _dist()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def init_from_environment() -> World:
    """Join the process group that ``torchrun`` describes (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT`` in the environment), once; a no-op outside ``torchrun``
    or with ``WORLD_SIZE=1``. The backend is gloo for CPU tensors and, where CUDA and NCCL
    are available, NCCL for GPU tensors (each process on GPU ``LOCAL_RANK``)."""
    if _initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return world()
    dist = _dist()
    if not dist.is_available():
        raise DistributedError("WORLD_SIZE > 1 (torchrun?) but this PyTorch was built without "
                               "torch.distributed; run one process, or install a PyTorch with it")
    backend = "gloo"
    if torch.cuda.is_available() and dist.is_nccl_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "cpu:gloo,cuda:nccl"  # by the tensor's device
    dist.init_process_group(backend)
    atexit.register(lambda: _initialized() and dist.destroy_process_group())
    return world()


def local_device(w: World, device: torch.device) -> torch.device:
    """``device`` for this process: GPU ``LOCAL_RANK`` when ``device`` is a CUDA device with no index."""
    if w.active and device.type == "cuda" and device.index is None:
        return torch.device("cuda", w.local_rank)
    return device


# ----------------------------------------------------------------------------- failing together

_agreed: list[bool] = []  # one entry per running fail_together call: has it reached agree()?


def fail_together(fn):
    """Decorate a function whose set-up ends in :func:`agree`: if it raises on one process
    before that, the process takes part in the others' :func:`agree` with its error (so
    they raise :class:`DistributedError` instead of waiting), then raises its own error.

    It also joins the process group that ``torchrun`` describes (:func:`init_from_environment`).
    The set-up must hold no other collective, so that the processes meet in the same one.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        w = init_from_environment()
        if not w.active:
            return fn(*args, **kwargs)
        _agreed.append(False)
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if not _agreed[-1]:
                _agreed[-1] = True
                agree(w, error=e)  # raises e here (or the error of a lower rank)
            raise
        finally:
            _agreed.pop()
    return wrapper


def _exchange(payload) -> list:
    dist = _dist()
    got = [None] * dist.get_world_size()
    dist.all_gather_object(got, payload)
    return got


def agree(w: World, value=None, *, same: dict | None = None, error: BaseException | None = None) -> list:
    """Collective: every process sends ``value`` (or its ``error``) and what must be ``same``
    everywhere; returns the list of values by rank.

    Raises on every process if any failed (the failed process its own error, the others a
    :class:`DistributedError` naming the first failed rank and its message), or if ``same``
    differs between processes (naming the keys).
    """
    if _agreed:
        _agreed[-1] = True
    if not w.active:
        if error is not None:
            raise error
        return [value]
    message = None if error is None else f"{type(error).__name__}: {error}"
    got = _exchange((message, value, same))
    failed = [(rank, m) for rank, (m, _, _) in enumerate(got) if m is not None]
    if failed:
        if error is not None:
            raise error
        rank, m = failed[0]
        raise DistributedError(f"process {rank} of {w.size} failed, so every process stops: {m}")
    theirs = [s for _, _, s in got]
    differs = sorted({k for s in theirs for k in (s or {}) if s.get(k) != theirs[0].get(k)})
    if differs:
        shown = "; ".join(f"{k}: " + ", ".join(f"process {r} {str(s.get(k))[:24]}" for r, s in enumerate(theirs))
                          for k in differs)
        raise DistributedError(f"the {w.size} processes disagree about {', '.join(differs)} ({shown}); "
                               "every process must load the same data and pass the same arguments")
    return [v for _, v, _ in got]


def on_main(w: World, fn, *args):
    """``fn(*args)`` on rank 0 only (a file write); every process raises if it failed there."""
    error, value = None, None
    if w.is_main:
        try:
            value = fn(*args)
        except Exception as e:
            if not w.active:
                raise
            error = e
    if w.active:
        agree(w, error=error)
    return value


# ----------------------------------------------------------------------------- the sampler and the noise

def shard(idx: Tensor, w: World) -> tuple[Tensor, float]:
    """Process ``w.rank``'s share of a global batch ``idx`` ``(B,)`` and the weight ``W·B_r/B``
    of its mean loss (consecutive shares; sizes differ by at most one)."""
    mine = idx.tensor_split(w.size)[w.rank]
    return mine, w.size * mine.shape[0] / idx.shape[0]


def check_shards(w: World, n: int, batch_size: int) -> None:
    """Refuse a global batch (the last one included) with fewer images than processes."""
    from ..errors import ArgumentError

    last = n % batch_size or batch_size
    if w.active and min(batch_size, last) < w.size:
        raise ArgumentError(f"batch_size={batch_size} on {n} images leaves a batch of {min(batch_size, last)} "
                            f"images for {w.size} processes, so one would have none; choose a batch_size "
                            f"of at least {w.size} whose last batch (n mod batch_size) is 0 or at least {w.size}")


def noise_generator(seed: int, w: World, device: torch.device) -> torch.Generator:
    """Process ``w.rank``'s generator of reparameterisation noise, seeded from ``(seed, rank)``."""
    digest = hashlib.sha256(f"vae_tutorial noise {seed} {w.rank}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def all_states(w: World, generator: torch.Generator) -> list[Tensor]:
    """Collective: every process's ``generator.get_state()``, by rank (for rank 0's checkpoint)."""
    return [s for s in _exchange(generator.get_state())]


# ----------------------------------------------------------------------------- gradients and sums

class _Loss(torch.nn.Module):
    """``loss_fn(model, *args)`` as a module, so that DistributedDataParallel sees the forward pass."""

    def __init__(self, model: torch.nn.Module, loss_fn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, *args):
        return self.loss_fn(self.model, *args)


def parallel_loss(w: World, model: torch.nn.Module, loss_fn, device: torch.device):
    """``(*args) ↦ loss_fn(model, *args)``; with several processes through
    DistributedDataParallel, so that ``backward()`` averages the gradients of all processes
    (its constructor copies rank 0's parameters and buffers to the others).

    ``static_graph=True``: a parameter the loss never uses (the unused variance head of an
    ``Autoencoder``'s encoder) is allowed, and the set of used ones is fixed after step one.
    """
    if not w.active:
        return functools.partial(loss_fn, model)
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(_Loss(model, loss_fn), device_ids=ids, static_graph=True)


def all_reduce_sum(w: World, t: Tensor) -> Tensor:
    """``t`` summed over the processes (in place, and returned)."""
    if w.active:
        _dist().all_reduce(t)
    return t


def min_over_ranks(w: World, value: int, device: torch.device) -> int:
    """The smallest ``value`` of all processes (a collective check: all stop at the same step)."""
    if not w.active:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    _dist().all_reduce(t, op=_dist().ReduceOp.MIN)
    return int(t)
